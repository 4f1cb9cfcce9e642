"""best_of_n (n 8) against plain n = 8 sampling through one `alignserve serve`
on the default model: wall time of the same request shape (32 output tokens,
temperature 0.8, ignore_eos, same seed), alternating, one round per prompt.
The issue's target: best_of_n within 1.2x of plain n = 8.

Usage (repository root, after scripts/build.sh): python3 benchmarks/policy_cost_bench.py
"""
import json, subprocess, sys, time, urllib.request, statistics
sys.path.insert(0, "tests/server")
from serve_process import ServeProcess

PROMPTS = ["Give one tip for staying healthy:", "Explain why the sky is blue in one sentence:",
           "Suggest a name for a friendly robot:", "What is a good way to learn to cook?"]

def post(port, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:
        out = json.loads(r.read())
    return time.perf_counter() - t0, out

srv = ServeProcess("build/alignserve", [])
assert srv.wait_ready(), srv.log_tail()
try:
    base = {"model": srv.model, "max_tokens": 32, "temperature": 0.8, "ignore_eos": True}
    post(srv.port, dict(base, prompt="warm up", n=8))
    rows = []
    for r, prompt in enumerate(PROMPTS):
        plain_t, plain = post(srv.port, dict(base, prompt=prompt, n=8, seed=r))
        bon_t, bon = post(srv.port, dict(base, prompt=prompt, seed=r,
                          alignment={"policy": "best_of_n", "params": {"n": 8}}))
        rep = bon["alignment"]["report"]
        rows.append((r, plain_t, bon_t, rep.get("num_scored"), rep.get("tokens_generated")))
        print(f"round {r}: plain n=8 {plain_t:.2f} s, best_of_n n=8 {bon_t:.2f} s, ratio {bon_t/plain_t:.2f}, "
              f"scored {rep.get('num_scored')}, tokens {rep.get('tokens_generated')}", flush=True)
    ratios = [b / p for _, p, b, _, _ in rows]
    print(f"median ratio {statistics.median(ratios):.2f}, max {max(ratios):.2f}")
finally:
    srv.stop()
