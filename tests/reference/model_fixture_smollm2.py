"""SmolLM2-135M-Instruct (GGUF, Q4_1) fixtures: logits parity, greedy decode,
and the check of which RoPE convention the raw GGUF Q/K rows need.

Oracle: transformers loads the GGUF with `gguf_file=`, dequantizes every
tensor to float32 and un-permutes the llama Q/K rows back to the HF layout, so
the HF forward pass (rotate-half RoPE) runs on exactly the dequantized values
that a C++ loader reads from the same file.
"""

import copy
import time

import numpy as np
import torch

from model_fixture_common import (argmax_first, library_versions,
                                  max_abs_diff, round_sig, sha256_file,
                                  top2_gap, write_json)

LOGIT_DIGITS = 6      # significant digits kept for SmolLM2 logits
TOP_K = 32            # top-k (id, logit) pairs stored per position
NUM_PROBE_IDS = 256   # fixed vocabulary ids whose logits are stored everywhere
PROBE_SEED = 20240611
GREEDY_NEW_TOKENS = 64

# Raw prompts (tokenized without BOS: the GGUF says add_bos_token = false).
RAW_PROMPTS = [
    ("english",
     "The quick brown fox jumps over the lazy dog. Meanwhile, historians agree "
     "that the long decline of the Western Roman Empire was caused by"),
    ("code",
     "def fibonacci(n):\n    if n < 2:\n        return n\n"
     "    return fibonacci(n - 1) + "),
    ("numbers",
     "Fibonacci: 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377,"),
    ("multilingual",
     "Le chat dort sur la table. Der Hund schläft im Garten. "
     "El niño come una manzana. 東京は日本の首都です。"),
    ("whitespace_symbols",
     "  Hello,   world!\n\n\tTabs and    spaces; émojis 🙂 — dashes… "
     "<b>html</b> & {\"json\": [1, 2]}"),
    ("short", "Once upon a time, there was a"),
]
CHAT_PROMPT = [{"role": "user", "content": "What is the capital of France?"}]

GREEDY_CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user",
      "content": "Write a Python function that reverses a string."}],
    [{"role": "system", "content": "You are a terse assistant."},
     {"role": "user", "content": "List three primary colors."}],
]


def load(gguf_dir, gguf_name, attn="eager"):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_dir, gguf_file=gguf_name, dtype=torch.float32,
        attn_implementation=attn)
    model.eval()
    return tok, model


def build_prompts(tok):
    """Returns [{name, text, ids}] for the logits fixture (6 raw + 1 chat)."""
    prompts = []
    for name, text in RAW_PROMPTS:
        ids = tok(text, add_special_tokens=False).input_ids
        prompts.append({"name": name, "text": text, "ids": list(map(int, ids))})
    chat_text = tok.apply_chat_template(CHAT_PROMPT, tokenize=False,
                                        add_generation_prompt=True)
    chat_ids = tok(chat_text, add_special_tokens=False).input_ids
    prompts.append({"name": "chat_templated", "text": chat_text,
                    "messages": CHAT_PROMPT, "ids": list(map(int, chat_ids))})
    for p in prompts:
        n = len(p["ids"])
        assert 8 <= n <= 60, (p["name"], n)
    return prompts


def probe_ids(vocab):
    rng = np.random.RandomState(PROBE_SEED)
    forced = {0, 1, 2, vocab - 1}
    rest = rng.choice(np.arange(3, vocab - 1), NUM_PROBE_IDS - len(forced),
                      replace=False)
    return sorted(forced | set(int(x) for x in rest))


@torch.no_grad()
def forward_logits(model, ids):
    """[len(ids), vocab] float32 logits from one full-sequence forward pass."""
    x = torch.tensor([ids], dtype=torch.long)
    return model(input_ids=x, use_cache=False).logits[0].float()


def position_record(row, probes):
    top = torch.topk(row, TOP_K)
    return {
        "argmax": argmax_first(row),
        "top2_gap": round_sig(top2_gap(row), LOGIT_DIGITS),
        "max_abs_logit": round_sig(float(row.abs().max()), LOGIT_DIGITS),
        "top_ids": [int(i) for i in top.indices],
        "top_logits": [round_sig(v, LOGIT_DIGITS) for v in top.values],
        "probe_logits": [round_sig(row[i], LOGIT_DIGITS) for i in probes],
    }


