#!/usr/bin/env python3
"""Aggregate decode rate by concurrency, and its ratio to a single stream.

Runs `alignserve bench-offline` at each concurrency C (all C requests
submitted at once, --prompt-len / --output-len tokens each, greedy,
ignore_eos) for several rounds, interleaving the concurrencies inside each
round so that machine noise hits them alike, and prints per C the median
"decode (all C requests running)" rate (tokens that arrive while every
request decodes, over that window), its spread, and the median over the
median single-stream rate. This is the figure of the engine issue: the
aggregate decode rate at 64 against one stream.

  python3 benchmarks/cpu_scaling.py [--binary build/alignserve]
      [--concurrency 1,8,32,64] [--rounds 5] [--prompt-len 64]
      [--output-len 64] [-- extra bench-offline flags]

With --binary A,B (two builds, e.g. before and after a change) and/or
--variants 'FLAGS;FLAGS' (e.g. '--kv-cache-dtype f32;--kv-cache-dtype f16')
every binary runs with every variant in every round, side by side, each
with its own ratio.

A single stream's window is short (about 0.25 s for 64 tokens), so its
rate moves by up to +-20% between runs on a shared VM: the baseline (the
first concurrency) runs --baseline-repeats times in every round, and the
medians over all its runs are what the ratios divide by.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DECODE = re.compile(r"^decode \(all (\d+) requests running\): ([0-9.]+) output tokens/s")
ITL = re.compile(r"^inter-token latency\s+mean\s+([0-9.]+)\s+p50\s+([0-9.]+)")


def run_once(binary, c, args, extra):
    cmd = [binary, "bench-offline", "--num-requests", str(c), "--prompt-len",
           str(args.prompt_len), "--output-len", str(args.output_len)] + extra
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"cpu_scaling: {' '.join(cmd)} failed ({out.returncode}):\n{out.stderr}")
    rate = itl = None
    for line in out.stdout.splitlines():
        if m := DECODE.match(line):
            rate = float(m.group(2))
        if m := ITL.match(line):
            itl = float(m.group(2))
    if rate is None:
        sys.exit(f"cpu_scaling: no decode window in the output of {' '.join(cmd)}; "
                 "raise --output-len")
    return rate, itl


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--binary", default=os.path.join(ROOT, "build", "alignserve"),
                   help="alignserve binary; a comma-separated list runs each side by side")
    p.add_argument("--concurrency", default="1,8,32,64",
                   help="comma-separated concurrencies; the first is the baseline (default 1,...)")
    p.add_argument("--variants", default="",
                   help="';'-separated bench-offline flag sets, each run side by side")
    p.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    p.add_argument("--baseline-repeats", type=int, default=3,
                   help="runs of the first concurrency in each round (its window is short)")
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--output-len", type=int, default=64)
    args, extra = p.parse_known_args()
    extra = [a for a in extra if a != "--"]
    conc = [int(c) for c in args.concurrency.split(",")]
    configs = [(b, v.split()) for b in args.binary.split(",") for v in args.variants.split(";")]
    names = [" ".join([b] + v) for b, v in configs]
    rates = {(name, c): [] for name in names for c in conc}
    itls = {(name, c): [] for name in names for c in conc}
    for r in range(args.rounds):
        for c in conc:
            repeats = args.baseline_repeats if c == conc[0] else 1
            for _ in range(repeats):
                for (binary, flags), name in zip(configs, names):
                    rate, itl = run_once(binary, c, args, extra + flags)
                    rates[name, c].append(rate)
                    if itl is not None:
                        itls[name, c].append(itl)
                    print(f"round {r + 1}/{args.rounds}  {name}  C={c:<4d} decode {rate:8.1f} tok/s"
                          + (f"  ITL p50 {itl:.2f} ms" if itl is not None else ""),
                          file=sys.stderr, flush=True)
    for name in names:
        base = statistics.median(rates[name, conc[0]])
        print(f"\n{name}, --prompt-len {args.prompt_len} --output-len {args.output_len} "
              + " ".join(extra))
        print(f"| C | decode tok/s (median of {args.rounds} rounds) | min - max | x C = {conc[0]} "
              "| ITL p50 (median) |")
        print("|---|---|---|---|---|")
        for c in conc:
            med = statistics.median(rates[name, c])
            itl = f"{statistics.median(itls[name, c]):.2f} ms" if itls[name, c] else "-"
            print(f"| {c} | {med:,.1f} | {min(rates[name, c]):,.1f} - {max(rates[name, c]):,.1f} "
                  f"| {med / base:.2f} | {itl} |")

if __name__ == "__main__":
    main()
