#!/usr/bin/env python3
"""Writes a Hugging Face Llama checkpoint folder of random bf16 weights.

The folder (config.json, model.safetensors or model-0000k-of-0000n.safetensors
shards plus model.safetensors.index.json) has exactly the tensor names of
transformers' LlamaForCausalLM, so both alignserve's loader and transformers
read it; it lets the GPU benchmarks run on a Llama-3-8B-shaped model with no
model hub. It holds no tokenizer: the benchmarks feed token ids.

  python3 benchmarks/gpu/make_random_llama.py --out /tmp/llama3-8b-random \
      [--preset llama3-8b|smollm2-135m|tiny] [--layers N] [--seed 0] \
      [--shard-gb 4] [--device cuda|cpu]

Each tensor is drawn on --device from a generator seeded by (seed, tensor
name), so the weights do not depend on write order or sharding (they do
depend on the device: CPU and CUDA generators differ). Linear weights and
embeddings ~ N(0, 0.02), norm weights ~ 1 + N(0, 0.05). On one H100 the 8B
preset (16 GB) is written in well under 90 s; most of it is disk.
"""
import argparse
import hashlib
import json
import os
import sys
import time

import torch
from safetensors.torch import save_file

PRESETS = {
    "llama3-8b": dict(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128,
        vocab_size=128256, rope_theta=500000.0, max_position_embeddings=8192,
        rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=128000,
        eos_token_id=128001,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
    "smollm2-135m": dict(
        hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, head_dim=64,
        vocab_size=49152, rope_theta=100000.0, max_position_embeddings=8192,
        rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2),
    # Untied, so the lm_head path is exercised by the small tests too.
    "tiny": dict(
        hidden_size=256, intermediate_size=512, num_hidden_layers=2,
        num_attention_heads=8, num_key_value_heads=2, head_dim=32,
        vocab_size=1024, rope_theta=10000.0, max_position_embeddings=2048,
        rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2),
}

LINEAR_STD = 0.02
NORM_STD = 0.05


def make_config(preset, layers):
    cfg = dict(PRESETS[preset])
    if layers is not None:
        cfg["num_hidden_layers"] = layers
    cfg.update(model_type="llama", architectures=["LlamaForCausalLM"],
               torch_dtype="bfloat16", dtype="bfloat16", hidden_act="silu",
               attention_bias=False, mlp_bias=False, attention_dropout=0.0,
               initializer_range=LINEAR_STD, use_cache=True, pretraining_tp=1)
    cfg.setdefault("rope_scaling", None)
    return cfg


def tensor_specs(cfg):
    """[(name, shape, mean, std)] in LlamaForCausalLM state_dict order."""
    h, inter, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    d = cfg["head_dim"]
    q, kv = cfg["num_attention_heads"] * d, cfg["num_key_value_heads"] * d
    specs = [("model.embed_tokens.weight", (v, h), 0.0, LINEAR_STD)]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        specs += [
            (p + "self_attn.q_proj.weight", (q, h), 0.0, LINEAR_STD),
            (p + "self_attn.k_proj.weight", (kv, h), 0.0, LINEAR_STD),
            (p + "self_attn.v_proj.weight", (kv, h), 0.0, LINEAR_STD),
            (p + "self_attn.o_proj.weight", (h, q), 0.0, LINEAR_STD),
            (p + "mlp.gate_proj.weight", (inter, h), 0.0, LINEAR_STD),
            (p + "mlp.up_proj.weight", (inter, h), 0.0, LINEAR_STD),
            (p + "mlp.down_proj.weight", (h, inter), 0.0, LINEAR_STD),
            (p + "input_layernorm.weight", (h,), 1.0, NORM_STD),
            (p + "post_attention_layernorm.weight", (h,), 1.0, NORM_STD),
        ]
    specs.append(("model.norm.weight", (h,), 1.0, NORM_STD))
    if not cfg["tie_word_embeddings"]:
        specs.append(("lm_head.weight", (v, h), 0.0, LINEAR_STD))
    return specs


def nbytes(shape):
    n = 2  # bf16
    for s in shape:
        n *= s
    return n


def plan_shards(specs, shard_bytes):
    """Greedy split in state_dict order; a tensor larger than a shard gets one alone."""
    shards, current, size = [], [], 0
    for spec in specs:
        b = nbytes(spec[1])
        if current and size + b > shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(spec)
        size += b
    if current:
        shards.append(current)
    return shards


def tensor_seed(seed, name):
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generate(spec, seed, device):
    name, shape, mean, std = spec
    gen = torch.Generator(device=device)
    gen.manual_seed(tensor_seed(seed, name))
    t = torch.empty(shape, dtype=torch.bfloat16, device=device)
    t.normal_(mean, std, generator=gen)
    return t.cpu()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder to write (created if missing)")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="llama3-8b")
    ap.add_argument("--layers", type=int, default=None, help="override num_hidden_layers")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shard-gb", type=float, default=4.0, help="max shard size in GB (1e9 bytes)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    if args.layers is not None and args.layers < 1:
        ap.error("--layers must be at least 1")

    t0 = time.perf_counter()
    cfg = make_config(args.preset, args.layers)
    specs = tensor_specs(cfg)
    shards = plan_shards(specs, int(args.shard_gb * 1e9))
    os.makedirs(args.out, exist_ok=True)
    # A stale index or shard set from an earlier run would shadow this one.
    for f in os.listdir(args.out):
        if f.endswith(".safetensors") or f == "model.safetensors.index.json":
            os.remove(os.path.join(args.out, f))
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)

    n = len(shards)
    weight_map, total = {}, 0
    for k, shard in enumerate(shards, 1):
        ts = time.perf_counter()
        fname = "model.safetensors" if n == 1 else f"model-{k:05d}-of-{n:05d}.safetensors"
        tensors = {spec[0]: generate(spec, args.seed, args.device) for spec in shard}
        size = sum(t.numel() * t.element_size() for t in tensors.values())
        path = os.path.join(args.out, fname)
        save_file(tensors, path, metadata={"format": "pt"})
        os.chmod(path, 0o644)  # safetensors creates 0600; others may read the folder
        del tensors
        for spec in shard:
            weight_map[spec[0]] = fname
        total += size
        print(f"shard {k}/{n}: {fname} {size / 1e9:.3f} GB in {time.perf_counter() - ts:.1f} s",
              file=sys.stderr, flush=True)
    if n > 1:
        with open(os.path.join(args.out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    dt = time.perf_counter() - t0
    print(f"wrote {total} bytes ({total / 1e9:.3f} GB, {len(specs)} tensors, {n} shard(s)) "
          f"preset {args.preset} layers {cfg['num_hidden_layers']} on {args.device} "
          f"to {args.out} in {dt:.1f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