# ---------------------------------------------------------------- RoPE check

def llamacpp_permute(w, n_head):
    """The row permutation llama.cpp's converter applies to HF Q/K weights.

    Within each head, HF row (j * half + i) moves to GGUF row (2 * i + j),
    j in {0, 1}, i in [0, half): the rotate-half partners (i, i + half)
    become the adjacent pair (2i, 2i + 1).
    """
    rows = w.shape[0]
    return (w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def interleaved_rope(q, k, cos, sin, unsqueeze_dim=1):
    """Adjacent-pair RoPE (llama.cpp LLAMA_ROPE_TYPE_NORM / GPT-J style).

    HF passes cos/sin as [.., head_dim] = cat(freqs, freqs); pair i uses
    freqs[i]: out[2i] = x[2i] c - x[2i+1] s, out[2i+1] = x[2i] s + x[2i+1] c.
    """
    half = cos.shape[-1] // 2
    c = cos[..., :half].repeat_interleave(2, dim=-1).unsqueeze(unsqueeze_dim)
    s = sin[..., :half].repeat_interleave(2, dim=-1).unsqueeze(unsqueeze_dim)

    def rot(x):
        return torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2)
    return q * c + rot(q) * s, k * c + rot(k) * s


@torch.no_grad()
def rope_check(model, gguf_path, prompts, reference):
    """Proves which RoPE the raw (permuted) GGUF Q/K rows need.

    1. Raw dequantized GGUF rows == llamacpp_permute(HF rows) (and != HF rows).
    2. HF model with raw GGUF Q/K rows + adjacent-pair RoPE reproduces the
       reference logits; raw rows + rotate-half RoPE do not.
    """
    import gguf
    import transformers.models.llama.modeling_llama as ml
    cfg = model.config
    reader = gguf.GGUFReader(gguf_path)
    tensors = {t.name: t for t in reader.tensors}
    result = {}
    for kind, n_head in (("q", cfg.num_attention_heads),
                         ("k", cfg.num_key_value_heads)):
        t = tensors[f"blk.0.attn_{kind}.weight"]
        raw = torch.from_numpy(
            np.ascontiguousarray(gguf.quants.dequantize(t.data, t.tensor_type)))
        hf = getattr(model.model.layers[0].self_attn, f"{kind}_proj").weight
        result[f"layer0_{kind}_raw_equals_hf"] = bool(torch.equal(raw, hf))
        result[f"layer0_{kind}_raw_equals_permuted_hf"] = bool(
            torch.equal(raw, llamacpp_permute(hf.detach(), n_head)))

    saved = [(a.q_proj.weight.data.clone(), a.k_proj.weight.data.clone())
             for a in (layer.self_attn for layer in model.model.layers)]
    original_rope = ml.apply_rotary_pos_emb
    try:
        for layer in model.model.layers:
            a = layer.self_attn
            a.q_proj.weight.data = llamacpp_permute(
                a.q_proj.weight.data, cfg.num_attention_heads)
            a.k_proj.weight.data = llamacpp_permute(
                a.k_proj.weight.data, cfg.num_key_value_heads)
        diffs = {}
        for label, rope in (("gguf_rows_adjacent_pair_rope", interleaved_rope),
                            ("gguf_rows_rotate_half_rope", original_rope)):
            ml.apply_rotary_pos_emb = rope
            worst, agree, total = 0.0, 0, 0
            for p, ref in zip(prompts, reference):
                got = forward_logits(model, p["ids"])
                worst = max(worst, max_abs_diff(got, ref))
                agree += int((got.argmax(-1) == ref.argmax(-1)).sum())
                total += ref.shape[0]
            diffs[label] = {"max_abs_logit_diff_vs_reference": worst,
                            "argmax_agreement": f"{agree}/{total}"}
        result.update(diffs)
    finally:
        ml.apply_rotary_pos_emb = original_rope
        for layer, (q, k) in zip(model.model.layers, saved):
            layer.self_attn.q_proj.weight.data = q
            layer.self_attn.k_proj.weight.data = k
    return result


