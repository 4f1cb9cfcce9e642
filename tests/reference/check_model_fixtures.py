#!/usr/bin/env python3
"""Independent check of the model fixtures: a from-scratch float64 numpy
forward pass that reads only what the C++ runtime reads (config.json +
safetensors, or the raw GGUF) and compares with the stored logits.

It shares no code with transformers, so it checks that the fixtures follow
from the files plus the documented conventions (RMSNorm, SiLU-gated MLP, GQA,
rotate-half RoPE for HF checkpoints, llama3 frequency scaling, tied
embeddings, the score head of sequence classifiers, and adjacent-pair RoPE on
the raw permuted GGUF Q/K rows). Run
from the repository root:

  /root/.cache/alignserve/refvenv/bin/python tests/reference/check_model_fixtures.py
"""

import argparse
import json
import math
import os
import sys

import numpy as np

DEFAULT_GGUF = "/root/.cache/alignserve/models/SmolLM2-135M-Instruct.Q4_1.gguf"


def inv_freq(head_dim, theta, scaling):
    f = theta ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    if not scaling or scaling.get("rope_type", "default") == "default":
        return f
    assert scaling["rope_type"] == "llama3", scaling
    factor, lo, hi = (scaling["factor"], scaling["low_freq_factor"],
                      scaling["high_freq_factor"])
    old = scaling["original_max_position_embeddings"]
    out = []
    for v in f:
        wavelen = 2 * math.pi / v
        if wavelen < old / hi:
            out.append(v)
        elif wavelen > old / lo:
            out.append(v / factor)
        else:
            s = (old / wavelen - lo) / (hi - lo)
            out.append((1 - s) * v / factor + s * v)
    return np.array(out)


def rope(x, freqs, adjacent):
    """x: [n, heads, d]; rotate pairs (i, i+d/2) or, if adjacent, (2i, 2i+1)."""
    n = x.shape[0]
    ang = np.arange(n)[:, None] * freqs[None, :]          # [n, d/2]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    if adjacent:
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2], out[..., 1::2] = a * c - b * s, a * s + b * c
        return out
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    return np.concatenate([a * c - b * s, a * s + b * c], axis=-1)


