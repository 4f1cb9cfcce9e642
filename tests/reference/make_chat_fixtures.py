#!/usr/bin/env python3
"""Renders the chat templates in tests/data/chat/templates/ the way Hugging Face
transformers' apply_chat_template does, over a fixed set of conversations, and
writes the expected strings (or expected errors) to
tests/data/chat/chat_template_cases.json for tests/models/chat/chat_template_test.cc.

It calls transformers' own render helper (render_jinja_template, which compiles
the template with transformers' ImmutableSandboxedEnvironment: trim_blocks,
lstrip_blocks, loopcontrols, raise_exception, strftime_now, its tojson) and
passes bos_token / eos_token as the tokenizer's special_tokens_map would.

Also refreshes tests/data/chat/templates/smollm2.jinja from the default model's
GGUF metadata (tokenizer.chat_template).

Run with the oracle environment:
  /root/.cache/alignserve/refvenv/bin/python tests/reference/make_chat_fixtures.py
"""

import copy
import json
import os
import sys

import jinja2
from transformers.utils.chat_template_utils import render_jinja_template

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEMPLATE_DIR = os.path.join(ROOT, "tests", "data", "chat", "templates")
OUT = os.path.join(ROOT, "tests", "data", "chat", "chat_template_cases.json")
GGUF = os.path.expanduser("~/.cache/alignserve/models/SmolLM2-135M-Instruct.Q4_1.gguf")

# Special tokens as each model's tokenizer_config.json declares them; None
# means the tokenizer has no such token (the template sees it undefined).
TEMPLATES = {
    "smollm2": {"bos": "<|im_start|>", "eos": "<|im_end|>"},
    "llama3_instruct": {"bos": "<|begin_of_text|>", "eos": "<|eot_id|>"},
    "llama3_2_instruct": {"bos": "<|begin_of_text|>", "eos": "<|eot_id|>",
                          # Otherwise the template prints today's date.
                          "context": {"date_string": "02 Jan 2025"}},
    "llama3_3_instruct": {"bos": "<|begin_of_text|>", "eos": "<|eot_id|>"},
    "qwen2_5_instruct": {"bos": None, "eos": "<|im_end|>"},
    "mistral_nemo": {"bos": "<s>", "eos": "</s>"},
    "deepseek_r1_distill_qwen": {"bos": "<｜begin▁of▁sentence｜>", "eos": "<｜end▁of▁sentence｜>"},
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}

USER = {"role": "user", "content": "Hello! How are you?"}
SYSTEM = {"role": "system", "content": "You are a terse assistant."}
ASSISTANT = {"role": "assistant", "content": "I am fine, thanks."}
FOLLOW_UP = {"role": "user", "content": "What is 2 + 2?"}

