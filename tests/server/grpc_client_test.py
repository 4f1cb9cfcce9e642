#!/usr/bin/env python3
"""A gRPC client from PyPI (grpcio) against the real `alignserve serve`.

Proves issue 4's gRPC Proof item with a client that shares no code with the
server: the stubs are generated at test time from proto/alignserve/v1/
alignserve.proto by grpcio-tools' own protoc into a temporary folder; health
is read with grpcio-health-checking's stubs and the service list with
grpcio-reflection's client.

Oracles: greedy Generate of "The capital of France is" streams the same text
and token count as the HTTP API's /v1/completions for the same request (read
with urllib); token ids in give the same tokens as the text they tokenize
to; Detokenize(Tokenize(text)) is the text; a bad parameter is
INVALID_ARGUMENT whose message names the field; the stream's last message
carries `finished` and the usage. The alignment object (issue 5): best_of_n
with n=2 sends one whole chosen completion in one message that also carries
the policy's report, the same text and rewards as the HTTP API gives the same
seeded request; a bad policy or params is INVALID_ARGUMENT naming
"alignment", and the server serves the next request.

Usage: grpc_client_test.py [PATH_TO_ALIGNSERVE]   (or env ALIGNSERVE_BINARY)
Runs `alignserve serve --port 0 --grpc-port 0` on the default model, then
stops it with SIGTERM and requires exit code 0. Needs the venv from
scripts/setup_test_python.sh.
"""

import json
import math
import os
import sys
import tempfile
import time
import unittest
import urllib.request

import grpc
import grpc_tools
from grpc_tools import protoc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase)

from serve_process import ServeProcess, finish_run

RPC_TIMEOUT_S = 60
SERVICE = "alignserve.v1.AlignServe"
PARIS_PROMPT = "The capital of France is"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pb = None  # alignserve_pb2, generated in main()
pb_grpc = None  # alignserve_pb2_grpc


SERVER = None
CHANNEL = None
STUB = None


def GenerateStubs(out_dir):
    """alignserve_pb2 and alignserve_pb2_grpc from proto/, via grpcio-tools' protoc."""
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    code = protoc.main([
        "grpc_tools.protoc", f"-I{os.path.join(REPO, 'proto')}", f"-I{well_known}",
        f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
        "alignserve/v1/alignserve.proto"])
    if code != 0:
        raise RuntimeError(f"protoc failed with {code}")
    sys.path.insert(0, out_dir)
    from alignserve.v1 import alignserve_pb2, alignserve_pb2_grpc  # noqa: E402
    return alignserve_pb2, alignserve_pb2_grpc


def Greedy(max_tokens=6, **fields):
    return pb.SamplingParameters(max_tokens=max_tokens, temperature=0.0, **fields)


def Collect(responses):
    """(text per choice, token ids per choice, finish reasons, last message)."""
    texts, ids, finish, last = {}, {}, {}, None
    for r in responses:
        texts[r.index] = texts.get(r.index, "") + r.text
        ids.setdefault(r.index, []).extend(r.token_ids)
        if r.finish_reason != pb.FINISH_REASON_UNSPECIFIED:
            finish[r.index] = r.finish_reason
        last = r
    return texts, ids, finish, last


def BestOfN2(**alignment):
    """A seeded best_of_n request with n=2 (params as a dict: a Struct)."""
    return pb.GenerateRequest(
        text="Give one tip for staying healthy:",
        sampling=pb.SamplingParameters(max_tokens=6, temperature=0.8, seed=1, ignore_eos=True),
        alignment=pb.Alignment(policy="best_of_n", params={"n": 2}, **alignment))


def HttpCompletion(body):
    request = urllib.request.Request(
        f"http://127.0.0.1:{SERVER.port}/v1/completions", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=RPC_TIMEOUT_S) as r:
        return json.load(r)


