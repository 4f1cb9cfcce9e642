"""Writes tests/data/engine/sampler_fixtures.json: logits rows through the
Hugging Face logits processors and warpers, for tests/engine/*_test.cc.

Oracle per stage:
  repetition_penalty: transformers RepetitionPenaltyLogitsProcessor over
                      prompt + output ids
  presence/frequency: OpenAI's formula over output ids only (numpy):
                      logit[j] -= c[j] * frequency + (c[j] > 0) * presence
  logit_bias:         logit[j] += bias[j]
  min_tokens:         EOS and stop ids to -inf
  temperature, top_k, top_p, min_p: TemperatureLogitsWarper, TopKLogitsWarper,
                      TopPLogitsWarper, MinPLogitsWarper, in that order
  logprobs:           torch.log_softmax of the raw row, top 20 by value then id

Each case stores the raw row, the row after the adjustments (bias, mask,
penalties) and the fully processed row; -inf is written as null. Floats are
float32, written in their shortest round-trip form.

Run from the repository root:
  /root/.cache/alignserve/refvenv/bin/python tests/reference/make_sampler_fixtures.py
Deterministic (fixed seeds); two runs give identical files.
"""

import argparse
import json
import math

import numpy as np
import torch
from transformers import (MinPLogitsWarper, RepetitionPenaltyLogitsProcessor,
                          TemperatureLogitsWarper, TopKLogitsWarper,
                          TopPLogitsWarper)

VOCAB = 1000
EOS = [2, 7]


def f32_list(t):
    out = []
    for v in t.tolist():
        if math.isinf(v) and v < 0:
            out.append(None)
        else:
            out.append(float(str(np.float32(v))))
    return out


def random_row(rng, scale):
    return torch.tensor(rng.standard_normal(VOCAB) * scale, dtype=torch.float32)


def adjust(row, case):
    """Bias, min_tokens mask, repetition, presence/frequency: vLLM's order."""
    x = row.clone().unsqueeze(0)
    for tok, b in case.get("logit_bias", {}).items():
        x[0, int(tok)] += np.float32(b)
    if len(case["output"]) < case.get("min_tokens", 0):
        for tok in case.get("stop_token_ids", []) + EOS:
            x[0, tok] = -math.inf
    rep = case.get("repetition_penalty", 1.0)
    if rep != 1.0:
        ids = torch.tensor([case["prompt"] + case["output"]], dtype=torch.long)
        x = RepetitionPenaltyLogitsProcessor(penalty=rep)(ids, x)
    pres = case.get("presence_penalty", 0.0)
    freq = case.get("frequency_penalty", 0.0)
    if pres or freq:
        counts = np.bincount(np.array(case["output"], dtype=np.int64), minlength=VOCAB)
        delta = counts * np.float32(freq) + (counts > 0) * np.float32(pres)
        x = x - torch.tensor(delta, dtype=torch.float32).unsqueeze(0)
    return x


def warp(x, case):
    ids = torch.zeros((1, 1), dtype=torch.long)  # warpers ignore input_ids
    t = case.get("temperature", 1.0)
    if t != 1.0:
        x = TemperatureLogitsWarper(t)(ids, x)
    if case.get("top_k", 0) > 0:
        x = TopKLogitsWarper(case["top_k"])(ids, x)
    if case.get("top_p", 1.0) < 1.0:
        x = TopPLogitsWarper(case["top_p"])(ids, x)
    if case.get("min_p", 0.0) > 0.0:
        x = MinPLogitsWarper(case["min_p"])(ids, x)
    return x


def logprobs(row, token):
    lp = torch.log_softmax(row.double(), dim=-1)
    order = sorted(range(VOCAB), key=lambda i: (-lp[i].item(), i))[:20]
    return {
        "token": token,
        "token_logprob": lp[token].item(),
        "token_rank": int((lp > lp[token]).sum().item()) + 1,
        "top_ids": order,
        "top_logprobs": [lp[i].item() for i in order],
    }


def cases(rng):
    hist = lambda n: [int(v) for v in rng.integers(0, VOCAB, size=n)]
    prompt, output = hist(40), hist(25)
    output += output[:5]  # repeated tokens, so counts reach 2 and 3
    out = [
        dict(name="repetition_penalty_above_one", scale=3.0, repetition_penalty=1.3),
        dict(name="repetition_penalty_below_one", scale=3.0, repetition_penalty=0.7),
        dict(name="presence_and_frequency", scale=3.0, presence_penalty=0.5,
             frequency_penalty=0.3),
        dict(name="negative_presence_and_frequency", scale=3.0, presence_penalty=-1.5,
             frequency_penalty=-0.75),
        dict(name="logit_bias", scale=3.0,
             logit_bias={"3": 100.0, "17": -100.0, "500": 2.5, "999": -0.5}),
        dict(name="min_tokens_masks_eos_and_stop_ids", scale=3.0, min_tokens=50,
             stop_token_ids=[11, 12]),
        dict(name="temperature", scale=3.0, temperature=0.7),
        dict(name="top_k", scale=3.0, top_k=50),
        dict(name="top_k_with_temperature", scale=2.0, temperature=1.5, top_k=7),
        dict(name="top_p", scale=3.0, top_p=0.9),
        dict(name="top_p_flat_row", scale=0.5, top_p=0.5),
        dict(name="top_p_with_temperature", scale=3.0, temperature=0.6, top_p=0.8),
        dict(name="min_p", scale=3.0, min_p=0.05),
        dict(name="top_k_top_p_min_p", scale=3.0, top_k=100, top_p=0.95, min_p=0.01),
        dict(name="everything", scale=3.0, logit_bias={"5": 3.0, "6": -3.0},
             repetition_penalty=1.2, presence_penalty=0.4, frequency_penalty=0.2,
             temperature=0.8, top_k=100, top_p=0.9, min_p=0.02),
    ]
    for c in out:
        c.setdefault("prompt", prompt)
        c.setdefault("output", output)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/data/engine/sampler_fixtures.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(20240611)
    result = {"vocab": VOCAB, "eos_token_ids": EOS, "cases": []}
    for case in cases(rng):
        row = random_row(rng, case.pop("scale"))
        adjusted = adjust(row, case)
        processed = warp(adjusted.clone(), case)
        token = int(rng.integers(0, VOCAB))
        entry = dict(case)
        entry["logits"] = f32_list(row)
        entry["adjusted"] = f32_list(adjusted[0])
        entry["processed"] = f32_list(processed[0])
        entry["kept"] = int(torch.isfinite(processed[0]).sum().item())
        entry["logprobs"] = logprobs(row, token)
        result["cases"].append(entry)
        print(f"{entry['name']}: {entry['kept']} tokens kept")
    with open(args.out, "w") as f:
        json.dump(result, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
