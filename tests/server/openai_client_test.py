#!/usr/bin/env python3
"""The official `openai` Python client against the real `alignserve serve`.

Proves issue 4's first Proof item: the client from PyPI drives completions and
chat, streaming and not, n > 1, logprobs, stop strings and seed, and every
response parses with the client's own types. The client runs with
_strict_response_validation=True, so each body is validated against the
SDK's pydantic types (required fields, literal values, field types) instead
of being constructed leniently. The one exception is streamed legacy
completions: the SDK reuses its non-stream Completion type for those chunks,
whose finish_reason is a non-null Literal, while OpenAI's own API (and vLLM)
send "finish_reason": null in every chunk but the last; those chunks are read
with a default-validation client and checked by validating each chunk with
only that null filled in (see CheckCompletionChunk).

Oracles: greedy decoding of "The capital of France is" names Paris; a stream
must concatenate to exactly the non-stream text of the same request (greedy
or seeded); the same seed reproduces the same choices; greedy logprobs must
be the maximum of their own top list; token counts come from the server's
/tokenize and the max_model_len it announces.

Usage: openai_client_test.py [PATH_TO_ALIGNSERVE]   (or env ALIGNSERVE_BINARY)
Runs `alignserve serve --port 0 --max-model-len 128` on the default model,
then stops it with SIGTERM and requires exit code 0. Exits nonzero on any
failure. Needs the venv from scripts/setup_test_python.sh.
"""

import json
import math
import os
import sys
import time
import unittest
import urllib.request

import openai
from openai.types import Completion, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from serve_process import ServeProcess, finish_run

MAX_MODEL_LEN = 128  # small, so a max_tokens past the context is cheap to run
PARIS_PROMPT = "The capital of France is"
CHAT_MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
# An open prompt, so sampled choices at temperature 1 spread out.
STORY_PROMPT = "My favourite thing to do on a Saturday is"
IGNORE_EOS = {"ignore_eos": True}  # vLLM's extension: exact token counts


SERVER = None
STRICT = None  # client that validates every response against the SDK types
LENIENT = None  # default validation: for legacy completion streams only