class HealthAndReflectionTest(unittest.TestCase):
    def test_health_check_is_serving_for_the_server_and_the_service(self):
        health = health_pb2_grpc.HealthStub(CHANNEL)
        for service in ("", SERVICE):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service),
                                 timeout=RPC_TIMEOUT_S)
            self.assertEqual(reply.status, health_pb2.HealthCheckResponse.SERVING, service)

    def test_reflection_lists_the_service_and_serves_its_methods(self):
        db = ProtoReflectionDescriptorDatabase(CHANNEL)
        services = set(db.get_services())
        self.assertIn(SERVICE, services)
        self.assertIn("grpc.health.v1.Health", services)
        # The descriptor the server returns describes the same methods.
        file_proto = db.FindFileContainingSymbol(SERVICE)
        self.assertEqual(file_proto.package, "alignserve.v1")
        methods = {m.name for s in file_proto.service if s.name == "AlignServe" for m in s.method}
        self.assertEqual(methods, {"Generate", "Tokenize", "Detokenize", "ListModels"})


class GenerateTest(unittest.TestCase):
    def test_text_in_streams_the_same_greedy_answer_as_http(self):
        responses = list(STUB.Generate(
            pb.GenerateRequest(text=PARIS_PROMPT, sampling=Greedy()), timeout=RPC_TIMEOUT_S))
        self.assertGreater(len(responses), 1)  # streamed, not one message
        texts, ids, finish, last = Collect(responses)
        self.assertIn("Paris", texts[0])
        self.assertEqual(len(ids[0]), 6)
        self.assertEqual(finish[0], pb.FINISH_REASON_LENGTH)
        self.assertTrue(last.finished)
        self.assertEqual(last.usage.completion_tokens, 6)
        for r in responses[:-1]:
            self.assertFalse(r.finished)
        http = HttpCompletion({"model": SERVER_MODEL, "prompt": PARIS_PROMPT, "max_tokens": 6,
                               "temperature": 0})
        self.assertEqual(texts[0], http["choices"][0]["text"])
        self.assertEqual(last.usage.prompt_tokens, http["usage"]["prompt_tokens"])

    def test_token_ids_in_give_the_same_tokens_as_their_text(self):
        tokenized = STUB.Tokenize(pb.TokenizeRequest(text=PARIS_PROMPT), timeout=RPC_TIMEOUT_S)
        by_text = Collect(STUB.Generate(
            pb.GenerateRequest(text=PARIS_PROMPT, sampling=Greedy()), timeout=RPC_TIMEOUT_S))
        by_ids = Collect(STUB.Generate(
            pb.GenerateRequest(token_ids=pb.TokenIds(ids=tokenized.token_ids),
                               sampling=Greedy()), timeout=RPC_TIMEOUT_S))
        self.assertEqual(by_ids[1], by_text[1])
        self.assertEqual(by_ids[0], by_text[0])
        self.assertEqual(by_ids[3].usage.prompt_tokens, len(tokenized.token_ids))

    def test_chat_messages_in_answer_the_question(self):
        request = pb.GenerateRequest(
            messages=pb.ChatMessages(messages=[
                pb.ChatMessage(role="user", content="What is the capital of France?")]),
            sampling=Greedy(max_tokens=12))
        texts, _, _, last = Collect(STUB.Generate(request, timeout=RPC_TIMEOUT_S))
        self.assertIn("Paris", texts[0])
        self.assertTrue(last.finished)

    def test_n2_streams_both_choices(self):
        request = pb.GenerateRequest(
            text="My favourite food is", sampling=pb.SamplingParameters(
                max_tokens=5, n=2, seed=7, temperature=1.0, ignore_eos=True))
        _, ids, finish, last = Collect(STUB.Generate(request, timeout=RPC_TIMEOUT_S))
        self.assertEqual(sorted(ids), [0, 1])
        self.assertEqual([len(ids[0]), len(ids[1])], [5, 5])
        self.assertEqual(finish, {0: pb.FINISH_REASON_LENGTH, 1: pb.FINISH_REASON_LENGTH})
        self.assertEqual(last.usage.completion_tokens, 10)


