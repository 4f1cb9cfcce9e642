#!/usr/bin/env python3
"""Side-by-side CPU speed: alignserve's runtime against llama.cpp on one GGUF.

Runs build/runtime_bench and llama.cpp (through llama-cpp-python, which
builds it from source) on the same file, the same pseudo-random prompt and
the same thread count, alternating the two engines over several rounds so
machine noise hits both alike; prints medians and the ratios.

  python3 benchmarks/compare_llamacpp.py [--model PATH] [--prompt-tokens 512]
      [--decode-tokens 128] [--rounds 3] [--threads 2]

llama-cpp-python is installed once into a virtual environment outside the
repository (it builds llama.cpp from source with this machine's CPU flags):
  python3 -m venv ~/.cache/alignserve/llamacpp-venv
  ~/.cache/alignserve/llamacpp-venv/bin/pip install llama-cpp-python==0.3.36
then run this script with that venv's python.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run_alignserve(binary, model, prompt_tokens, decode_tokens, threads, mode):
    env = dict(os.environ, ALIGNSERVE_NUM_THREADS=str(threads), ALIGNSERVE_CPU_MATMUL=mode)
    out = subprocess.run([binary, "--model", model, "--prompt-tokens", str(prompt_tokens),
                          "--decode-tokens", str(decode_tokens), "--repeats", "1"],
                         check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_llamacpp(llm, prompt, decode_tokens):
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(prompt)
    t1 = time.perf_counter()
    for _ in range(decode_tokens):
        logits = llm.scores[llm.n_tokens - 1]
        llm.eval([int(logits.argmax())])
    t2 = time.perf_counter()
    return {"prompt_tok_s": len(prompt) / (t1 - t0), "decode_tok_s": decode_tokens / (t2 - t1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=os.path.expanduser(
        os.environ.get("ALIGNSERVE_MODEL_DIR", "~/.cache/alignserve/models")
        + "/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "runtime_bench"))
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--modes", default="exact,int8",
                    help="alignserve CPU matmul modes to run (ALIGNSERVE_CPU_MATMUL)")
    args = ap.parse_args()

    from llama_cpp import Llama  # llama-cpp-python
    llm = Llama(model_path=args.model, n_ctx=args.prompt_tokens + args.decode_tokens + 8,
                n_threads=args.threads, n_threads_batch=args.threads, n_batch=args.prompt_tokens,
                logits_all=True, verbose=False)
    # Prompt content does not change the cost of a forward pass; both sides
    # use pseudo-random ids in [100, vocab) of the same length.
    vocab = llm.n_vocab()
    rng = random.Random(1234)
    prompt = [rng.randint(100, vocab - 1) for _ in range(args.prompt_tokens)]

    modes = args.modes.split(",")
    ours = {m: [] for m in modes}
    theirs = []
    for r in range(args.rounds):
        for m in modes:
            ours[m].append(run_alignserve(args.binary, args.model, args.prompt_tokens,
                                          args.decode_tokens, args.threads, m))
        theirs.append(run_llamacpp(llm, prompt, args.decode_tokens))
        line = ", ".join(f"alignserve[{m}] {ours[m][-1]['prompt_tok_s']:.1f} / "
                         f"{ours[m][-1]['decode_tok_s']:.1f}" for m in modes)
        print(f"round {r + 1}: {line}, llama.cpp {theirs[-1]['prompt_tok_s']:.1f} / "
              f"{theirs[-1]['decode_tok_s']:.1f} tok/s (prompt / decode)", file=sys.stderr)

    def med(rows, key):
        return statistics.median(r[key] for r in rows)

    result = {
        "model": os.path.basename(args.model), "threads": args.threads,
        "prompt_tokens": args.prompt_tokens, "decode_tokens": args.decode_tokens,
        "rounds": args.rounds,
        "llama_cpp": {"prompt_tok_s": med(theirs, "prompt_tok_s"),
                      "decode_tok_s": med(theirs, "decode_tok_s")},
    }
    for m in modes:
        mine = {"prompt_tok_s": med(ours[m], "prompt_tok_s"),
                "decode_tok_s": med(ours[m], "decode_tok_s")}
        mine["ratio_prompt"] = mine["prompt_tok_s"] / result["llama_cpp"]["prompt_tok_s"]
        mine["ratio_decode"] = mine["decode_tok_s"] / result["llama_cpp"]["decode_tok_s"]
        result[f"alignserve_{m}"] = mine
    print(json.dumps(result, indent=1))

if __name__ == "__main__":
    main()
