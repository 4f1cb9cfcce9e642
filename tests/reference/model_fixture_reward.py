"""Tiny random-weight HF sequence-classification checkpoints (the layout of
reward models such as Skywork-Reward) and their float32 reference scores.

A `*ForSequenceClassification` checkpoint is the causal-LM backbone
(`model.*`) plus `score.weight` [num_labels, hidden] (no bias) and no
`lm_head.weight`. transformers computes score(final-normed hidden states) at
every position and returns the row of the last non-pad token. The fixtures
store that pooled row and the rows of every position, computed from the
checkpoint reloaded from disk with `from_pretrained(dtype=torch.float32)`.
"""

import copy
import os
import shutil

import torch

from model_fixture_common import (f32_exact, library_versions, max_abs_diff,
                                  sha256_file, write_json)
from model_fixture_tiny import (DEFAULT_INIT, init_weights, legacy_rope_config,
                                sequences)

# Scores of normed hidden states with unit-scale entries have std about
# sqrt(hidden) * init, so 0.3 spreads them over a few units at hidden 64.
SCORE_INIT = 0.3


def _specs():
    from transformers import (LlamaConfig, LlamaForSequenceClassification,
                              Qwen2Config, Qwen2ForSequenceClassification)
    return [
        {
            # tiny_llama3's dims and llama3 rope scaling, bf16 like released
            # reward models, in the legacy config form of Llama 3.1 models.
            "name": "tiny_llama3_reward",
            "cls": LlamaForSequenceClassification, "seed": 4001,
            "save_dtype": torch.bfloat16, "legacy_config": True,
            "config": LlamaConfig(
                hidden_size=64, intermediate_size=160, num_hidden_layers=3,
                num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                vocab_size=320, rms_norm_eps=1e-5, rope_theta=500000.0,
                max_position_embeddings=512, tie_word_embeddings=False,
                num_labels=1, pad_token_id=318,
                rope_scaling={"rope_type": "llama3", "factor": 8.0,
                              "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                              "original_max_position_embeddings": 64}),
        },
        {
            # Three labels, f16; tie_word_embeddings true in the config (as
            # in small Qwen2 models) must not replace the score head.
            "name": "tiny_qwen2_classifier3",
            "cls": Qwen2ForSequenceClassification, "seed": 5001,
            "save_dtype": torch.float16, "legacy_config": False,
            "config": Qwen2Config(
                hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=1, vocab_size=300,
                rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=True,
                max_position_embeddings=512, num_labels=3, pad_token_id=0),
        },
    ]


@torch.no_grad()
def all_rows(model, ids):
    """score(final-normed hidden state) at every position: [n, num_labels]."""
    hidden = model.model(input_ids=torch.tensor([ids]),
                         use_cache=False).last_hidden_state
    return model.score(hidden)[0].float()


@torch.no_grad()
def pooled(model, ids):
    """transformers' own output: the row of the last non-pad token."""
    return model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]


@torch.no_grad()
def right_padded_batch(model, seqs, pad_id):
    """Pooled rows of `seqs` batched with right padding and a mask."""
    n = max(len(s) for s in seqs)
    ids = torch.tensor([s + [pad_id] * (n - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (n - len(s)) for s in seqs])
    return model(input_ids=ids, attention_mask=mask, use_cache=False).logits


@torch.no_grad()
def observe(model, seqs, reference):
    obs = {}
    model.set_attn_implementation("sdpa")
    try:
        obs["f32_eager_vs_sdpa_attention"] = max(
            max_abs_diff(all_rows(model, s), r) for s, r in zip(seqs, reference))
    finally:
        model.set_attn_implementation("eager")
    m64 = copy.deepcopy(model).double()
    obs["f32_vs_f64_compute"] = max(max_abs_diff(all_rows(m64, s), r)
                                    for s, r in zip(seqs, reference))
    batch = right_padded_batch(model, seqs, model.config.pad_token_id)
    obs["right_padded_batch_vs_alone"] = max(
        max_abs_diff(b, r[-1]) for b, r in zip(batch, reference))
    obs["max_abs_score"] = max(float(r.abs().max()) for r in reference)
    return obs


def save_checkpoint(spec, ckpt):
    shutil.rmtree(ckpt, ignore_errors=True)
    torch.manual_seed(spec["seed"])
    model = spec["cls"](spec["config"]).eval()
    init = {**DEFAULT_INIT, "score": SCORE_INIT}
    init_weights(model, spec["seed"], init)
    saved = model.to(spec["save_dtype"])
    saved.save_pretrained(ckpt)
    if spec["legacy_config"]:
        legacy_rope_config(os.path.join(ckpt, "config.json"))
    return saved, init


def make_one(spec, out_dir, log):
    name, cls = spec["name"], spec["cls"]
    ckpt = os.path.join(out_dir, name)
    saved, init = save_checkpoint(spec, ckpt)
    ref_model = cls.from_pretrained(ckpt, dtype=torch.float32,
                                    attn_implementation="eager").eval()
    mem = dict(saved.named_parameters())
    for pname, p in ref_model.named_parameters():
        assert torch.equal(p, mem[pname].float()), pname
    cfg = ref_model.config
    assert cfg.num_labels == spec["config"].num_labels

    seqs = sequences(cfg.vocab_size, spec["seed"] + 1)
    for s in seqs:   # the pooled row is then the last position's
        assert s[-1] != cfg.pad_token_id
    reference = [all_rows(ref_model, s) for s in seqs]
    for s, r in zip(seqs, reference):
        assert torch.equal(pooled(ref_model, s), r[-1]), name
    obs = observe(ref_model, seqs, reference)
    assert obs["right_padded_batch_vs_alone"] < 1e-4, obs
    log(f"{name}: observed {obs}")

    files = sorted(os.listdir(ckpt))
    fixture = {
        "format_version": 1,
        "generator": "tests/reference/make_model_fixtures.py",
        "versions": library_versions(),
        "name": name,
        "checkpoint_dir": name,
        "architecture": cfg.architectures[0],
        "weights_dtype": str(spec["save_dtype"]).replace("torch.", ""),
        "compute_dtype": "float32",
        "files": {f: sha256_file(os.path.join(ckpt, f)) for f in files},
        "vocab_size": cfg.vocab_size,
        "num_labels": cfg.num_labels,
        "pad_token_id": cfg.pad_token_id,
        "init_std": init,
        "observed_max_abs_diffs": obs,
        "sequences": [
            {"ids": s,
             "score": [f32_exact(v) for v in r[-1].tolist()],
             "rows": [[f32_exact(v) for v in row] for row in r.tolist()]}
            for s, r in zip(seqs, reference)],
    }
    size = write_json(os.path.join(out_dir, f"{name}_scores.json"), fixture)
    return {f"{name}_scores.json": size,
            **{f"{name}/{f}": os.path.getsize(os.path.join(ckpt, f))
               for f in files}}


def make(out_dir, log):
    sizes = {}
    for spec in _specs():
        sizes.update(make_one(spec, out_dir, log))
    return sizes
