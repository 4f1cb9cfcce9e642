"""Policy cost against plain sampling through one `alignserve serve` on the
default model, alternating, one round per prompt:
  best_of_n (n 8) against plain n = 8 sampling: wall time of the same request
    shape (32 output tokens, temperature 0.8, ignore_eos, same seed). The
    issue's target: best_of_n within 1.2x of plain n = 8.
  args (k 10, w 1, greedy) against plain greedy decoding, 32 output tokens
    (ignore_eos): the wall-time ratio is args' cost per output token as a
    multiple of plain decoding's (each token: k candidate decodes batched in
    one step, then k judge prefills batched in the next).

Usage (repository root, after scripts/build.sh):
  python3 benchmarks/policy_cost_bench.py [--binary build/alignserve] [--skip-args]
"""
import argparse, json, subprocess, sys, time, urllib.request, statistics
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

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--binary", default="build/alignserve")
ap.add_argument("--skip-args", action="store_true", help="only best_of_n against plain n = 8")
cli = ap.parse_args()
srv = ServeProcess(cli.binary, [])
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
    if not cli.skip_args:
        greedy = dict(base, temperature=0.0)
        args_ratios = []
        for r, prompt in enumerate(PROMPTS):
            plain_t, _ = post(srv.port, dict(greedy, prompt=prompt))
            args_t, out = post(srv.port, dict(greedy, prompt=prompt,
                               alignment={"policy": "args", "params": {"k": 10, "w": 1.0}}))
            rep = out["alignment"]["report"]
            args_ratios.append(args_t / plain_t)
            print(f"args round {r}: plain greedy {plain_t:.2f} s, args k=10 {args_t:.2f} s, "
                  f"per-token cost {args_t / plain_t:.1f}x, judge calls {rep.get('judge_calls')}, "
                  f"tokens {rep.get('tokens_generated')}", flush=True)
        print(f"args median per-token cost {statistics.median(args_ratios):.1f}x plain greedy")
finally:
    srv.stop()
