#!/usr/bin/env bash
# Creates the Python environment the client-compatibility tests run in: a
# venv outside the clone, at ${ALIGNSERVE_CACHE:-$HOME/.cache/alignserve}/testvenv,
# holding the official `openai` client and gRPC's Python packages (grpcio,
# grpcio-tools to generate stubs from proto/ at test time,
# grpcio-health-checking, grpcio-reflection) from PyPI at pinned, verified
# versions (and their dependencies, pinned too, so a new upstream release
# cannot change what the tests prove). Safe to run again: returns at once when the venv
# already has the pinned version. Needs python3 and Debian's python3-venv
# (scripts/setup.sh installs both). tests/CMakeLists.txt looks for the venv at
# the same path and registers openai_client_test and grpc_client_test only
# when it exists.
# Usage: scripts/setup_test_python.sh
set -euo pipefail

CACHE="${ALIGNSERVE_CACHE:-$HOME/.cache/alignserve}"
VENV="$CACHE/testvenv"
OPENAI_VERSION=3.54.0
GRPC_VERSION=1.85.1
# The set pip resolved for openai==$OPENAI_VERSION on Python 3.11 when the
# test was verified; all from PyPI.
REQUIREMENTS=(
  "openai==$OPENAI_VERSION"
  annotated-types==0.8.0
  anyio==4.16.0
  h11==0.16.0
  httpcore2==2.16.2
  httpx2==2.16.2
  idna==3.20
  jiter==0.19.0
  pydantic==2.14.3
  pydantic_core==2.50.4
  sniffio==1.3.1
  truststore==0.10.5
  typing_extensions==4.16.0
  typing-inspection==0.4.5
  # gRPC client test (tests/server/grpc_client_test.py)
  "grpcio==$GRPC_VERSION"
  "grpcio-tools==$GRPC_VERSION"
  "grpcio-health-checking==$GRPC_VERSION"
  "grpcio-reflection==$GRPC_VERSION"
  protobuf==7.36.2
  setuptools==84.2.1
)

installed_version() {
  "$VENV/bin/python" -c "from importlib.metadata import version; print(version('$1'))" \
    2>/dev/null || true
}

if [ -x "$VENV/bin/python" ] && [ "$(installed_version openai)" = "$OPENAI_VERSION" ] &&
  [ "$(installed_version grpcio-reflection)" = "$GRPC_VERSION" ]; then
  echo "setup_test_python: $VENV has openai $OPENAI_VERSION and grpcio $GRPC_VERSION"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup_test_python: creating venv $VENV"
  mkdir -p "$CACHE"
  # A half-made venv (no pip) from an interrupted run is replaced.
  rm -rf "$VENV"
  python3 -m venv "$VENV"
fi
echo "setup_test_python: installing openai $OPENAI_VERSION and grpcio $GRPC_VERSION from PyPI"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
  "${REQUIREMENTS[@]}"
for want in "openai $OPENAI_VERSION" "grpcio $GRPC_VERSION" "grpcio-tools $GRPC_VERSION" \
  "grpcio-health-checking $GRPC_VERSION" "grpcio-reflection $GRPC_VERSION"; do
  got="$(installed_version "${want% *}")"
  if [ "$got" != "${want#* }" ]; then
    echo "setup_test_python: expected ${want}, found '${got}'" >&2
    exit 1
  fi
done
echo "setup_test_python: ready: $VENV/bin/python (openai $OPENAI_VERSION, grpcio $GRPC_VERSION)"
