#!/usr/bin/env bash
# Configures and builds alignserve into build/ (Release). Extra arguments go
# to CMake, e.g. scripts/build.sh -DALIGNSERVE_CUDA=OFF.
# ALIGNSERVE_JOBS sets the parallel jobs (default 2: the machines have 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${ALIGNSERVE_BUILD_DIR:-build}"
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
ninja -C "$BUILD_DIR" -j "${ALIGNSERVE_JOBS:-2}"