class AlignmentTest(unittest.TestCase):
    def test_best_of_n_sends_the_chosen_completion_with_the_report(self):
        responses = list(STUB.Generate(BestOfN2(reward_model="judge"), timeout=RPC_TIMEOUT_S))
        # Nothing streams while the policy runs: the chosen completion comes whole.
        self.assertEqual(len(responses), 1)
        texts, ids, finish, last = Collect(responses)
        self.assertEqual(sorted(ids), [0])
        self.assertEqual(len(ids[0]), 6)
        self.assertEqual(finish[0], pb.FINISH_REASON_LENGTH)
        self.assertTrue(last.finished)
        self.assertEqual(last.usage.completion_tokens, 6)
        self.assertEqual(last.alignment.policy, "best_of_n")
        report = dict(last.alignment.report)
        rewards = [report["reward_0"], report["reward_1"]]
        self.assertNotIn("reward_2", report)
        for r in rewards:
            self.assertFalse(math.isnan(r), report)  # both samples scored by the judge
        chosen = int(report["chosen_index"])
        self.assertEqual(chosen, 0 if rewards[0] >= rewards[1] else 1)
        self.assertEqual(report["chosen_reward"], rewards[chosen])
        self.assertEqual(report["num_sequences"], 2)
        self.assertEqual(report["num_scored"], 2)
        self.assertEqual(report["tokens_generated"], 12)
        # The same seeded request over HTTP: the same choice, text and rewards.
        http = HttpCompletion({
            "model": SERVER_MODEL, "prompt": "Give one tip for staying healthy:",
            "max_tokens": 6, "temperature": 0.8, "seed": 1, "ignore_eos": True,
            "alignment": {"policy": "best_of_n", "params": {"n": 2}}})
        self.assertEqual(texts[0], http["choices"][0]["text"])
        self.assertEqual(http["alignment"]["report"]["chosen_index"], chosen)
        for i in range(2):
            self.assertAlmostEqual(http["alignment"]["report"][f"reward_{i}"], rewards[i],
                                   places=5)

    def test_policy_none_is_plain_sampling_without_a_report(self):
        request = pb.GenerateRequest(text=PARIS_PROMPT, sampling=Greedy(),
                                     alignment=pb.Alignment(policy="none"))
        responses = list(STUB.Generate(request, timeout=RPC_TIMEOUT_S))
        self.assertGreater(len(responses), 1)  # streamed as usual
        texts, _, _, last = Collect(responses)
        self.assertIn("Paris", texts[0])
        self.assertFalse(last.HasField("alignment"))

    def test_bad_alignment_is_invalid_argument_naming_it_then_a_valid_request_works(self):
        def Refused(request, *words):
            with self.assertRaises(grpc.RpcError) as caught:
                list(STUB.Generate(request, timeout=RPC_TIMEOUT_S))
            details = caught.exception.details()
            self.assertEqual(caught.exception.code(), grpc.StatusCode.INVALID_ARGUMENT, details)
            for word in words:
                self.assertIn(word, details)

        def WithAlignment(**alignment):
            return pb.GenerateRequest(text="Hi", sampling=pb.SamplingParameters(max_tokens=2),
                                      alignment=pb.Alignment(**alignment))

        Refused(WithAlignment(policy="best_of_n", params={"n": 1000}), "alignment", "'n'")
        Refused(WithAlignment(policy="best_of_n", params={"n": 2.5}), "alignment", "'n'")
        Refused(WithAlignment(policy="best_of_n", params={"beams": 2}), "alignment",
                "unknown parameter")
        Refused(WithAlignment(policy="no_such_policy"), "alignment", "unknown alignment policy")
        Refused(WithAlignment(policy=""), "alignment", "policy is required")
        Refused(WithAlignment(policy="best_of_n", reward_model="oracle"), "alignment",
                "reward_model")
        Refused(pb.GenerateRequest(text="Hi", sampling=pb.SamplingParameters(n=2),
                                   alignment=pb.Alignment(policy="best_of_n")),
                "n must be 1")
        # A valid request right after is served, policy and all.
        _, ids, _, last = Collect(STUB.Generate(BestOfN2(), timeout=RPC_TIMEOUT_S))
        self.assertEqual(len(ids[0]), 6)
        self.assertEqual(last.alignment.policy, "best_of_n")


