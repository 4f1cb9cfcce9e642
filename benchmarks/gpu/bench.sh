#!/usr/bin/env bash
# The GPU benchmarks of the CUDA backend issue, on the GPU machine, from the
# bundle (scripts/gpu_bundle.sh) and the repository. Called by run_all.sh;
# runs alone too: benchmarks/gpu/bench.sh LOG_DIR.
#
#  1. a Llama-3-8B-shaped checkpoint of random bf16 weights
#     (make_random_llama.py), written once to $BENCH_MODEL;
#  2. the device's copy bandwidth (PyTorch, bytes read + written), for the
#     decode roofline: weight bytes read per token / bandwidth;
#  3. alignserve bench-offline --device cuda: single-stream decode, time to
#     first token of a 2,048-token prompt, 64 concurrent requests, and (with
#     BENCH_SET=full) 256 concurrent requests of 1,000 + 1,000 tokens;
#  4. PyTorch/transformers on the same weights at batch 1 and 64
#     (torch_baseline.py).
# Every step's output goes to LOG_DIR/<step>.log; one summary row per figure
# is appended to LOG_DIR/bench_summary.txt as NAME|RESULT|SECONDS|NOTE.
set -uo pipefail
cd "$(dirname "$0")/../.."
LOGS="${1:?usage: bench.sh LOG_DIR}"
MODEL="${BENCH_MODEL:-/tmp/alignserve-llama3-8b-random}"
SET="${BENCH_SET:-quick}"
mkdir -p "$LOGS"
SUMMARY="$LOGS/bench_summary.txt"
: > "$SUMMARY"
row() { echo "$1|$2|$3|$4" >> "$SUMMARY"; echo "bench: $1 $2 $4"; }

# timed NAME LIMIT CMD...: runs CMD into LOGS/NAME.log; sets RC and SECS.
timed() {
  local name="$1" limit="$2"; shift 2
  local t0; t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" > "$LOGS/$name.log" 2>&1
  RC=$?
  SECS=$(( $(date +%s) - t0 ))
}

if [[ ! -f "$MODEL/config.json" ]]; then
  timed make_model 200 python3 benchmarks/gpu/make_random_llama.py --preset llama3-8b --out "$MODEL"
  if (( RC != 0 )); then row make_model FAIL "$SECS" "rc $RC"; exit 1; fi
  row make_model PASS "$SECS" "$(tail -1 "$LOGS/make_model.log")"
fi

# Bandwidth of a 4 GiB device-to-device copy, median of 20.
timed bandwidth 60 python3 - <<'PY'
import torch
n = 1 << 31  # bf16 elements: 4 GiB
a = torch.randn(n, dtype=torch.bfloat16, device="cuda")
b = torch.empty_like(a)
times = []
for i in range(23):
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record(); b.copy_(a); e.record(); torch.cuda.synchronize()
    if i >= 3: times.append(s.elapsed_time(e) / 1e3)
times.sort()
print(f"copy_bandwidth_GBps {2 * a.numel() * 2 / times[len(times) // 2] / 1e9:.1f}")
PY
BW=$(awk '/copy_bandwidth_GBps/ {print $2}' "$LOGS/bandwidth.log")
row bandwidth "$([[ -n "$BW" ]] && echo INFO || echo FAIL)" "$SECS" "device copy ${BW:-?} GB/s (read + write)"
# Bytes one decode step reads: every weight except the embedding table
# (one row of it per token).
WEIGHT_BYTES=$(python3 - "$MODEL" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1] + "/config.json"))
h, i, l, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
d = cfg.get("head_dim", h // cfg["num_attention_heads"])
kv = cfg["num_key_value_heads"] * d
layer = h * (cfg["num_attention_heads"] * d) + 2 * h * kv + (cfg["num_attention_heads"] * d) * h + 3 * h * i + 2 * h
print(2 * (l * layer + v * h + h))
PY
)

AS=(.bundle/run alignserve bench-offline --device cuda --model "$MODEL" --skip-tokenizer-init)
field() { grep -E "^$2" "$LOGS/$1.log" | head -1; }

timed single_stream 150 "${AS[@]}" --num-requests 1 --prompt-len 128 --output-len 256
ITL=$(field single_stream "inter-token latency" | awk '{print $6}')  # p50, ms
if (( RC == 0 )) && [[ -n "$ITL" ]]; then
  TPS=$(python3 -c "print(f'{1000 / $ITL:.1f}')")
  ROOF=$(python3 -c "print(f'{$BW * 1e9 / $WEIGHT_BYTES:.1f}')")
  PCT=$(python3 -c "print(f'{100 * $TPS / $ROOF:.1f}')")
  row single_stream_decode INFO "$SECS" "$TPS tok/s (p50 ITL $ITL ms); roofline $ROOF tok/s; $PCT% (target 85%)"
else
  row single_stream_decode FAIL "$SECS" "rc $RC"
fi

