#!/usr/bin/env python3
"""PyTorch/transformers greedy-decode throughput on a Llama checkpoint folder.

The baseline alignserve's engine is compared against: transformers'
LlamaForCausalLM in bf16 with SDPA attention, eager (no torch.compile),
model.generate with the default dynamic KV cache. For each batch size it
runs random prompt ids (fixed seed, no special ids) of --prompt-len and
decodes exactly --output-len tokens greedily (min_new_tokens masks EOS).

  python3 benchmarks/gpu/torch_baseline.py --model DIR [--device cuda]
      [--batch-sizes 1,64] [--prompt-len 128] [--output-len 128]
      [--warmup 1] [--repeats 1] [--static] [--json OUT.json]

Per batch size: prefill = a generate with max_new_tokens=1 (so it also holds
generate's fixed overhead), total = the full generate, decode tok/s =
batch*(output_len-1)/(total-prefill), output tok/s = batch*output_len/total.
With several --repeats the median of each time is used. --static adds a row
per batch size with cache_implementation="static" (still no compile).
Typical folder: benchmarks/gpu/make_random_llama.py --preset llama3-8b.
"""
import argparse
import json
import platform
import statistics
import sys
import time

import torch
import transformers
from transformers import LlamaForCausalLM

FIRST_ID = 100  # ids below this are often special in small vocabularies
LLAMA3_SPECIAL_START = 128000  # Llama 3 reserves 128000.. for special tokens


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_model(path, device):
    kwargs = dict(dtype=torch.bfloat16, attn_implementation="sdpa")
    try:  # straight onto the device, without a CPU copy of 16 GB first
        model = LlamaForCausalLM.from_pretrained(path, device_map=str(device), **kwargs)
    except (ImportError, ValueError) as e:
        log(f"device_map load failed ({e}); loading on CPU then moving")
        model = LlamaForCausalLM.from_pretrained(path, **kwargs).to(device)
    return model.eval()


def make_prompts(config, batch, prompt_len, seed, device):
    high = min(config.vocab_size, LLAMA3_SPECIAL_START)
    gen = torch.Generator().manual_seed(seed + batch)
    ids = torch.randint(FIRST_ID, high, (batch, prompt_len), generator=gen)
    for special in (config.bos_token_id, config.eos_token_id, config.pad_token_id):
        for s in special if isinstance(special, list) else [special]:
            if s is not None:
                ids[ids == s] = FIRST_ID  # FIRST_ID itself is never special here
    return ids.to(device)


def timed_generate(model, ids, new_tokens, cache, device):
    kwargs = dict(
        input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
        max_new_tokens=new_tokens, min_new_tokens=new_tokens,
        pad_token_id=model.config.eos_token_id if model.config.pad_token_id is None
        else model.config.pad_token_id,
        temperature=None, top_p=None, top_k=None)
    if cache == "static":
        kwargs.update(cache_implementation="static", disable_compile=True)
    sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**kwargs)
    sync(device)
    dt = time.perf_counter() - t0
    produced = out.shape[1] - ids.shape[1]
    if produced != new_tokens:
        raise RuntimeError(f"generate made {produced} tokens, wanted {new_tokens}")
    return dt


def measure(model, args, batch, cache, device):
    ids = make_prompts(model.config, batch, args.prompt_len, args.seed, device)
    for _ in range(args.warmup):
        timed_generate(model, ids, 1, cache, device)
        timed_generate(model, ids, args.output_len, cache, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    prefills, totals = [], []
    for _ in range(args.repeats):
        prefills.append(timed_generate(model, ids, 1, cache, device))
        totals.append(timed_generate(model, ids, args.output_len, cache, device))
    prefill, total = statistics.median(prefills), statistics.median(totals)
    decode_time = total - prefill
    row = dict(
        batch=batch, cache=cache, prompt_len=args.prompt_len, output_len=args.output_len,
        prefill_ms=prefill * 1e3, total_s=total,
        decode_tok_s=batch * (args.output_len - 1) / decode_time if decode_time > 0 else None,
        output_tok_s=batch * args.output_len / total,
        prefill_tok_s=batch * args.prompt_len / prefill)
    if device.type == "cuda":
        row["peak_mem_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
    return row


def print_table(rows):
    print(f"{'batch':>5} {'cache':>7} {'prefill ms':>11} {'decode tok/s':>13} "
          f"{'output tok/s':>13} {'total s':>8}", flush=True)
    for r in rows:
        dec = f"{r['decode_tok_s']:.1f}" if r["decode_tok_s"] is not None else "n/a"
        print(f"{r['batch']:>5} {r['cache']:>7} {r['prefill_ms']:>11.1f} {dec:>13} "
              f"{r['output_tok_s']:>13.1f} {r['total_s']:>8.2f}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="Hugging Face Llama checkpoint folder")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-sizes", default="1,64")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs per batch size")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs; medians are reported")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--static", action="store_true", help="also time a static-cache row")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    batches = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    if not batches or min(batches) < 1 or args.prompt_len < 1 or args.output_len < 2 \
            or args.repeats < 1 or args.warmup < 0:
        ap.error("need batch sizes >= 1, prompt-len >= 1, output-len >= 2, repeats >= 1")
    device = torch.device(args.device)

    t0 = time.perf_counter()
    model = load_model(args.model, device)
    sync(device)
    load_s = time.perf_counter() - t0
    log(f"loaded {args.model} on {device} in {load_s:.1f} s "
        f"({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M params)")

    rows = []
    for batch in batches:
        for cache in ["dynamic"] + (["static"] if args.static else []):
            row = measure(model, args, batch, cache, device)
            log(f"batch {batch} {cache}: prefill {row['prefill_ms']:.1f} ms, "
                f"total {row['total_s']:.2f} s, decode {row['decode_tok_s'] or 0:.1f} tok/s")
            rows.append(row)
    print_table(rows)
    if args.json:
        info = dict(
            model=args.model, device=str(device), load_s=load_s, torch=torch.__version__,
            transformers=transformers.__version__, python=platform.python_version(),
            gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            attn_implementation=model.config._attn_implementation, rows=rows)
        with open(args.json, "w") as f:
            json.dump(info, f, indent=2)
        log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
