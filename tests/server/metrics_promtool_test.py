#!/usr/bin/env python3
"""`promtool check metrics` (Debian's prometheus package) on the real /metrics.

Proves issue 4's metrics Proof item against the real `alignserve serve`:
  - with --metrics-prefix alignserve_, promtool accepts the exposition with
    exit code 0 and no complaint at all: before any request, while a stream
    is in flight, and after requests complete;
  - with the default, vLLM-style prefix "alignserve:" (kept so vLLM's
    dashboards carry over), the exposition parses and promtool's only
    complaint is its lint that colons are reserved for recording rules
    (exit code 3), one line per metric family, nothing else;
  - the counters move as requests complete: request_success_total by
    finished_reason, prompt_tokens_total and generation_tokens_total by
    exactly the usage the responses report, the e2e latency histogram's count;
  - the per-policy series (labelled policy="...") move by exactly the figures
    of the "alignment" report of policy requests (best_of_n, self_consistency):
    policy_requests_total, policy_tokens_generated_total,
    policy_tokens_saved_total, policy_traces_pruned_total,
    policy_scoring_calls_total, and the policy_chosen_reward histogram.

Exit code 77 (CTest SKIP_RETURN_CODE) when promtool is not installed, so a
machine without it shows the test as skipped, never as passed.
Usage: metrics_promtool_test.py PATH_TO_ALIGNSERVE   (stdlib only)
"""

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request

from serve_process import ServeProcess

SKIP = 77
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")
COLON_LINT = re.compile(r"^alignserve:[a-z0-9_]+ metric names should not contain ':'$")


class Failure(Exception):
    pass


def Check(condition, what):
    if not condition:
        raise Failure(what)


def Scrape(server):
    with urllib.request.urlopen(server.url("/metrics"), timeout=30) as r:
        Check(r.status == 200, f"/metrics answered {r.status}")
        return r.read().decode()


def Promtool(text):
    """(exit code, complaint lines) of `promtool check metrics` on text."""
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60)
    return p.returncode, [l for l in (p.stdout + p.stderr).splitlines() if l.strip()]


