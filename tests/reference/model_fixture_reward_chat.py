"""A tiny reward model with its text side: a `LlamaForSequenceClassification`
checkpoint plus tokenizer.json, tokenizer_config.json (special tokens and a
Llama-3-style chat template), and the float32 scores transformers gives a
few fixed [user, assistant] conversations.

This is the `score_head` reward model's end-to-end oracle: the chat text
comes from `tokenizer.apply_chat_template(tokenize=False,
add_generation_prompt=False)`, the ids from the same call with
`tokenize=True`, and the score from the checkpoint reloaded from disk with
`from_pretrained(dtype=torch.float32)`.

The tokenizer is tests/data/tokenizer/llama3_tokenizer.json (3,000 byte-level
BPE tokens and 4 added ones: <|begin_of_text|> 3000, <|end_of_text|> 3001,
<|eot_id|> 3002, and the non-special <tool_call> 3003). It has no
<|start_header_id|>, so the template writes plain-text role headers.
"""

import copy
import json
import os
import shutil

import torch

from model_fixture_common import (f32_exact, library_versions, max_abs_diff,
                                  sha256_file, write_json)
from model_fixture_reward import SCORE_INIT
from model_fixture_tiny import DEFAULT_INIT, init_weights

NAME = "tiny_reward_chat"
SEED = 6001
TOKENIZER_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              "..", "data", "tokenizer", "llama3_tokenizer.json")

# Llama 3's template with its header tokens spelled as text: a BOS before
# the first turn, each turn's content trimmed and ended by <|eot_id|>.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% set content = message['role'] + ':\\n' + message['content'] | trim"
    " + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant:\\n' }}{% endif %}")

TOKENIZER_CONFIG = {
    "tokenizer_class": "PreTrainedTokenizerFast",
    "bos_token": "<|begin_of_text|>",
    "eos_token": "<|eot_id|>",
    "pad_token": "<|end_of_text|>",
    "add_bos_token": False,
    "model_max_length": 512,
    "clean_up_tokenization_spaces": False,
    "chat_template": CHAT_TEMPLATE,
}

# (name, prompt, response). Chosen to reach the template's trim, special
# tokens written as text in a message, a non-special added token, an empty
# response, and multi-byte text.
CONVERSATIONS = [
    ("plain", "What is the capital of France?",
     "The capital of France is Paris."),
    ("unicode", "Traduis « bonjour » en japonais, s'il te plaît.",
     "こんにちは (konnichiwa) — 👋 héllo, naïve café."),
    ("empty_response", "Say nothing at all.", ""),
    ("eot_in_response", "How does a Llama 3 turn end?",
     "With <|eot_id|>, then the next header."),
    ("whitespace", "  Leading and trailing spaces\t\n",
     "\n  Line one\nLine two\n\n"),
    ("code_and_added_token", "Use <tool_call> to add two numbers in Python.",
     "def add(a, b):\n    return a + b  # <tool_call> not needed"),
]


def _config():
    from transformers import LlamaConfig
    return LlamaConfig(
        hidden_size=64, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        vocab_size=3004, rms_norm_eps=1e-5, rope_theta=500000.0,
        max_position_embeddings=512, tie_word_embeddings=False,
        num_labels=1, bos_token_id=3000, eos_token_id=3002, pad_token_id=3001)


def write_checkpoint(ckpt):
    from transformers import LlamaForSequenceClassification
    shutil.rmtree(ckpt, ignore_errors=True)
    torch.manual_seed(SEED)
    model = LlamaForSequenceClassification(_config()).eval()
    init = {**DEFAULT_INIT, "score": SCORE_INIT}
    init_weights(model, SEED, init)
    saved = model.to(torch.bfloat16)
    saved.save_pretrained(ckpt)
    shutil.copyfile(TOKENIZER_JSON, os.path.join(ckpt, "tokenizer.json"))
    with open(os.path.join(ckpt, "tokenizer_config.json"), "w",
              encoding="utf-8") as f:
        json.dump(TOKENIZER_CONFIG, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return saved, init


def messages(prompt, response):
    return [{"role": "user", "content": prompt},
            {"role": "assistant", "content": response}]


@torch.no_grad()
def pooled(model, ids):
    return model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]


@torch.no_grad()
def last_row(model, ids):
    hidden = model.model(input_ids=torch.tensor([ids]),
                         use_cache=False).last_hidden_state
    return model.score(hidden)[0, -1].float()