# The same decode op by op (no CUDA graphs) and with the GEMV kernel for
# the m = 1 products (instead of cuBLAS), side by side.
timed single_stream_eager 150 "${AS[@]}" --num-requests 1 --prompt-len 128 --output-len 256 \
  --enforce-eager
EAGER_ITL=$(field single_stream_eager "inter-token latency" | awk '{print $6}')
row single_stream_eager "$([[ $RC == 0 && -n "$EAGER_ITL" ]] && echo INFO || echo FAIL)" "$SECS" \
  "--enforce-eager: p50 ITL ${EAGER_ITL:-?} ms (graphs: ${ITL:-?} ms)"
ALIGNSERVE_CUDA_GEMV=1 timed single_stream_gemv 150 "${AS[@]}" --num-requests 1 \
  --prompt-len 128 --output-len 256
GEMV_ITL=$(field single_stream_gemv "inter-token latency" | awk '{print $6}')
row single_stream_gemv "$([[ $RC == 0 && -n "$GEMV_ITL" ]] && echo INFO || echo FAIL)" "$SECS" \
  "ALIGNSERVE_CUDA_GEMV=1: p50 ITL ${GEMV_ITL:-?} ms (cuBLAS: ${ITL:-?} ms)"

timed ttft_2048 150 "${AS[@]}" --num-requests 1 --prompt-len 2048 --output-len 1 \
  --max-num-batched-tokens 2048 --warmup 2
TTFT=$(field ttft_2048 "TTFT" | awk '{print $5}')
row ttft_2048 "$([[ $RC == 0 && -n "$TTFT" ]] && echo INFO || echo FAIL)" "$SECS" "TTFT p50 ${TTFT:-?} ms (target < 80)"

timed batch64 200 "${AS[@]}" --num-requests 64 --prompt-len 128 --output-len 128
row batch64 "$([[ $RC == 0 ]] && echo INFO || echo FAIL)" "$SECS" "$(field batch64 throughput)"
# The same with the phase-1 attention kernel everywhere, side by side.
ALIGNSERVE_CUDA_ATTENTION=phase1 timed batch64_phase1 200 "${AS[@]}" --num-requests 64 \
  --prompt-len 128 --output-len 128
row batch64_phase1 "$([[ $RC == 0 ]] && echo INFO || echo FAIL)" "$SECS" \
  "$(field batch64_phase1 throughput)"

# Sampled (temperature 0.8, top-p 0.95) rather than greedy: drawn on the
# device (default) against every row copied to and drawn on the host.
timed batch64_sampled 200 "${AS[@]}" --num-requests 64 --prompt-len 128 --output-len 128 \
  --temperature 0.8 --top-p 0.95
row batch64_sampled "$([[ $RC == 0 ]] && echo INFO || echo FAIL)" "$SECS" \
  "device sampling: $(field batch64_sampled throughput); ITL p50 $(field batch64_sampled "inter-token latency" | awk '{print $6}') ms"
timed batch64_host_sampled 200 "${AS[@]}" --num-requests 64 --prompt-len 128 --output-len 128 \
  --temperature 0.8 --top-p 0.95 --host-sampling
row batch64_host_sampled "$([[ $RC == 0 ]] && echo INFO || echo FAIL)" "$SECS" \
  "--host-sampling: $(field batch64_host_sampled throughput); ITL p50 $(field batch64_host_sampled "inter-token latency" | awk '{print $6}') ms"

timed torch_baseline 240 python3 benchmarks/gpu/torch_baseline.py --model "$MODEL" \
  --batch-sizes 1,64 --prompt-len 128 --output-len 128 --json "$LOGS/torch_baseline.json"
row torch_baseline "$([[ $RC == 0 ]] && echo INFO || echo FAIL)" "$SECS" \
  "$(tail -4 "$LOGS/torch_baseline.log" | tr '\n' ';')"
if [[ "$SET" == full ]]; then
  timed concurrent256 300 "${AS[@]}" --num-requests 256 --prompt-len 1000 --output-len 1000 \
    --max-num-batched-tokens 8192
  row concurrent256 "$([[ $RC == 0 ]] && echo INFO || echo FAIL)" "$SECS" \
    "$(field concurrent256 throughput) (target >= 10000 output tok/s); $(field concurrent256 engine)"
  # Decode at 256 sequences without the long prefill phase: its p50 ITL
  # against the kernels' time per step (benchmarks/gpu/profile.sh) is the
  # host's share of a step.
  timed decode256 200 "${AS[@]}" --num-requests 256 --prompt-len 1000 --output-len 100 \
    --max-num-batched-tokens 8192
  row decode256 "$([[ $RC == 0 ]] && echo INFO || echo FAIL)" "$SECS" \
    "256 x (1000 + 100): $(field decode256 "inter-token latency" | awk '{print "ITL p50", $6, "ms"}'); $(field decode256 throughput)"
fi

exit 0