def Samples(text):
    """{(name, labels): value} of every sample line."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        m = SAMPLE.match(line)
        Check(m is not None, f"not a sample line: {line!r}")
        out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def Post(server, path, body):
    request = urllib.request.Request(server.url(path), data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as r:
        return json.load(r)


def ExpectClean(text, when):
    code, complaints = Promtool(text)
    Check(code == 0 and not complaints,
          f"promtool {when}: exit {code}, complaints {complaints[:5]}")
    print(f"  promtool {when}: exit 0, no complaints", flush=True)


def StrictPrefixRun(binary):
    server = ServeProcess(binary, ["--metrics-prefix", "alignserve_"])
    try:
        Check(server.wait_ready(), "server not ready:\n" + "\n".join(server.lines[-20:]))
        before_text = Scrape(server)
        ExpectClean(before_text, "before any request")
        before = Samples(before_text)
        labels = '{model_name="default",finished_reason="length"}'
        Check(before[("alignserve_request_success_total", labels)] == 0, "fresh success count")

        # A stream in flight while scraping.
        stream = urllib.request.urlopen(urllib.request.Request(
            server.url("/v1/completions"), headers={"Content-Type": "application/json"},
            data=json.dumps({"prompt": "Tell me a story", "max_tokens": 60, "ignore_eos": True,
                             "stream": True}).encode()), timeout=120)
        stream.readline()
        ExpectClean(Scrape(server), "with a stream in flight")
        stream.read()
        stream.close()

        prompt_tokens, completion_tokens = 0, 0
        for body in ({"prompt": "The capital of France is", "max_tokens": 5, "ignore_eos": True},
                     {"prompt": ["Hello", "One two three"], "max_tokens": 4, "ignore_eos": True}):
            usage = Post(server, "/v1/completions", body)["usage"]
            prompt_tokens += usage["prompt_tokens"]
            completion_tokens += usage["completion_tokens"]
        chat = Post(server, "/v1/chat/completions",
                    {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3,
                     "ignore_eos": True})["usage"]
        prompt_tokens += chat["prompt_tokens"]
        completion_tokens += chat["completion_tokens"]

        after_text = Scrape(server)
        ExpectClean(after_text, "after requests completed")
        after = Samples(after_text)
        model = '{model_name="default"}'

        def Moved(name, labels=model):
            return after[(name, labels)] - before[(name, labels)]

        # The stream (60) counts too: it finished with length before this scrape.
        Check(Moved("alignserve_request_success_total", labels) == 5,
              f"length successes moved by {Moved('alignserve_request_success_total', labels)}")
        Check(Moved("alignserve_generation_tokens_total") == completion_tokens + 60,
              f"generation tokens moved by {Moved('alignserve_generation_tokens_total')}, "
              f"want {completion_tokens + 60}")
        prompt_tokens += Post(server, "/tokenize", {"prompt": "Tell me a story"})["count"]
        Check(Moved("alignserve_prompt_tokens_total") == prompt_tokens,
              f"prompt tokens moved by {Moved('alignserve_prompt_tokens_total')}, "
              f"want {prompt_tokens}")
        Check(Moved("alignserve_e2e_request_latency_seconds_count") == 5,
              "e2e latency count moved by "
              f"{Moved('alignserve_e2e_request_latency_seconds_count')}")
        print(f"  counters moved: 5 successes, {completion_tokens + 60} generation tokens",
              flush=True)
        PolicyRun(server, after)
        code = server.stop()
        Check(code == 0, f"SIGTERM exit code {code}")
    finally:
        if server.proc.poll() is None:
            server.proc.kill()


def PolicyRun(server, before):
    """Policy requests move their policy's series by exactly their reports."""
    requests = {
        "best_of_n": {"prompt": "Give one tip for staying healthy:", "max_tokens": 5,
                      "temperature": 0.8, "seed": 2,
                      "alignment": {"policy": "best_of_n", "params": {"n": 2}}},
        # Greedy: the first window of two agrees, ESC stops, four samples are pruned.
        "self_consistency": {"prompt": "Q: What is 6 times 7? A:", "max_tokens": 10,
                             "temperature": 0,
                             "alignment": {"policy": "self_consistency",
                                           "params": {"n": 6, "window": 2}}},
    }
    reports = {name: Post(server, "/v1/completions", body)["alignment"]["report"]
               for name, body in requests.items()}
    text = Scrape(server)
    ExpectClean(text, "after policy requests")
    after = Samples(text)
    for name, report in reports.items():
        labels = f'{{model_name="default",policy="{name}"}}'

        def Moved(metric):
            return after[(metric, labels)] - before.get((metric, labels), 0.0)

        want = {
            "alignserve_policy_requests_total": 1,
            "alignserve_policy_tokens_generated_total": report["tokens_generated"],
            "alignserve_policy_tokens_saved_total": report.get("tokens_saved", 0),
            "alignserve_policy_traces_pruned_total": report.get("traces_pruned", 0),
            "alignserve_policy_scoring_calls_total": report.get("num_scored", 0),
        }
        Check(report["tokens_generated"] > 0, f"{name} report {report}")
        for metric, value in want.items():
            Check(Moved(metric) == value,
                  f"{metric}{labels} moved by {Moved(metric)}, want {value} ({report})")
        reward = report.get("chosen_reward")
        rewarded = 1 if reward is not None else 0  # null: not scored (NaN)
        Check(Moved("alignserve_policy_chosen_reward_count") == rewarded,
              f"{name} chosen_reward count moved by "
              f"{Moved('alignserve_policy_chosen_reward_count')}, want {rewarded}")
        if rewarded:
            Check(abs(Moved("alignserve_policy_chosen_reward_sum") - reward) < 1e-9,
                  f"{name} chosen_reward sum moved by "
                  f"{Moved('alignserve_policy_chosen_reward_sum')}, want {reward}")
        print(f"  {name}: per-policy series moved by its report: "
              f"{ {k.replace('alignserve_policy_', ''): v for k, v in want.items()} }",
              flush=True)
    sc = reports["self_consistency"]
    Check(sc["traces_pruned"] > 0 and sc["tokens_saved"] > 0,
          f"self_consistency pruned nothing, so its series prove little: {sc}")
    Check("chosen_reward" in reports["best_of_n"] and
          reports["best_of_n"]["chosen_reward"] is not None,
          f"best_of_n reports no chosen_reward: {reports['best_of_n']}")


def VllmPrefixRun(binary):
    server = ServeProcess(binary, [])
    try:
        Check(server.wait_ready(), "server not ready:\n" + "\n".join(server.lines[-20:]))
        Post(server, "/v1/completions", {"prompt": "Hi", "max_tokens": 2, "ignore_eos": True})
        text = Scrape(server)
        families = {l.split()[2] for l in text.splitlines() if l.startswith("# TYPE ")}
        code, complaints = Promtool(text)
        Check(code == 3, f"promtool exit {code}, want 3 (lint only): {complaints[:5]}")
        others = [c for c in complaints if not COLON_LINT.match(c)]
        Check(not others, f"complaints other than the colon lint: {others[:5]}")
        Check(len(complaints) == len(families),
              f"{len(complaints)} complaints for {len(families)} families")
        print(f"  default prefix: only the colon lint, once for each of {len(families)} families",
              flush=True)
        Check(server.stop() == 0, "SIGTERM exit code")
    finally:
        if server.proc.poll() is None:
            server.proc.kill()


def main():
    if shutil.which("promtool") is None:
        print("metrics_promtool_test: SKIP: promtool is not installed (Debian package "
              "prometheus; scripts/setup.sh installs it)")
        return SKIP
    if len(sys.argv) < 2:
        print("usage: metrics_promtool_test.py PATH_TO_ALIGNSERVE")
        return 2
    version = subprocess.run(["promtool", "--version"], capture_output=True, text=True)
    print("metrics_promtool_test: " + (version.stdout or version.stderr).splitlines()[0],
          flush=True)
    t0 = time.monotonic()
    try:
        StrictPrefixRun(sys.argv[1])
        VllmPrefixRun(sys.argv[1])
    except Failure as e:
        print(f"metrics_promtool_test: FAIL: {e}")
        return 1
    print(f"metrics_promtool_test: PASS in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