@torch.no_grad()
def observe(model, all_ids, scores):
    obs = {}
    model.set_attn_implementation("sdpa")
    try:
        obs["f32_eager_vs_sdpa_attention"] = max(
            max_abs_diff(pooled(model, ids), s) for ids, s in zip(all_ids, scores))
    finally:
        model.set_attn_implementation("eager")
    m64 = copy.deepcopy(model).double()
    obs["f32_vs_f64_compute"] = max(max_abs_diff(pooled(m64, ids), s)
                                    for ids, s in zip(all_ids, scores))
    obs["max_abs_score"] = max(float(s.abs().max()) for s in scores)
    return obs


def tokenize_conversations(tokenizer, pad_id):
    cases = []
    for name, prompt, response in CONVERSATIONS:
        chat = messages(prompt, response)
        text = tokenizer.apply_chat_template(chat, tokenize=False,
                                             add_generation_prompt=False)
        enc = tokenizer.apply_chat_template(chat, tokenize=True,
                                            add_generation_prompt=False)
        ids = list(enc["input_ids"] if hasattr(enc, "keys") else enc)
        # The ids are the rendered text tokenized with special tokens parsed
        # and nothing added; the pooled row is the last position's.
        assert ids == tokenizer(text, add_special_tokens=False)["input_ids"]
        assert ids[0] == tokenizer.bos_token_id and ids[-1] != pad_id, name
        cases.append({"name": name, "prompt": prompt, "response": response,
                      "text": text, "ids": ids})
    return cases


def check_cases(cases, tokenizer):
    by_name = {c["name"]: c for c in cases}
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    tool = tokenizer.convert_tokens_to_ids("<tool_call>")
    # The response's "<|eot_id|>" text is the special token, not its bytes.
    assert by_name["eot_in_response"]["ids"].count(eot) == 3
    assert by_name["code_and_added_token"]["ids"].count(tool) == 2
    assert by_name["empty_response"]["text"].endswith("assistant:\n<|eot_id|>")
    assert by_name["whitespace"]["text"] == (
        "<|begin_of_text|>user:\nLeading and trailing spaces<|eot_id|>"
        "assistant:\nLine one\nLine two<|eot_id|>")


def make(out_dir, log):
    from transformers import AutoTokenizer, LlamaForSequenceClassification
    ckpt = os.path.join(out_dir, NAME)
    saved, init = write_checkpoint(ckpt)
    model = LlamaForSequenceClassification.from_pretrained(
        ckpt, dtype=torch.float32, attn_implementation="eager").eval()
    mem = dict(saved.named_parameters())
    for pname, p in model.named_parameters():
        assert torch.equal(p, mem[pname].float()), pname
    cfg = model.config
    tokenizer = AutoTokenizer.from_pretrained(ckpt)
    assert len(tokenizer) == cfg.vocab_size, (len(tokenizer), cfg.vocab_size)
    assert tokenizer.pad_token_id == cfg.pad_token_id

    cases = tokenize_conversations(tokenizer, cfg.pad_token_id)
    check_cases(cases, tokenizer)
    scores = [pooled(model, c["ids"]) for c in cases]
    for c, s in zip(cases, scores):
        assert torch.equal(s, last_row(model, c["ids"])), c["name"]
        c["score"] = [f32_exact(v) for v in s.tolist()]
    obs = observe(model, [c["ids"] for c in cases], scores)
    log(f"{NAME}: observed {obs}")

    files = sorted(os.listdir(ckpt))
    fixture = {
        "format_version": 1,
        "generator": "tests/reference/make_model_fixtures.py --only reward_chat",
        "versions": library_versions(),
        "name": NAME,
        "checkpoint_dir": NAME,
        "architecture": cfg.architectures[0],
        "weights_dtype": "bfloat16",
        "compute_dtype": "float32",
        "files": {f: sha256_file(os.path.join(ckpt, f)) for f in files},
        "vocab_size": cfg.vocab_size,
        "num_labels": cfg.num_labels,
        "pad_token_id": cfg.pad_token_id,
        "bos_token": TOKENIZER_CONFIG["bos_token"],
        "eos_token": TOKENIZER_CONFIG["eos_token"],
        "chat_template": CHAT_TEMPLATE,
        "init_std": init,
        "observed_max_abs_diffs": obs,
        "conversations": cases,
    }
    size = write_json(os.path.join(out_dir, f"{NAME}_scores.json"), fixture)
    return {f"{NAME}_scores.json": size,
            **{f"{NAME}/{f}": os.path.getsize(os.path.join(ckpt, f))
               for f in files}}
