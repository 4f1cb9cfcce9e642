#!/usr/bin/env bash
# Installs everything alignserve builds and tests with, from Debian 12
# packages, then fetches the default model. Safe to run again.
# Usage: scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build pkg-config git python3 python3-pip python3-venv unzip
  libabsl-dev nlohmann-json3-dev libsentencepiece-dev catch2 libboost-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  # Tests: promtool (tests/server/metrics_promtool_test.py) comes with prometheus.
  prometheus
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
scripts/fetch_model.sh
scripts/setup_test_python.sh