def rms(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def forward(w, cfg, ids, adjacent=False):
    """w: name -> float64 array in HF naming; returns [n, vocab] logits, or
    [n, num_labels] scores for a sequence classifier (score.weight)."""
    nh, nkv = cfg["heads"], cfg["kv_heads"]
    d, eps, fr = cfg["head_dim"], cfg["eps"], cfg["inv_freq"]
    x = w["model.embed_tokens.weight"][ids]
    n = len(ids)
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for layer in range(cfg["layers"]):
        p = f"model.layers.{layer}."

        def lin(h, name):
            y = h @ w[p + name + ".weight"].T
            return y + w[p + name + ".bias"] if p + name + ".bias" in w else y
        h = rms(x, w[p + "input_layernorm.weight"], eps)
        q = rope(lin(h, "self_attn.q_proj").reshape(n, nh, d), fr, adjacent)
        k = rope(lin(h, "self_attn.k_proj").reshape(n, nkv, d), fr, adjacent)
        v = lin(h, "self_attn.v_proj").reshape(n, nkv, d)
        k, v = (np.repeat(t, nh // nkv, axis=1) for t in (k, v))
        sc = np.einsum("qhd,khd->hqk", q, k) / math.sqrt(d) + mask
        sc = np.exp(sc - sc.max(-1, keepdims=True))
        sc /= sc.sum(-1, keepdims=True)
        att = np.einsum("hqk,khd->qhd", sc, v).reshape(n, nh * d)
        x = x + lin(att, "self_attn.o_proj")
        h = rms(x, w[p + "post_attention_layernorm.weight"], eps)
        g = lin(h, "mlp.gate_proj")
        x = x + lin(g / (1 + np.exp(-g)) * lin(h, "mlp.up_proj"),
                    "mlp.down_proj")
    x = rms(x, w["model.norm.weight"], eps)
    if "score.weight" in w:
        return x @ w["score.weight"].T
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return x @ head.T


def load_hf(ckpt):
    from safetensors.torch import load_file
    with open(os.path.join(ckpt, "config.json")) as f:
        c = json.load(f)
    rp = c.get("rope_parameters") or {}
    theta = c.get("rope_theta", rp.get("rope_theta"))
    scaling = c.get("rope_scaling") or (rp if rp.get("rope_type") != "default"
                                        else None)
    hd = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    cfg = {"heads": c["num_attention_heads"],
           "kv_heads": c["num_key_value_heads"], "head_dim": hd,
           "eps": c["rms_norm_eps"], "layers": c["num_hidden_layers"],
           "inv_freq": inv_freq(hd, theta, scaling)}
    w = {}
    for f in sorted(os.listdir(ckpt)):
        if f.endswith(".safetensors"):
            for k, t in load_file(os.path.join(ckpt, f)).items():
                w[k] = t.double().numpy()
    if c.get("tie_word_embeddings"):
        assert "lm_head.weight" not in w
    return w, cfg


def check_tiny(data_dir, name):
    with open(os.path.join(data_dir, f"{name}_logits.json")) as f:
        fx = json.load(f)
    w, cfg = load_hf(os.path.join(data_dir, fx["checkpoint_dir"]))
    stored_freq = np.array(fx["rope"]["inv_freq"])
    freq_err = float(np.abs(cfg["inv_freq"] - stored_freq).max()
                     / stored_freq.max())
    worst = 0.0
    for s in fx["sequences"]:
        got = forward(w, cfg, s["ids"])
        worst = max(worst, float(np.abs(got - np.array(s["logits"])).max()))
        assert list(got.argmax(-1)) == s["argmax"], name
    ids = list(fx["greedy"]["prompt_ids"])
    for _ in fx["greedy"]["new_ids"]:
        ids.append(int(forward(w, cfg, ids)[-1].argmax()))
    greedy_ok = ids[len(fx["greedy"]["prompt_ids"]):] == fx["greedy"]["new_ids"]
    print(f"{name}: max |numpy f64 - fixture| = {worst:.3g}, "
          f"inv_freq rel err {freq_err:.2g}, greedy match {greedy_ok}")
    return worst < 1e-4 and greedy_ok


def check_scores(data_dir, name):
    with open(os.path.join(data_dir, f"{name}_scores.json")) as f:
        fx = json.load(f)
    w, cfg = load_hf(os.path.join(data_dir, fx["checkpoint_dir"]))
    assert "lm_head.weight" not in w, name
    assert w["score.weight"].shape[0] == fx["num_labels"], name
    worst = 0.0
    for s in fx["sequences"]:
        got = forward(w, cfg, s["ids"])
        worst = max(worst, float(np.abs(got - np.array(s["rows"])).max()))
        assert s["score"] == s["rows"][-1], name
    print(f"{name}: max |numpy f64 - fixture| = {worst:.3g}")
    return worst < 1e-4


def check_chat_scores(data_dir, name):
    """The chat fixture without transformers: the template rendered by plain
    jinja2, the text encoded by the `tokenizers` library, the pooled score
    as the last row of the numpy forward pass."""
    import jinja2
    from tokenizers import Tokenizer
    with open(os.path.join(data_dir, f"{name}_scores.json")) as f:
        fx = json.load(f)
    ckpt = os.path.join(data_dir, fx["checkpoint_dir"])
    w, cfg = load_hf(ckpt)
    assert "lm_head.weight" not in w, name
    template = jinja2.Environment().from_string(fx["chat_template"])
    tok = Tokenizer.from_file(os.path.join(ckpt, "tokenizer.json"))
    texts_ok, worst = True, 0.0
    for c in fx["conversations"]:
        messages = [{"role": "user", "content": c["prompt"]},
                    {"role": "assistant", "content": c["response"]}]
        text = template.render(messages=messages, bos_token=fx["bos_token"],
                               eos_token=fx["eos_token"],
                               add_generation_prompt=False)
        ids = tok.encode(text, add_special_tokens=False).ids
        texts_ok = texts_ok and text == c["text"] and ids == c["ids"]
        got = forward(w, cfg, c["ids"])[-1]
        worst = max(worst, float(np.abs(got - np.array(c["score"])).max()))
    print(f"{name}: text and ids match {texts_ok}, "
          f"max |numpy f64 - fixture| = {worst:.3g}")
    return texts_ok and worst < 1e-4


def llamacpp_unpermute(w, n_head):
    rows = w.shape[0]
    return (w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def load_gguf(path, unpermute):
    import gguf
    r = gguf.GGUFReader(path)
    meta = {k: f.contents() for k, f in r.fields.items()
            if k.startswith("llama.")}
    nh, nkv = meta["llama.attention.head_count"], meta["llama.attention.head_count_kv"]
    hd = meta["llama.embedding_length"] // nh
    cfg = {"heads": nh, "kv_heads": nkv, "head_dim": hd,
           "layers": meta["llama.block_count"],
           "eps": meta["llama.attention.layer_norm_rms_epsilon"],
           "inv_freq": inv_freq(hd, meta["llama.rope.freq_base"], None)}
    names = {"token_embd": "model.embed_tokens", "output_norm": "model.norm",
             "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
             "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
             "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
             "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
             "ffn_down": "mlp.down_proj"}
    w = {}
    for t in r.tensors:
        a = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
        parts = t.name.split(".")
        if parts[0] == "blk":
            kind = parts[2]
            if unpermute and kind in ("attn_q", "attn_k"):
                a = llamacpp_unpermute(a, nh if kind == "attn_q" else nkv)
            key = f"model.layers.{parts[1]}.{names[kind]}.weight"
        else:
            key = names[parts[0]] + ".weight"
        w[key] = a
    return w, cfg


def check_smollm2(data_dir, gguf_path):
    with open(os.path.join(data_dir, "smollm2_logits.json")) as f:
        fx = json.load(f)
    probes = fx["probe_ids"]
    ok = True
    for label, unpermute, adjacent in (("raw rows + adjacent-pair rope", False, True),
                                       ("un-permuted + rotate-half rope", True, False)):
        w, cfg = load_gguf(gguf_path, unpermute)
        worst, agree, total = 0.0, 0, 0
        for p in fx["prompts"]:
            got = forward(w, cfg, p["ids"], adjacent=adjacent)
            for row, pos in zip(got, p["positions"]):
                worst = max(worst,
                            float(np.abs(row[probes] - pos["probe_logits"]).max()),
                            float(np.abs(row[pos["top_ids"]] - pos["top_logits"]).max()))
                agree += int(row.argmax() == pos["argmax"])
                total += 1
        print(f"smollm2 ({label}): max |numpy f64 - fixture| = {worst:.3g}, "
              f"argmax {agree}/{total}")
        ok = ok and worst < 1e-3 and agree == total
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="tests/data/models")
    ap.add_argument("--gguf", default=DEFAULT_GGUF)
    args = ap.parse_args()
    ok = all([check_tiny(args.data, n)
              for n in ("tiny_llama3", "tiny_qwen2", "tiny_mistral")])
    ok = all([check_scores(args.data, n)
              for n in ("tiny_llama3_reward", "tiny_qwen2_classifier3")]) and ok
    ok = check_chat_scores(args.data, "tiny_reward_chat") and ok
    ok = check_smollm2(args.data, args.gguf) and ok
    print("ALL OK" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
