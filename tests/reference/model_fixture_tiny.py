"""Tiny random-weight HF checkpoints (Llama 3 / Qwen2 / Mistral) and their
float32 reference logits.

Each checkpoint is written with `save_pretrained` (safetensors) and then
reloaded from disk with `from_pretrained(dtype=torch.float32)`, so the
reference logits are computed from exactly the bytes a C++ loader reads
(bf16 / f16 weights are upcast exactly to float32; all math is float32).
"""

import copy
import json
import os
import shutil

import numpy as np
import torch

from model_fixture_common import (argmax_first, f32_exact, library_versions,
                                  max_abs_diff, sha256_file, top2_gap,
                                  write_json)

SEQ_LENGTHS = (1, 7, 23, 61)
GREEDY_SEQ_INDEX = 1          # continue the 7-token sequence
GREEDY_NEW_TOKENS = 16

# Init scales: larger than HF's 0.02 so logits spread over a few units and
# the argmax / top-2 gaps are meaningful. A spec may override them ("init").
DEFAULT_INIT = {
    "linear": 0.1,     # normal std of every 2-D projection weight
    "bias": 0.05,      # normal std of biases (Qwen2 q/k/v)
    "embed": 0.3,      # normal std of embed_tokens
    "lm_head": 0.15,   # normal std of an untied lm_head
    "norm": 0.1,       # norm weights uniform in [1 - norm, 1 + norm]
}