def Tokenize(**body):
    """The server's /tokenize (vLLM's shape): the number of prompt tokens."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{SERVER.port}/tokenize",
        data=json.dumps({"model": SERVER.model, **body}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)["count"]


def CheckCompletionChunk(test, chunk):
    """Validates a streamed legacy completion chunk with the SDK's Completion
    type, null finish_reasons aside (see the module docstring)."""
    test.assertIsInstance(chunk, Completion)
    data = chunk.to_dict()
    for choice in data["choices"]:
        test.assertIn("finish_reason", choice)  # present, null until the end
        if choice["finish_reason"] is None:
            choice["finish_reason"] = "length"
    Completion.model_validate(data)  # raises on any other mismatch


def JoinCompletionStream(test, stream, n=1):
    """texts per index, finish_reason per index, usage (None if not sent)."""
    texts, finish, usage, ids = [""] * n, [None] * n, None, set()
    for chunk in stream:
        CheckCompletionChunk(test, chunk)
        test.assertEqual(chunk.object, "text_completion")
        test.assertEqual(chunk.model, SERVER.model)
        ids.add(chunk.id)
        if chunk.usage is not None:
            test.assertIsNone(usage, "usage sent twice")
            test.assertEqual(chunk.choices, [], "the usage chunk has no choices")
            usage = chunk.usage
        for c in chunk.choices:
            test.assertIsNone(finish[c.index], f"choice {c.index} continued after finishing")
            texts[c.index] += c.text
            finish[c.index] = c.finish_reason
    test.assertEqual(len(ids), 1, f"one id per stream, got {ids}")
    return texts, finish, usage


def JoinChatStream(test, stream, n=1):
    texts, finish, usage, roles = [""] * n, [None] * n, None, [None] * n
    for chunk in stream:
        test.assertIsInstance(chunk, ChatCompletionChunk)
        test.assertEqual(chunk.object, "chat.completion.chunk")
        if chunk.usage is not None:
            test.assertIsNone(usage, "usage sent twice")
            usage = chunk.usage
        for c in chunk.choices:
            test.assertIsNone(finish[c.index], f"choice {c.index} continued after finishing")
            if c.delta.role is not None:
                roles[c.index] = c.delta.role
            texts[c.index] += c.delta.content or ""
            finish[c.index] = c.finish_reason
    test.assertEqual(roles, ["assistant"] * n, "each choice's first delta names the role")
    return texts, finish, usage


class ModelsTest(unittest.TestCase):
    def test_models_list_names_the_served_model(self):
        models = list(STRICT.models.list())
        self.assertEqual([m.id for m in models], [SERVER.model])
        self.assertIsInstance(models[0], Model)
        self.assertEqual(models[0].object, "model")


class CompletionsTest(unittest.TestCase):
    def test_greedy_completion_names_paris_and_counts_tokens(self):
        r = STRICT.completions.create(model=SERVER.model, prompt=PARIS_PROMPT, max_tokens=8,
                                      temperature=0, extra_body=IGNORE_EOS)
        self.assertIsInstance(r, Completion)
        self.assertEqual(r.object, "text_completion")
        self.assertEqual(r.model, SERVER.model)
        self.assertTrue(r.id)
        self.assertLessEqual(abs(r.created - time.time()), 60)
        self.assertEqual(len(r.choices), 1)
        c = r.choices[0]
        self.assertEqual(c.index, 0)
        self.assertIn("Paris", c.text)
        self.assertEqual(c.finish_reason, "length")
        self.assertIsNone(c.logprobs)
        self.assertEqual(r.usage.prompt_tokens, Tokenize(prompt=PARIS_PROMPT))
        self.assertEqual(r.usage.completion_tokens, 8)
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + 8)

    def test_eos_finishes_with_stop_within_max_tokens(self):
        # Without ignore_eos a short greedy answer may end early; either way
        # the reason and the count must agree.
        r = STRICT.completions.create(model=SERVER.model, prompt=PARIS_PROMPT, max_tokens=24,
                                      temperature=0)
        c = r.choices[0]
        self.assertIn(c.finish_reason, ("stop", "length"))
        if c.finish_reason == "length":
            self.assertEqual(r.usage.completion_tokens, 24)
        else:
            self.assertLess(r.usage.completion_tokens, 24)

    def test_stream_concatenates_to_the_non_stream_text(self):
        args = dict(model=SERVER.model, prompt=PARIS_PROMPT, max_tokens=10, temperature=0,
                    extra_body=IGNORE_EOS)
        full = STRICT.completions.create(**args)
        stream = LENIENT.completions.create(stream=True, stream_options={"include_usage": True},
                                            **args)
        texts, finish, usage = JoinCompletionStream(self, stream)
        self.assertEqual(texts[0], full.choices[0].text)
        self.assertEqual(finish, [full.choices[0].finish_reason])
        self.assertIsNotNone(usage, "include_usage asks for a usage chunk")
        self.assertEqual(usage.model_dump(), full.usage.model_dump())

    def test_stream_without_include_usage_sends_no_usage(self):
        stream = LENIENT.completions.create(model=SERVER.model, prompt=PARIS_PROMPT, max_tokens=4,
                                            temperature=0, stream=True)
        texts, finish, usage = JoinCompletionStream(self, stream)
        self.assertIsNone(usage)
        self.assertTrue(texts[0])
        self.assertIn(finish[0], ("stop", "length"))

    def test_n3_with_seed_is_reproducible_and_the_seed_matters(self):
        def Run(seed):
            r = STRICT.completions.create(model=SERVER.model, prompt=STORY_PROMPT, max_tokens=12,
                                          temperature=1.0, n=3, seed=seed, extra_body=IGNORE_EOS)
            self.assertEqual(sorted(c.index for c in r.choices), [0, 1, 2])
            for c in r.choices:
                self.assertEqual(c.finish_reason, "length")
            self.assertEqual(r.usage.completion_tokens, 3 * 12)
            self.assertEqual(r.usage.prompt_tokens, Tokenize(prompt=STORY_PROMPT))
            return [c.text for c in sorted(r.choices, key=lambda c: c.index)]

        first = Run(1234)
        self.assertEqual(Run(1234), first, "the same seed reproduces every choice")
        self.assertGreater(len(set(first)), 1, "the n choices of one seeded request differ")
        other = Run(98765)
        self.assertNotEqual(other, first, "a different seed changes at least one choice")

        # A seeded stream of n = 3 carries the same three texts, by index.
        stream = LENIENT.completions.create(model=SERVER.model, prompt=STORY_PROMPT,
                                            max_tokens=12, temperature=1.0, n=3, seed=1234,
                                            stream=True, extra_body=IGNORE_EOS)
        texts, finish, _ = JoinCompletionStream(self, stream, n=3)
        self.assertEqual(texts, first)
        self.assertEqual(finish, ["length"] * 3)

    def test_logprobs_2_agree_with_greedy_choice(self):
        r = STRICT.completions.create(model=SERVER.model, prompt=PARIS_PROMPT, max_tokens=6,
                                      temperature=0, logprobs=2, extra_body=IGNORE_EOS)
        c = r.choices[0]
        lp = c.logprobs
        self.assertIsNotNone(lp)
        n = r.usage.completion_tokens
        self.assertEqual(n, 6)
        self.assertEqual(len(lp.tokens), n)
        self.assertEqual(len(lp.token_logprobs), n)
        self.assertEqual(len(lp.top_logprobs), n)
        self.assertEqual(len(lp.text_offset), n)
        self.assertEqual("".join(lp.tokens), c.text)
        self.assertEqual(lp.text_offset, sorted(lp.text_offset))
        for tok, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
            self.assertTrue(math.isfinite(logprob) and logprob <= 0, logprob)
            # 2 alternatives; vLLM adds the sampled token when it is not among
            # them, which greedy decoding never needs.
            self.assertEqual(len(top), 2, top)
            self.assertIn(tok, top)
            self.assertAlmostEqual(logprob, max(top.values()), places=4)
            self.assertAlmostEqual(top[tok], logprob, places=4)

        # Streamed, the same tokens and logprobs arrive chunk by chunk.
        stream = LENIENT.completions.create(model=SERVER.model, prompt=PARIS_PROMPT,
                                            max_tokens=6, temperature=0, logprobs=2, stream=True,
                                            extra_body=IGNORE_EOS)
        tokens, logprobs = [], []
        for chunk in stream:
            CheckCompletionChunk(self, chunk)
            for ch in chunk.choices:
                if ch.logprobs is not None:
                    tokens += ch.logprobs.tokens
                    logprobs += ch.logprobs.token_logprobs
        self.assertEqual(tokens, lp.tokens)
        for a, b in zip(logprobs, lp.token_logprobs):
            self.assertAlmostEqual(a, b, places=4)
        self.assertEqual(len(logprobs), n)

    def test_stop_string_is_cut_and_finishes_with_stop(self):
        args = dict(model=SERVER.model, prompt=PARIS_PROMPT, max_tokens=30, temperature=0,
                    stop=["."])
        r = STRICT.completions.create(**args)
        c = r.choices[0]
        self.assertIn("Paris", c.text)
        self.assertNotIn(".", c.text)
        self.assertEqual(c.finish_reason, "stop")
        self.assertLess(r.usage.completion_tokens, 30)
        texts, finish, _ = JoinCompletionStream(
            self, LENIENT.completions.create(stream=True, **args))
        self.assertEqual(texts, [c.text])
        self.assertEqual(finish, ["stop"])

    def test_max_tokens_past_the_context_is_clamped(self):
        r = STRICT.completions.create(model=SERVER.model, prompt="Hello", max_tokens=100000,
                                      temperature=0, extra_body=IGNORE_EOS)
        self.assertEqual(r.choices[0].finish_reason, "length")
        self.assertEqual(r.usage.prompt_tokens + r.usage.completion_tokens, SERVER.max_model_len)

    def test_unknown_model_is_not_found(self):
        with self.assertRaises(openai.NotFoundError) as cm:
            STRICT.completions.create(model="no-such-model", prompt="x", max_tokens=1)
        self.assertEqual(cm.exception.status_code, 404)
        self.assertIn("no-such-model", cm.exception.message)
        self.assertIsInstance(cm.exception.body, dict)
        self.assertEqual(cm.exception.body.get("param"), "model")
        with self.assertRaises(openai.NotFoundError):
            STRICT.chat.completions.create(model="no-such-model", messages=CHAT_MESSAGES,
                                           max_tokens=1)
        # The server still serves a valid request right after.
        ok = STRICT.completions.create(model=SERVER.model, prompt="x", max_tokens=1)
        self.assertEqual(len(ok.choices), 1)

    def test_negative_temperature_is_bad_request(self):
        with self.assertRaises(openai.BadRequestError) as cm:
            STRICT.completions.create(model=SERVER.model, prompt="x", max_tokens=1,
                                      temperature=-1)
        self.assertEqual(cm.exception.status_code, 400)
        self.assertIsInstance(cm.exception.body, dict)
        self.assertEqual(cm.exception.body.get("param"), "temperature")
        with self.assertRaises(openai.BadRequestError):
            STRICT.chat.completions.create(model=SERVER.model, messages=CHAT_MESSAGES,
                                           max_tokens=1, temperature=-1)
        ok = STRICT.completions.create(model=SERVER.model, prompt="x", max_tokens=1)
        self.assertEqual(len(ok.choices), 1)


class ChatTest(unittest.TestCase):
    def test_greedy_chat_answers_and_counts_tokens(self):
        r = STRICT.chat.completions.create(model=SERVER.model, messages=CHAT_MESSAGES,
                                           max_tokens=12, temperature=0)
        self.assertIsInstance(r, ChatCompletion)
        self.assertEqual(r.object, "chat.completion")
        self.assertEqual(r.model, SERVER.model)
        self.assertEqual(len(r.choices), 1)
        c = r.choices[0]
        self.assertEqual(c.index, 0)
        self.assertEqual(c.message.role, "assistant")
        self.assertTrue(c.message.content)
        self.assertIn(c.finish_reason, ("stop", "length"))
        self.assertEqual(r.usage.prompt_tokens, Tokenize(messages=CHAT_MESSAGES))
        if c.finish_reason == "length":
            self.assertEqual(r.usage.completion_tokens, 12)
        self.assertEqual(r.usage.total_tokens,
                         r.usage.prompt_tokens + r.usage.completion_tokens)

    def test_max_completion_tokens_limits_the_answer(self):
        r = STRICT.chat.completions.create(model=SERVER.model, messages=CHAT_MESSAGES,
                                           max_completion_tokens=3, temperature=0,
                                           extra_body=IGNORE_EOS)
        self.assertEqual(r.usage.completion_tokens, 3)
        self.assertEqual(r.choices[0].finish_reason, "length")

    def test_stream_concatenates_to_the_non_stream_text(self):
        args = dict(model=SERVER.model, messages=CHAT_MESSAGES, max_tokens=12, temperature=0)
        full = STRICT.chat.completions.create(**args)
        stream = STRICT.chat.completions.create(
            stream=True, stream_options={"include_usage": True}, **args)
        texts, finish, usage = JoinChatStream(self, stream)
        self.assertEqual(texts, [full.choices[0].message.content])
        self.assertEqual(finish, [full.choices[0].finish_reason])
        self.assertIsNotNone(usage)
        self.assertEqual(usage.model_dump(), full.usage.model_dump())

    def test_n3_seeded_stream_matches_non_stream(self):
        args = dict(model=SERVER.model, messages=[{"role": "user", "content": "Tell me a story."}],
                    max_tokens=10, temperature=1.0, n=3, seed=7, extra_body=IGNORE_EOS)
        full = STRICT.chat.completions.create(**args)
        self.assertEqual(sorted(c.index for c in full.choices), [0, 1, 2])
        by_index = [c.message.content for c in sorted(full.choices, key=lambda c: c.index)]
        texts, finish, _ = JoinChatStream(self, STRICT.chat.completions.create(stream=True, **args),
                                          n=3)
        self.assertEqual(texts, by_index)
        self.assertEqual(finish, ["length"] * 3)

    def test_logprobs_with_top_2_agree_with_greedy_choice(self):
        r = STRICT.chat.completions.create(model=SERVER.model, messages=CHAT_MESSAGES,
                                           max_tokens=6, temperature=0, logprobs=True,
                                           top_logprobs=2, extra_body=IGNORE_EOS)
        c = r.choices[0]
        self.assertIsNotNone(c.logprobs)
        content = c.logprobs.content
        self.assertEqual(len(content), r.usage.completion_tokens)
        self.assertEqual("".join(t.token for t in content), c.message.content)
        for t in content:
            self.assertTrue(math.isfinite(t.logprob) and t.logprob <= 0, t.logprob)
            self.assertEqual(len(t.top_logprobs), 2)
            self.assertAlmostEqual(t.logprob, max(a.logprob for a in t.top_logprobs), places=4)
            self.assertEqual(t.top_logprobs[0].token, t.token)
            if t.bytes is not None:
                self.assertEqual(bytes(t.bytes).decode("utf-8", "replace"), t.token)

    def test_stop_string_is_cut_and_finishes_with_stop(self):
        args = dict(model=SERVER.model, messages=CHAT_MESSAGES, max_tokens=30, temperature=0,
                    stop=["."])
        r = STRICT.chat.completions.create(**args)
        c = r.choices[0]
        self.assertNotIn(".", c.message.content)
        self.assertEqual(c.finish_reason, "stop")
        texts, finish, _ = JoinChatStream(self, STRICT.chat.completions.create(stream=True, **args))
        self.assertEqual(texts, [c.message.content])
        self.assertEqual(finish, ["stop"])


class AlignmentTest(unittest.TestCase):
    """The `alignment` extension object, sent as the openai client sends
    extras (extra_body), and read back from the response's extra fields."""

    def test_best_of_n_reports_rewards_and_the_argmax_choice(self):
        alignment = {"policy": "best_of_n", "params": {"n": 3}, "reward_model": "judge"}
        r = STRICT.chat.completions.create(model=SERVER.model, messages=CHAT_MESSAGES,
                                           max_tokens=6, temperature=0.8, seed=3,
                                           extra_body={"alignment": alignment})
        self.assertEqual(len(r.choices), 1)
        self.assertTrue(r.choices[0].message.content)
        extension = r.model_extra.get("alignment")
        self.assertIsInstance(extension, dict)
        self.assertEqual(extension["policy"], "best_of_n")
        report = extension["report"]
        rewards = [report["reward_%d" % i] for i in range(3)]
        self.assertTrue(all(isinstance(x, float) and math.isfinite(x) for x in rewards), rewards)
        self.assertEqual(report["chosen_index"], rewards.index(max(rewards)))
        self.assertEqual(report["num_scored"], 3)

    def test_unknown_policy_is_bad_request_naming_alignment(self):
        with self.assertRaises(openai.BadRequestError) as cm:
            STRICT.completions.create(model=SERVER.model, prompt="x", max_tokens=1,
                                      extra_body={"alignment": {"policy": "no_such_policy"}})
        self.assertEqual(cm.exception.body.get("param"), "alignment")
        self.assertIn("no_such_policy", cm.exception.message)
        ok = STRICT.completions.create(model=SERVER.model, prompt="x", max_tokens=1)
        self.assertEqual(len(ok.choices), 1)


