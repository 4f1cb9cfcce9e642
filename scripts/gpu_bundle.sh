#!/usr/bin/env bash
# Packs built binaries and the shared libraries they need into .bundle/
# (git-ignored), to carry to a GPU machine that lacks Debian's libraries:
#
#   .bundle/bin/        the GPU test binaries (tests/gpu/*_test.cc), the
#                       alignserve binary and the benchmarks, when built
#   .bundle/lib/        every non-system shared library they load (absl,
#                       protobuf, gRPC, sentencepiece, libstdc++, ...)
#   .bundle/run         wrapper: `.bundle/run NAME ARGS...` runs bin/NAME
#                       with LD_LIBRARY_PATH set
#   .bundle/gpu_tests.txt  names of the gpu-labelled tests, one a line
#   .bundle/source_dir  the source root compiled into the tests
#                       (ALIGNSERVE_SOURCE_DIR), where they read tests/data
#
# Left out: glibc's libraries (libc, libm, ld-linux, ...), the NVIDIA driver
# (libcuda, libnvidia-*), and the CUDA toolkit's libraries (libcudart,
# libcublas, libcublasLt: the last alone is over 500 MB), which the GPU
# machine's own CUDA 13 provides; --with-cudart adds libcudart and libcublas
# (not libcublasLt) for a machine that has a driver but no toolkit.
#
# Usage: scripts/gpu_bundle.sh [--build-dir DIR] [--all-tests] [--with-cudart]
#   --all-tests  bundles every test binary, not only the GPU ones.
#   .bundle.tar.xz      the same, compressed: what to carry to the GPU machine
# Then on the GPU machine: benchmarks/gpu/run_all.sh (carry .bundle.tar.xz).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
BUILD_DIR="build-cuda"
ALL_TESTS=0
WITH_CUDART=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) BUILD_DIR="$2"; shift 2 ;;
    --all-tests) ALL_TESTS=1; shift ;;
    --with-cudart) WITH_CUDART=1; shift ;;
    *) echo "gpu_bundle.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -d "$BUILD_DIR" ]] || { echo "gpu_bundle.sh: no build directory $BUILD_DIR" >&2; exit 1; }

BUNDLE="$ROOT/.bundle"
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/bin" "$BUNDLE/lib"

# The binaries: GPU tests always; every other test with --all-tests.
binaries=()
: > "$BUNDLE/gpu_tests.txt"
for src in tests/gpu/*_test.cc; do
  [[ -e "$src" ]] || continue
  name="$(basename "$src" .cc)"
  if [[ -x "$BUILD_DIR/tests/$name" ]]; then
    binaries+=("$BUILD_DIR/tests/$name")
    echo "$name" >> "$BUNDLE/gpu_tests.txt"
  else
    echo "gpu_bundle.sh: warning: $name is not built in $BUILD_DIR/tests" >&2
  fi
done
if [[ $ALL_TESTS == 1 ]]; then
  while IFS= read -r f; do binaries+=("$f"); done < <(
    find "$BUILD_DIR/tests" -maxdepth 1 -type f -name '*_test' -perm -u+x | sort)
fi
for extra in alignserve benchmarks/matmul_bench; do
  [[ -x "$BUILD_DIR/$extra" ]] && binaries+=("$BUILD_DIR/$extra")
done
[[ ${#binaries[@]} -gt 0 ]] || { echo "gpu_bundle.sh: nothing built to bundle" >&2; exit 1; }

# A library stays behind if the target machine has its own: glibc, the
# driver, and (unless asked) the CUDA toolkit.
is_system_lib() {
  local base="$1"
  case "$base" in
    libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libresolv.so*|libutil.so*) return 0 ;;
    libcuda.so*|libnvidia*|libcublasLt.so*) return 0 ;;
    libcudart.so*|libcublas.so*) [[ $WITH_CUDART == 0 ]] ;;
    *) return 1 ;;
  esac
}

declare -A seen=()
for bin in "${binaries[@]}"; do
  cp -f "$bin" "$BUNDLE/bin/"
  # Symbols too: the carry to a GPU machine is capped at 64 MiB in all.
  strip --strip-all "$BUNDLE/bin/$(basename "$bin")" 2>/dev/null || true
  # ldd lists the whole closure, so one pass per binary suffices.
  while read -r lib; do
    [[ -n "$lib" && -f "$lib" ]] || continue
    base="$(basename "$lib")"
    is_system_lib "$base" && continue
    [[ -n "${seen[$base]:-}" ]] && continue
    seen[$base]=1
    cp -fL "$lib" "$BUNDLE/lib/$base"
    strip --strip-unneeded "$BUNDLE/lib/$base" 2>/dev/null || true
  done < <(ldd "$bin" | awk '/=>/ && $3 ~ /^\// {print $3}')
done

echo "$ROOT" > "$BUNDLE/source_dir"
cat > "$BUNDLE/run" <<'EOF'
#!/usr/bin/env bash
# Runs a bundled binary: .bundle/run NAME [ARGS...]. The bundle's libraries
# come first, then the machine's CUDA libraries (libcudart, libcublas(Lt)).
# Tests read fixtures under the source root they were compiled with; if that
# path does not exist here, it is linked to the repository holding .bundle.
set -euo pipefail
BUNDLE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$BUNDLE")"
SRC="$(cat "$BUNDLE/source_dir")"
if [[ ! -e "$SRC" ]]; then
  mkdir -p "$(dirname "$SRC")" 2>/dev/null && ln -s "$REPO" "$SRC" 2>/dev/null ||
    echo "run: warning: cannot link $SRC to $REPO; tests may not find tests/data" >&2
fi
CUDA_LIBS=""
# The toolkit's own folders, then pip's CUDA wheels (PyTorch's venv) as a
# fallback for libcublas / libcublasLt.
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
         /opt/torch/.venv/lib/python3*/site-packages/nvidia/*/lib \
         /opt/torch/.venv/lib/python3*/site-packages/nvidia/cu13/lib; do
  [[ -d "$d" ]] && CUDA_LIBS="$CUDA_LIBS:$d"
done
export LD_LIBRARY_PATH="$BUNDLE/lib$CUDA_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
name="$1"; shift
exec "$BUNDLE/bin/$name" "$@"
EOF
chmod +x "$BUNDLE/run"

# The device tool carries at most 64 MiB with the working tree: carry the
# compressed copy (.bundle.tar.xz, ~1/3 the size); run_all.sh unpacks it.
rm -f .bundle.tar.xz
tar cf - .bundle | xz -T2 -1 > .bundle.tar.xz
echo "bundled ${#binaries[@]} binaries and $(ls "$BUNDLE/lib" | wc -l) libraries into .bundle ($(du -sh "$BUNDLE" | cut -f1); .bundle.tar.xz $(du -sh .bundle.tar.xz | cut -f1))"
