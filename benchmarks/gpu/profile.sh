#!/usr/bin/env bash
# Where a forward step's device time goes, per kernel, on the GPU machine:
# Nsight Compute (ncu) times a window of kernel launches of
# `alignserve bench-offline --device cuda` in three shapes (single-stream
# decode, one 2,048-token prefill, a 256-sequence decode at ~1,000 tokens of
# context) and benchmarks/gpu/kernel_table.py folds them into a table per
# kernel name (count, total ms, share). Compare the total with the step's
# wall time from bench.sh: the difference is host time and launch gaps.
#
# Usage (repository root, carry .bundle): benchmarks/gpu/profile.sh LOG_DIR
# Needs ncu on PATH or under /opt/nvidia or /usr/local/cuda; writes
# LOG_DIR/profile_<shape>.csv and LOG_DIR/profile_<shape>.txt.
set -uo pipefail
cd "$(dirname "$0")/../.."
LOGS="${1:?usage: profile.sh LOG_DIR}"
MODEL="${BENCH_MODEL:-/tmp/alignserve-llama3-8b-random}"
mkdir -p "$LOGS"
NCU="$(command -v ncu || true)"
[[ -z "$NCU" ]] && NCU="$(ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)"
[[ -n "$NCU" ]] || { echo "profile.sh: ncu not found" >&2; exit 1; }
if [[ ! -f "$MODEL/config.json" ]]; then
  python3 benchmarks/gpu/make_random_llama.py --preset llama3-8b --out "$MODEL" \
    > "$LOGS/make_model.log" 2>&1 || { echo "profile.sh: make_random_llama failed" >&2; exit 1; }
fi
AS=(.bundle/run alignserve bench-offline --device cuda --model "$MODEL" --skip-tokenizer-init)

# profile SHAPE SKIP COUNT BENCH_ARGS...: times launches [SKIP, SKIP + COUNT).
profile() {
  local shape="$1" skip="$2" count="$3"; shift 3
  timeout --kill-after=10 240 "$NCU" --clock-control none --metrics gpu__time_duration.sum \
    --csv --launch-skip "$skip" --launch-count "$count" "${AS[@]}" "$@" \
    > "$LOGS/profile_$shape.csv" 2> "$LOGS/profile_$shape.err"
  echo "profile.sh: $shape rc $?"
  python3 benchmarks/gpu/kernel_table.py "$LOGS/profile_$shape.csv" | tee "$LOGS/profile_$shape.txt"
}

# A decode step launches ~13 kernels per layer (~420 for 32 layers); ncu
# times the kernels of a CUDA graph one by one too. PROFILE_SHAPES picks a
# subset (default: all three).
SHAPES="${PROFILE_SHAPES:-single_decode prefill_2048 decode_256}"
for shape in $SHAPES; do
  case "$shape" in
    single_decode)
      profile single_decode 20000 900 --num-requests 1 --prompt-len 128 --output-len 128 --warmup 0 ;;
    prefill_2048)
      profile prefill_2048 0 460 --num-requests 1 --prompt-len 2048 --output-len 1 \
        --max-num-batched-tokens 2048 --warmup 0 ;;
    decode_256)
      # 256 x 1,000 prompt tokens prefill in 32 steps of 8,192 (~14k launches).
      profile decode_256 20000 900 --num-requests 256 --prompt-len 1000 --output-len 40 \
        --max-num-batched-tokens 8192 --warmup 0 ;;
    *) echo "profile.sh: unknown shape $shape" >&2 ;;
  esac
done