def main():
    global SERVER, STRICT, LENIENT
    binary = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("ALIGNSERVE_BINARY")
    if not binary or not os.access(binary, os.X_OK):
        print(f"openai_client_test: no alignserve binary (argv[1] or ALIGNSERVE_BINARY): {binary!r}")
        return 2
    print(f"openai_client_test: openai {openai.__version__}, server {binary}", flush=True)
    t0 = time.monotonic()
    SERVER = ServeProcess(binary, ["--max-model-len", str(MAX_MODEL_LEN)])
    if not SERVER.wait_ready():
        print("openai_client_test: FAIL: the server did not become ready\n" + SERVER.log_tail())
        SERVER.stop()
        return 1
    print(f"openai_client_test: ready on port {SERVER.port} in {time.monotonic() - t0:.1f} s, "
          f"model {SERVER.model!r}, max_model_len {SERVER.max_model_len}", flush=True)
    base_url = f"http://127.0.0.1:{SERVER.port}/v1"
    # No retries: a retried 5xx or dropped connection would hide a server bug.
    STRICT = openai.OpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=60,
                           _strict_response_validation=True)
    LENIENT = openai.OpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=60)

    suite = unittest.TestSuite()
    for case in (ModelsTest, CompletionsTest, ChatTest):
        suite.addTests(unittest.defaultTestLoader.loadTestsFromTestCase(case))
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)

    return finish_run("openai_client_test", result, SERVER, t0)


if __name__ == "__main__":
    sys.exit(main())