def _specs():
    from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig,
                              MistralForCausalLM, Qwen2Config,
                              Qwen2ForCausalLM)
    return [
        {
            "name": "tiny_llama3", "cls": LlamaForCausalLM, "seed": 1003,
            "save_dtype": torch.float32, "max_shard_size": "200KB",
            "legacy_config": True,
            "config": LlamaConfig(
                hidden_size=64, intermediate_size=160, num_hidden_layers=3,
                num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                vocab_size=320, rms_norm_eps=1e-5, rope_theta=500000.0,
                max_position_embeddings=512, tie_word_embeddings=False,
                rope_scaling={"rope_type": "llama3", "factor": 8.0,
                              "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                              "original_max_position_embeddings": 64}),
        },
        {
            "name": "tiny_qwen2", "cls": Qwen2ForCausalLM, "seed": 2002,
            # Tied embeddings make the current token's own embedding dominate
            # the logits at the default scales (greedy repeats one token);
            # stronger layers give a varied greedy continuation.
            "init": {"embed": 0.2, "linear": 0.3},
            "save_dtype": torch.bfloat16, "max_shard_size": None,
            "legacy_config": False,
            "config": Qwen2Config(
                hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=1, vocab_size=300,
                rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=True,
                max_position_embeddings=512),
        },
        {
            "name": "tiny_mistral", "cls": MistralForCausalLM, "seed": 3001,
            "save_dtype": torch.float16, "max_shard_size": None,
            "legacy_config": False,
            "config": MistralConfig(
                hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=8, num_key_value_heads=2, head_dim=8,
                vocab_size=256, sliding_window=None, rms_norm_eps=1e-5,
                max_position_embeddings=512, tie_word_embeddings=False),
        },
    ]


@torch.no_grad()
def init_weights(model, seed, overrides=None):
    """Deterministic init of every parameter (sorted by name, one generator)."""
    std = {**DEFAULT_INIT, **(overrides or {})}
    g = torch.Generator().manual_seed(seed)
    for name, p in sorted(model.named_parameters()):
        if name.endswith("norm.weight"):
            v = 1.0 + std["norm"] * (2.0 * torch.rand(p.shape, generator=g) - 1)
        elif name.endswith(".bias"):
            v = std["bias"] * torch.randn(p.shape, generator=g)
        elif "embed_tokens" in name:
            v = std["embed"] * torch.randn(p.shape, generator=g)
        elif name.startswith("lm_head"):
            v = std["lm_head"] * torch.randn(p.shape, generator=g)
        elif name.startswith("score"):   # sequence classifiers (reward models)
            v = std["score"] * torch.randn(p.shape, generator=g)
        elif name.endswith(".weight") and p.dim() == 2:
            v = std["linear"] * torch.randn(p.shape, generator=g)
        else:
            raise ValueError(f"no init rule for {name}")
        p.copy_(v)


def legacy_rope_config(path):
    """Rewrites config.json to the on-disk form of real Llama 3.x checkpoints.

    transformers 5 writes `rope_parameters` and `dtype`; checkpoints in the
    wild (and transformers 4) use top-level `rope_theta`, `rope_scaling` and
    `torch_dtype`. One fixture in each form covers both parsers.
    """
    with open(path) as f:
        cfg = json.load(f)
    rope = dict(cfg.pop("rope_parameters"))
    cfg["rope_theta"] = rope.pop("rope_theta")
    cfg["rope_scaling"] = rope
    cfg["torch_dtype"] = cfg.pop("dtype")
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def rope_info(model, config):
    """Default vs actual inverse frequencies and which llama3 regime each hit."""
    head_dim = getattr(config, "head_dim", None) or (
        config.hidden_size // config.num_attention_heads)
    theta = config.rope_parameters["rope_theta"]
    default = 1.0 / (theta ** (torch.arange(0, head_dim, 2).float() / head_dim))
    actual = model.model.rotary_emb.inv_freq.float()
    info = {
        "rope_parameters": dict(config.rope_parameters),
        "head_dim": head_dim,
        "attention_scaling": float(model.model.rotary_emb.attention_scaling),
        "default_inv_freq": [f32_exact(v) for v in default],
        "inv_freq": [f32_exact(v) for v in actual],
    }
    params = config.rope_parameters
    if params.get("rope_type") == "llama3":
        old = params["original_max_position_embeddings"]
        low_wl = old / params["low_freq_factor"]
        high_wl = old / params["high_freq_factor"]
        regimes = []
        for f in default.tolist():
            wl = 2 * np.pi / f
            regimes.append("unchanged" if wl < high_wl else
                           "divided_by_factor" if wl > low_wl else "smoothed")
        info["wavelengths"] = [round(2 * np.pi / f, 3) for f in default.tolist()]
        info["llama3_regimes"] = regimes
        changed = int((actual != default).sum())
        assert changed > 0 and "unchanged" in regimes, "scaling must bite"
        info["num_changed_frequencies"] = changed
    return info


def sequences(vocab, seed):
    rng = np.random.RandomState(seed)
    seqs = [[int(t) for t in rng.randint(0, vocab, n)] for n in SEQ_LENGTHS]
    seqs[-1][5], seqs[-1][40] = 0, vocab - 1   # exercise both table edges
    return seqs


@torch.no_grad()
def forward(model, ids):
    return model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float()


@torch.no_grad()
def incremental(model, ids, steps=0):
    """Feeds `ids` one token at a time through the KV cache, then greedy
    `steps` more. Returns (logits rows for every fed position, new ids)."""
    cache, rows, new_ids = None, [], []
    feed = list(ids)
    for i in range(len(ids) + steps):
        out = model(input_ids=torch.tensor([[feed[i]]]),
                    past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        row = out.logits[0, -1].float()
        rows.append(row)
        if i + 1 >= len(ids) and len(new_ids) < steps:
            nxt = argmax_first(row)
            new_ids.append(nxt)
            feed.append(nxt)
    return torch.stack(rows), new_ids


@torch.no_grad()
def observe(model, seqs, reference, save_dtype):
    obs = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        obs["f32_threads_1_vs_2"] = max(max_abs_diff(forward(model, s), r)
                                        for s, r in zip(seqs, reference))
    finally:
        torch.set_num_threads(threads)
    model.set_attn_implementation("sdpa")
    try:
        obs["f32_eager_vs_sdpa_attention"] = max(
            max_abs_diff(forward(model, s), r) for s, r in zip(seqs, reference))
    finally:
        model.set_attn_implementation("eager")
    rows, _ = incremental(model, seqs[-1])
    obs["f32_kv_cache_decode_vs_full_forward"] = max_abs_diff(rows,
                                                              reference[-1])
    m64 = copy.deepcopy(model).double()
    f64 = [m64(input_ids=torch.tensor([s]), use_cache=False).logits[0]
           for s in seqs]
    obs["f32_vs_f64_compute"] = max(max_abs_diff(a, b)
                                    for a, b in zip(f64, reference))
    if save_dtype != torch.float32:
        low = copy.deepcopy(model).to(save_dtype)
        name = str(save_dtype).replace("torch.", "")
        obs[f"{name}_compute_vs_f32"] = max(
            max_abs_diff(forward(low, s), r) for s, r in zip(seqs, reference))
        obs[f"argmax_flips_{name}_compute_vs_f32"] = sum(
            int((forward(low, s).argmax(-1) != r.argmax(-1)).sum())
            for s, r in zip(seqs, reference))
    obs["max_abs_logit"] = max(float(r.abs().max()) for r in reference)
    obs["min_top2_gap"] = min(top2_gap(row) for r in reference for row in r)
    return obs


def make_one(spec, out_dir, log):
    name, cls = spec["name"], spec["cls"]
    ckpt = os.path.join(out_dir, name)
    shutil.rmtree(ckpt, ignore_errors=True)
    torch.manual_seed(spec["seed"])
    model = cls(spec["config"]).eval()
    init = {**DEFAULT_INIT, **spec.get("init", {})}
    init_weights(model, spec["seed"], init)
    saved = model.to(spec["save_dtype"])
    kwargs = {}
    if spec["max_shard_size"]:
        kwargs["max_shard_size"] = spec["max_shard_size"]
    saved.save_pretrained(ckpt, **kwargs)
    if spec["legacy_config"]:
        legacy_rope_config(os.path.join(ckpt, "config.json"))

    ref_model = cls.from_pretrained(ckpt, dtype=torch.float32,
                                    attn_implementation="eager").eval()
    # The reloaded float32 weights are exactly the upcast saved weights.
    mem = dict(saved.named_parameters())
    for pname, p in ref_model.named_parameters():
        assert torch.equal(p, mem[pname].float()), pname
    if spec["legacy_config"]:
        assert torch.equal(ref_model.model.rotary_emb.inv_freq,
                           model.model.rotary_emb.inv_freq), "legacy rope"

    seqs = sequences(ref_model.config.vocab_size, spec["seed"] + 1)
    reference = [forward(ref_model, s) for s in seqs]
    greedy_prompt = seqs[GREEDY_SEQ_INDEX]
    rows, new_ids = incremental(ref_model, greedy_prompt, GREEDY_NEW_TOKENS)
    greedy_rows = rows[len(greedy_prompt) - 1:len(greedy_prompt) - 1
                       + GREEDY_NEW_TOKENS]
    obs = observe(ref_model, seqs, reference, spec["save_dtype"])
    log(f"{name}: observed {obs}")

    files = sorted(os.listdir(ckpt))
    fixture = {
        "format_version": 1,
        "generator": "tests/reference/make_model_fixtures.py",
        "versions": library_versions(),
        "name": name,
        "checkpoint_dir": name,
        "architecture": ref_model.config.architectures[0],
        "weights_dtype": str(spec["save_dtype"]).replace("torch.", ""),
        "compute_dtype": "float32",
        "config_form": "legacy rope_theta/rope_scaling/torch_dtype"
                       if spec["legacy_config"] else
                       "transformers-5 rope_parameters/dtype",
        "files": {f: sha256_file(os.path.join(ckpt, f)) for f in files},
        "vocab_size": ref_model.config.vocab_size,
        "tie_word_embeddings": bool(ref_model.config.tie_word_embeddings),
        "init_std": init,
        "rope": rope_info(ref_model, ref_model.config),
        "observed_max_abs_diffs": obs,
        "sequences": [
            {"ids": s, "argmax": [argmax_first(r) for r in ref],
             "logits": [[f32_exact(v) for v in r.tolist()] for r in ref]}
            for s, ref in zip(seqs, reference)],
        "greedy": {
            "prompt_ids": greedy_prompt,
            "new_ids": new_ids,
            "top2_gaps": [f32_exact(top2_gap(r)) for r in greedy_rows],
            "eos_is_stop": False,
        },
    }
    size = write_json(os.path.join(out_dir, f"{name}_logits.json"), fixture)
    return {f"{name}_logits.json": size,
            **{f"{name}/{f}": os.path.getsize(os.path.join(ckpt, f))
               for f in files}}


def make(out_dir, log):
    sizes = {}
    for spec in _specs():
        sizes.update(make_one(spec, out_dir, log))
    return sizes
