#!/usr/bin/env bash
# Installs dependencies, builds, and runs every test: the Release build's
# CTest suite, then the model-file loaders' fuzz tests under AddressSanitizer
# and UBSan in a second, small build. GPU tests skip without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
(cd build && ctest --output-on-failure -j 2)

# Sanitized loaders: only the format library and its tests are built here.
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DALIGNSERVE_SANITIZE=ON -DALIGNSERVE_CUDA=OFF >/dev/null
ASAN_TARGETS=$(cd tests/models/formats && ls *_test.cc | sed 's/\.cc$//')
ninja -C build-asan -j "${ALIGNSERVE_JOBS:-2}" $ASAN_TARGETS
(cd build-asan && ALIGNSERVE_FUZZ_SECONDS=${ALIGNSERVE_FUZZ_SECONDS:-20} \
  ctest --output-on-failure -R "$(echo $ASAN_TARGETS | tr ' ' '|')")
