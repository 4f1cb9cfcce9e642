#!/usr/bin/env bash
# Everything GPU-side in one run, on the GPU machine, from the bundle that
# scripts/gpu_bundle.sh made (carry .bundle.tar.xz): the device, every gpu-labelled
# test, compute-sanitizer memcheck and racecheck over the CUDA backend's op
# tests, then (unless TESTS_ONLY=1) the benchmarks of benchmarks/gpu/bench.sh
# on a Llama-3-8B-shaped checkpoint of random bf16 weights, then, with the
# time left (PROFILE=0 skips it), the per-kernel profile of a single-stream
# and a 256-sequence decode step (benchmarks/gpu/profile.sh); ends with a
# summary table. Finishes within 10 minutes: each step has its own time limit
# (STEP_SECONDS, SANITIZER_SECONDS) and the total is capped (TOTAL_SECONDS).
#
# Usage (repository root): benchmarks/gpu/run_all.sh [OUT_DIR]
# Logs go to OUT_DIR (default $OUT if set, else /tmp/alignserve_gpu), one
# file per step, and summary.txt. Exit status: 0 only if every step passed.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUNDLE=".bundle"
LOGS="${1:-${OUT:-/tmp/alignserve_gpu}}"
STEP_SECONDS="${STEP_SECONDS:-150}"
SANITIZER_SECONDS="${SANITIZER_SECONDS:-240}"
TOTAL_SECONDS="${TOTAL_SECONDS:-570}"
mkdir -p "$LOGS"
if [[ ! -x "$BUNDLE/run" && -f "$BUNDLE.tar.xz" ]]; then tar xJf "$BUNDLE.tar.xz"; fi
[[ -x "$BUNDLE/run" ]] || { echo "run_all.sh: no .bundle (run scripts/gpu_bundle.sh and carry .bundle.tar.xz)" >&2; exit 1; }
START=$(date +%s)

names=()
results=()
seconds=()
notes=()

# record NAME STATUS SECONDS NOTE
record() { names+=("$1"); results+=("$2"); seconds+=("$3"); notes+=("$4"); }

time_left() { echo $(( TOTAL_SECONDS - ($(date +%s) - START) )); }

# run_step NAME LIMIT COMMAND...: runs with a time limit, logs to LOGS/NAME.log.
run_step() {
  local name="$1" limit="$2"; shift 2
  local left; left=$(time_left)
  if (( left < 20 )); then record "$name" SKIPPED 0 "out of time"; return; fi
  (( limit > left )) && limit=$left
  local t0; t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" > "$LOGS/$name.log" 2>&1
  local rc=$?
  local dt=$(( $(date +%s) - t0 ))
  local note
  note="$(grep -E 'test cases:|All tests passed|ERROR SUMMARY' "$LOGS/$name.log" | tail -1 | tr -s ' ')"
  if grep -q "no CUDA device: skipped" "$LOGS/$name.log"; then note="SKIPPED CASES (no device) $note"; fi
  if (( rc == 124 || rc == 137 )); then
    record "$name" TIMEOUT "$dt" "killed after ${limit}s"
  elif (( rc == 0 )); then
    record "$name" PASS "$dt" "$note"
  else
    record "$name" FAIL "$dt" "rc $rc; $note"
  fi
}

# The device, for the record.
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$LOGS/device.log" 2>&1
  record device INFO 0 "$(head -1 "$LOGS/device.log")"
else
  record device INFO 0 "nvidia-smi not found"
fi

while read -r test; do
  [[ -n "$test" ]] || continue
  run_step "$test" "$STEP_SECONDS" "$BUNDLE/run" "$test" --durations yes
done < "$BUNDLE/gpu_tests.txt"

# The matmul cases again through the opt-in GEMV kernel (m <= 4 rows).
if grep -qx cuda_backend_test "$BUNDLE/gpu_tests.txt"; then
  run_step cuda_backend_test_gemv "$STEP_SECONDS" env ALIGNSERVE_CUDA_GEMV=1 \
    "$BUNDLE/run" cuda_backend_test "cuda matmul*"
fi

SANITIZER="$(command -v compute-sanitizer || true)"
[[ -z "$SANITIZER" && -x /usr/local/cuda/bin/compute-sanitizer ]] && SANITIZER=/usr/local/cuda/bin/compute-sanitizer
if [[ -n "$SANITIZER" ]] && grep -qx cuda_backend_test "$BUNDLE/gpu_tests.txt"; then
  # Every out-of-bounds or misaligned device access, and every shared-memory
  # race, is an error (exit code 1). API errors are not reported: one test
  # provokes an out-of-memory on purpose. racecheck skips the matmul cases:
  # it reports hazards inside cuBLAS's own split-K GEMM kernel for m = 1
  # (nvjet_*_splitK; excluding that kernel by name crashes the sanitizer),
  # which is not ours to fix; memcheck still runs them, and the GEMV kernel
  # has no shared memory.
  for tool in memcheck racecheck; do
    cases=()
    [[ $tool == racecheck ]] && cases=("~cuda matmul*")
    run_step "${tool}_cuda_backend_test" "$SANITIZER_SECONDS" \
      "$SANITIZER" --tool "$tool" --report-api-errors no --error-exitcode 1 \
      "$BUNDLE/run" cuda_backend_test "${cases[@]}"
  done
else
  record sanitizers SKIPPED 0 "no compute-sanitizer or no cuda_backend_test"
fi

if [[ "${TESTS_ONLY:-0}" != 1 ]]; then
  # Each benchmark appends its rows to bench_summary.txt.
  run_step benchmarks "$(( $(time_left) - 15 ))" benchmarks/gpu/bench.sh "$LOGS"
  [[ -f "$LOGS/bench_summary.txt" ]] && while IFS='|' read -r n r t note; do
    record "$n" "$r" "$t" "$note"
  done < "$LOGS/bench_summary.txt"
  # Where a decode step's device time goes, per kernel, while time is left
  # (~60 s a shape; the checkpoint is the benchmarks' own).
  if [[ "${PROFILE:-1}" == 1 ]] && (( $(time_left) > 150 )); then
    PROFILE_SHAPES="single_decode decode_256" run_step profile "$(( $(time_left) - 15 ))" \
      benchmarks/gpu/profile.sh "$LOGS/profile"
    for shape in single_decode decode_256; do
      table="$LOGS/profile/profile_$shape.txt"
      # "all LAUNCHES TOTAL_MS (top: KERNEL MEAN_US SHARE)"
      [[ -s "$table" ]] && record "profile_$shape" INFO 0 \
        "$(tail -1 "$table" | tr -s ' ') ms (top: $(sed -n 2p "$table" | awk '{print $1, $(NF-1) " us", $NF}'))"
    done
  fi
fi

{
  printf '%-32s %-8s %7s  %s\n' STEP RESULT SECONDS NOTE
  for i in "${!names[@]}"; do
    printf '%-32s %-8s %7s  %s\n' "${names[$i]}" "${results[$i]}" "${seconds[$i]}" "${notes[$i]}"
  done
  echo "total $(( $(date +%s) - START ))s; logs in $LOGS"
} | tee "$LOGS/summary.txt"

for r in "${results[@]}"; do
  [[ "$r" == FAIL || "$r" == TIMEOUT ]] && exit 1
done
exit 0