# (name, messages, add_generation_prompt, extra_context)
CONVERSATIONS = [
    ("single_user", [USER], True, {}),
    ("system_user", [SYSTEM, USER], True, {}),
    ("multi_turn", [SYSTEM, USER, ASSISTANT, FOLLOW_UP], True, {}),
    ("multi_turn_no_system", [USER, ASSISTANT, FOLLOW_UP], True, {}),
    ("assistant_last_no_prompt", [USER, ASSISTANT], False, {}),
    ("single_user_no_prompt", [USER], False, {}),
    ("content_as_text_parts",
     [{"role": "user", "content": [{"type": "text", "text": "Describe "},
                                   {"type": "text", "text": "this."}]}], True, {}),
    ("unicode_content",
     [{"role": "system", "content": "Réponds en français ✓"},
      {"role": "user", "content": "héllo wörld — 你好 🌍 \"quoted\" back\\slash\ttab"},
      {"role": "assistant", "content": "Ça va? 日本語 👍"},
      {"role": "user", "content": "Ünïcödé again"}], True, {}),
    ("empty_content",
     [{"role": "user", "content": ""}, {"role": "assistant", "content": ""},
      {"role": "user", "content": ""}], True, {}),
    ("surrounding_whitespace",
     [{"role": "system", "content": "  sys with spaces \n"},
      {"role": "user", "content": "\n\n  padded question  \n"}], True, {}),
    ("two_users_in_a_row", [USER, FOLLOW_UP], True, {}),
    ("starts_with_assistant", [ASSISTANT, USER], True, {}),
    ("no_messages", [], True, {}),
    ("reasoning_in_history",
     [USER, {"role": "assistant", "content": "<think>\nadd them\n</think>\n\nIt is 4."},
      FOLLOW_UP], True, {}),
    ("reasoning_content_field",
     [USER, {"role": "assistant", "content": "It is 4.", "reasoning_content": "add them"},
      FOLLOW_UP], True, {}),
    ("extra_message_keys",
     [{"role": "user", "content": "Hi", "name": "alice", "metadata": {"id": 7}}], True, {}),
    ("with_tools", [SYSTEM, {"role": "user", "content": "Weather in Paris?"}], True,
     {"tools": [WEATHER_TOOL]}),
    ("tool_call_round_trip",
     [{"role": "user", "content": "Weather in Paris?"},
      {"role": "assistant", "content": "",
       "tool_calls": [{"id": "call12345", "type": "function",
                       "function": {"name": "get_weather",
                                    "arguments": {"city": "Paris", "unit": "celsius"}}}]},
      {"role": "tool", "tool_call_id": "call12345", "name": "get_weather",
       "content": "{\"temperature\": 21, \"sky\": \"clear\"}"}], True,
     {"tools": [WEATHER_TOOL]}),
    ("custom_context_variable", [SYSTEM, USER], True,
     {"date_string": "15 Mar 2025", "enable_thinking": False}),
]


def smollm2_template_from_gguf():
    from gguf import GGUFReader
    reader = GGUFReader(GGUF)
    field = reader.fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def render(source, messages, add_generation_prompt, context, bos, eos):
    kwargs = dict(context)
    tools = kwargs.pop("tools", None)
    if bos is not None:
        kwargs.setdefault("bos_token", bos)
    if eos is not None:
        kwargs.setdefault("eos_token", eos)
    try:
        rendered, _ = render_jinja_template(
            conversations=[copy.deepcopy(messages)], tools=tools, chat_template=source,
            add_generation_prompt=add_generation_prompt, **kwargs)
        return {"expected": rendered[0]}
    except jinja2.exceptions.TemplateError as e:
        # raise_exception() raises the base TemplateError itself; subclasses
        # (UndefinedError, SecurityError...) are the template failing.
        kind = "raise_exception" if type(e) is jinja2.exceptions.TemplateError else type(e).__name__
        return {"error": {"kind": kind, "message": str(e)}}
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
        return {"error": {"kind": type(e).__name__, "message": str(e)}}


def main():
    if os.path.exists(GGUF):
        with open(os.path.join(TEMPLATE_DIR, "smollm2.jinja"), "w", encoding="utf-8") as f:
            f.write(smollm2_template_from_gguf())
    cases = []
    for name, spec in TEMPLATES.items():
        with open(os.path.join(TEMPLATE_DIR, name + ".jinja"), encoding="utf-8") as f:
            source = f.read()
        for conv_name, messages, agp, extra in CONVERSATIONS:
            context = dict(spec.get("context", {}))
            context.update(extra)
            case = {
                "template": name,
                "name": conv_name,
                "messages": messages,
                "add_generation_prompt": agp,
                "bos_token": spec["bos"] or "",
                "eos_token": spec["eos"] or "",
                "extra_context": context,
            }
            case.update(render(source, messages, agp, context, spec["bos"], spec["eos"]))
            cases.append(case)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump({"generator": "tests/reference/make_chat_fixtures.py",
                   "jinja2": jinja2.__version__, "cases": cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    errors = sum(1 for c in cases if "error" in c)
    print(f"wrote {len(cases)} cases ({errors} expected errors) to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