class TokenizerAndModelsTest(unittest.TestCase):
    def test_tokenize_then_detokenize_round_trips(self):
        text = "Hello world, the café is open."
        tokenized = STUB.Tokenize(pb.TokenizeRequest(text=text), timeout=RPC_TIMEOUT_S)
        self.assertEqual(tokenized.count, len(tokenized.token_ids))
        self.assertGreater(tokenized.count, 3)
        self.assertEqual(tokenized.max_model_len, SERVER_MAX_MODEL_LEN)
        back = STUB.Detokenize(pb.DetokenizeRequest(token_ids=tokenized.token_ids),
                               timeout=RPC_TIMEOUT_S)
        self.assertEqual(back.text, text)

    def test_list_models_names_the_served_model(self):
        models = STUB.ListModels(pb.ListModelsRequest(), timeout=RPC_TIMEOUT_S).models
        self.assertEqual([m.id for m in models], [SERVER_MODEL])
        self.assertEqual(models[0].owned_by, "alignserve")


class InvalidRequestTest(unittest.TestCase):
    def assertRefused(self, request, code, field):
        with self.assertRaises(grpc.RpcError) as caught:
            list(STUB.Generate(request, timeout=RPC_TIMEOUT_S))
        self.assertEqual(caught.exception.code(), code, caught.exception.details())
        self.assertIn(field, caught.exception.details())

    def test_bad_parameters_are_invalid_argument_naming_the_field(self):
        self.assertRefused(
            pb.GenerateRequest(text="x", sampling=pb.SamplingParameters(temperature=-1.0)),
            grpc.StatusCode.INVALID_ARGUMENT, "temperature")
        self.assertRefused(
            pb.GenerateRequest(token_ids=pb.TokenIds(ids=[1, 2, 999999])),
            grpc.StatusCode.INVALID_ARGUMENT, "999999")
        self.assertRefused(
            pb.GenerateRequest(text="x", sampling=pb.SamplingParameters(max_tokens=0)),
            grpc.StatusCode.INVALID_ARGUMENT, "max_tokens")
        self.assertRefused(pb.GenerateRequest(text=""), grpc.StatusCode.INVALID_ARGUMENT,
                           "prompt")
        self.assertRefused(pb.GenerateRequest(model="gpt-9", text="x"),
                           grpc.StatusCode.NOT_FOUND, "gpt-9")
        # A valid request right after is served.
        texts, _, _, _ = Collect(STUB.Generate(
            pb.GenerateRequest(text=PARIS_PROMPT, sampling=Greedy()), timeout=RPC_TIMEOUT_S))
        self.assertIn("Paris", texts[0])


SERVER_MODEL = None
SERVER_MAX_MODEL_LEN = None


def main():
    global SERVER, CHANNEL, STUB, pb, pb_grpc, SERVER_MODEL, SERVER_MAX_MODEL_LEN
    binary = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("ALIGNSERVE_BINARY")
    if not binary or not os.access(binary, os.X_OK):
        print(f"grpc_client_test: no alignserve binary (argv[1] or ALIGNSERVE_BINARY): {binary!r}")
        return 2
    print(f"grpc_client_test: grpcio {grpc.__version__}, server {binary}", flush=True)
    t0 = time.monotonic()
    stubs_dir = tempfile.TemporaryDirectory(prefix="alignserve_grpc_stubs_")
    pb, pb_grpc = GenerateStubs(stubs_dir.name)
    SERVER = ServeProcess(binary, grpc=True)
    if not SERVER.wait_ready():
        print("grpc_client_test: FAIL: the server did not become ready (with gRPC)\n" +
              SERVER.log_tail())
        SERVER.stop()
        return 1
    with urllib.request.urlopen(f"http://127.0.0.1:{SERVER.port}/v1/models", timeout=30) as r:
        card = json.load(r)["data"][0]
    SERVER_MODEL, SERVER_MAX_MODEL_LEN = card["id"], card["max_model_len"]
    CHANNEL = grpc.insecure_channel(f"127.0.0.1:{SERVER.grpc_port}")
    STUB = pb_grpc.AlignServeStub(CHANNEL)
    print(f"grpc_client_test: ready, gRPC on port {SERVER.grpc_port} in "
          f"{time.monotonic() - t0:.1f} s", flush=True)

    suite = unittest.TestSuite()
    for case in (HealthAndReflectionTest, GenerateTest, AlignmentTest, TokenizerAndModelsTest,
                 InvalidRequestTest):
        suite.addTests(unittest.defaultTestLoader.loadTestsFromTestCase(case))
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)

    CHANNEL.close()
    return finish_run("grpc_client_test", result, SERVER, t0)


if __name__ == "__main__":
    sys.exit(main())
