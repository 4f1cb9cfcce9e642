#!/usr/bin/env python3
"""Generates the model-runtime reference fixtures under tests/data/models.

Run from the repository root (about 2 minutes on 2 CPU cores):

  /root/.cache/alignserve/refvenv/bin/python tests/reference/make_model_fixtures.py \
      --out tests/data/models

Produces (see tests/reference/README.md for the formats):
  smollm2_logits.json   SmolLM2-135M-Instruct GGUF logits parity fixture
  smollm2_greedy.json   64-token greedy continuations of 3 chat prompts
  tiny_llama3/ tiny_qwen2/ tiny_mistral/   random-weight HF checkpoints
  tiny_*_logits.json    their full float32 logits + 16-token greedy runs
  tiny_llama3_reward/ tiny_qwen2_classifier3/   sequence-classification
                        (reward-model) checkpoints with a score head
  tiny_*_scores.json    their float32 scores at every position
  tiny_reward_chat/     a reward-model checkpoint with its tokenizer and
                        chat template; tiny_reward_chat_scores.json holds
                        conversations rendered, tokenized and scored by HF

Deterministic: fixed seeds, 2 torch threads, eager attention. The oracle is
transformers (CPU, float32); tests never run this script.
"""

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import model_fixture_reward  # noqa: E402
import model_fixture_reward_chat  # noqa: E402
import model_fixture_smollm2  # noqa: E402
import model_fixture_tiny  # noqa: E402

DEFAULT_GGUF = "/root/.cache/alignserve/models/SmolLM2-135M-Instruct.Q4_1.gguf"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/data/models")
    ap.add_argument("--gguf", default=DEFAULT_GGUF,
                    help="SmolLM2-135M-Instruct GGUF (the default model)")
    ap.add_argument("--only", choices=("all", "smollm2", "tiny", "reward",
                                        "reward_chat"),
                    default="all")
    args = ap.parse_args()

    torch.set_num_threads(2)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    start = time.time()

    def log(msg):
        print(f"[{time.time() - start:6.1f}s] {msg}", flush=True)

    os.makedirs(args.out, exist_ok=True)
    sizes = {}
    if args.only in ("all", "tiny"):
        sizes.update(model_fixture_tiny.make(args.out, log))
    if args.only in ("all", "reward"):
        sizes.update(model_fixture_reward.make(args.out, log))
    if args.only in ("all", "reward_chat"):
        sizes.update(model_fixture_reward_chat.make(args.out, log))
    if args.only in ("all", "smollm2"):
        sizes.update(model_fixture_smollm2.make(args.out, args.gguf, log))
    for name, size in sorted(sizes.items()):
        log(f"{size:>10,d}  {name}")
    log(f"total {sum(sizes.values()):,d} bytes written")


if __name__ == "__main__":
    main()