# ---------------------------------------------------------------- tolerances

def _q8_0_round_trip(x):
    """Quantizes the last dim to Q8_0 blocks (32 values, scale amax/127) and
    back: what an integer-dot kernel (llama.cpp's q8 activations) sees."""
    shape = x.shape
    b = x.reshape(*shape[:-1], shape[-1] // 32, 32)
    d = b.abs().amax(dim=-1, keepdim=True) / 127.0
    q = torch.where(d > 0, torch.round(b / torch.where(d > 0, d, 1.0)), 0.0)
    return (q * d).reshape(shape)


@torch.no_grad()
def q8_activation_logits(model, prompts):
    """Logits with every Linear input (incl. lm_head) Q8_0-round-tripped."""
    hooks = [m.register_forward_pre_hook(
                 lambda _m, args: (_q8_0_round_trip(args[0]),) + args[1:])
             for m in model.modules() if isinstance(m, torch.nn.Linear)]
    try:
        return [forward_logits(model, p["ids"]) for p in prompts]
    finally:
        for h in hooks:
            h.remove()


@torch.no_grad()
def observe_tolerances(model, prompts, reference):
    """How much the float32 reference moves under legitimate reorderings."""
    obs = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = [forward_logits(model, p["ids"]) for p in prompts]
    finally:
        torch.set_num_threads(threads)
    obs["f32_threads_1_vs_2"] = max(max_abs_diff(a, b)
                                    for a, b in zip(one, reference))

    model.set_attn_implementation("sdpa")
    try:
        sdpa = [forward_logits(model, p["ids"]) for p in prompts]
    finally:
        model.set_attn_implementation("eager")
    obs["f32_eager_vs_sdpa_attention"] = max(
        max_abs_diff(a, b) for a, b in zip(sdpa, reference))

    m64 = copy.deepcopy(model).double()
    with torch.no_grad():
        f64 = [m64(input_ids=torch.tensor([p["ids"]]), use_cache=False)
               .logits[0] for p in prompts]
    del m64
    obs["f32_vs_f64_compute"] = max(max_abs_diff(a, b)
                                    for a, b in zip(f64, reference))
    flips = 0
    for a, b in zip(f64, reference):
        flips += int((a.argmax(-1) != b.argmax(-1)).sum())
    obs["argmax_flips_f32_vs_f64"] = flips
    q8 = q8_activation_logits(model, prompts)
    obs["f32_vs_q8_0_activations"] = max(max_abs_diff(a, b)
                                         for a, b in zip(q8, reference))
    obs["argmax_flips_q8_0_activations"] = sum(
        int((a.argmax(-1) != b.argmax(-1)).sum()) for a, b in zip(q8, reference))
    obs["max_abs_logit"] = max(float(r.abs().max()) for r in reference)
    obs["min_top2_gap"] = min(top2_gap(row) for r in reference for row in r)
    return obs


# ---------------------------------------------------------------- greedy

@torch.no_grad()
def greedy_with_cache(model, prompt_ids, steps):
    """Argmax of raw logits for `steps` tokens, KV cache, EOS not a stop.

    Returns (new_ids, per-step [vocab] logits as one tensor).
    """
    out = model(input_ids=torch.tensor([prompt_ids]), use_cache=True)
    cache = out.past_key_values
    row = out.logits[0, -1].float()
    new_ids, rows = [], []
    for _ in range(steps):
        rows.append(row)
        nxt = argmax_first(row)
        new_ids.append(nxt)
        out = model(input_ids=torch.tensor([[nxt]]), past_key_values=cache,
                    use_cache=True)
        cache = out.past_key_values
        row = out.logits[0, -1].float()
    return new_ids, torch.stack(rows)


@torch.no_grad()
def greedy_fixture(tok, model, eos_id):
    records, worst_cache_vs_full = [], 0.0
    for messages in GREEDY_CHATS:
        text = tok.apply_chat_template(messages, tokenize=False,
                                       add_generation_prompt=True)
        ids = list(map(int, tok(text, add_special_tokens=False).input_ids))
        new_ids, rows = greedy_with_cache(model, ids, GREEDY_NEW_TOKENS)
        # Same sequence through one full forward: decode-vs-prefill ordering.
        full = forward_logits(model, ids + new_ids[:-1])[len(ids) - 1:]
        worst_cache_vs_full = max(worst_cache_vs_full, max_abs_diff(full, rows))
        eos_steps = [i for i, t in enumerate(new_ids) if t == eos_id]
        first_eos = eos_steps[0] if eos_steps else None
        # Cross-check against generate(), which stops at EOS.
        stop = GREEDY_NEW_TOKENS if first_eos is None else first_eos + 1
        gen = model.generate(torch.tensor([ids]),
                             attention_mask=torch.ones(1, len(ids),
                                                       dtype=torch.long),
                             do_sample=False, max_new_tokens=stop)
        hf_new = [int(t) for t in gen[0, len(ids):]]
        assert hf_new == new_ids[:stop], ("generate() disagrees", hf_new,
                                          new_ids[:stop])
        records.append({
            "messages": messages,
            "text": text,
            "prompt_ids": ids,
            "new_ids": new_ids,
            "new_text": tok.decode(new_ids),
            "first_eos_step": first_eos,
            "top2_gaps": [round_sig(top2_gap(r), LOGIT_DIGITS) for r in rows],
            "top1_logits": [round_sig(float(r.max()), LOGIT_DIGITS)
                            for r in rows],
        })
    return records, worst_cache_vs_full


def make(out_dir, gguf_path, log):
    import os
    gguf_dir, gguf_name = os.path.split(gguf_path)
    t0 = time.time()
    tok, model = load(gguf_dir, gguf_name)
    log(f"smollm2: loaded in {time.time() - t0:.1f}s")
    prompts = build_prompts(tok)
    probes = probe_ids(model.config.vocab_size)
    reference = [forward_logits(model, p["ids"]) for p in prompts]
    model_info = {
        "file": gguf_name,
        "sha256": sha256_file(gguf_path),
        "size_bytes": os.path.getsize(gguf_path),
        "vocab_size": model.config.vocab_size,
    }

    rope = rope_check(model, gguf_path, prompts, reference)
    log(f"smollm2: rope check {rope}")
    obs = observe_tolerances(model, prompts, reference)
    log(f"smollm2: observed {obs}")
    # Token-at-a-time decode is latency-bound; one thread avoids OpenMP
    # barrier stalls on a shared machine (threads 1 vs 2 differ by 0 here).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        greedy, cache_vs_full = greedy_fixture(tok, model, tok.eos_token_id)
    finally:
        torch.set_num_threads(threads)
    obs["f32_kv_cache_decode_vs_full_forward"] = cache_vs_full
    log(f"smollm2: greedy done, cache-vs-full {cache_vs_full:.3g}")

    entries = []
    for p, ref in zip(prompts, reference):
        e = dict(p)
        e["positions"] = [position_record(row, probes) for row in ref]
        entries.append(e)
    common = {
        "format_version": 1,
        "generator": "tests/reference/make_model_fixtures.py",
        "versions": library_versions(),
        "model": model_info,
        "logit_significant_digits": LOGIT_DIGITS,
    }
    sizes = {}
    sizes["smollm2_logits.json"] = write_json(
        os.path.join(out_dir, "smollm2_logits.json"),
        {**common, "add_bos": False, "top_k": TOP_K, "probe_ids": probes,
         "observed_max_abs_diffs": obs, "rope_check": rope,
         "prompts": entries})
    sizes["smollm2_greedy.json"] = write_json(
        os.path.join(out_dir, "smollm2_greedy.json"),
        {**common, "new_tokens": GREEDY_NEW_TOKENS, "eos_id": tok.eos_token_id,
         "eos_is_stop": False, "observed_max_abs_diffs": obs,
         "prompts": greedy})
    return sizes
