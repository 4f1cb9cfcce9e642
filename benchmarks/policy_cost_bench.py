"""Policy cost against plain sampling through one `alignserve serve` on the
default model, alternating, one round per prompt:
  best_of_n (n 8) against plain n = 8 sampling: wall time of the same request
    shape (32 output tokens, temperature 0.8, ignore_eos, same seed), once per
    reward model of --reward-models. The issue's target: best_of_n within
    1.2x of plain n = 8.
  args (k 10, w 1, greedy) against plain greedy decoding, 32 output tokens
    (ignore_eos), per reward model: the wall-time ratio is args' cost per
    output token as a multiple of plain decoding's (each token: k candidate
    decodes batched in one step, then k judge prefills batched in the next).
Reward models: judge (the served model reading the rubric: prompt and
response prefilled again after it) and self_judge (the served model asked
after its own response: prompt and response are prefix-cache hits).

Usage (repository root, after scripts/build.sh):
  python3 benchmarks/policy_cost_bench.py [--binary build/alignserve] [--skip-args]
      [--reward-models judge,self_judge] [--repeat 1]
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
ap.add_argument("--repeat", type=int, default=1,
                help="rounds over the four prompts (more rounds, steadier medians)")
ap.add_argument("--reward-models", default="judge,self_judge",
                help="comma-separated reward models, each timed in every round")
cli = ap.parse_args()
models = cli.reward_models.split(",")
srv = ServeProcess(cli.binary, [])
assert srv.wait_ready(), srv.log_tail()


def compare(label, plain_body, policy_body, alignment):
    """Per prompt: the plain request and the policy once per reward model, the
    plain request first in even rounds and last in odd ones (no order bias)."""
    ratios = {m: [] for m in models}
    for r, prompt in enumerate(PROMPTS * cli.repeat):
        def run_plain():
            return post(srv.port, dict(plain_body(r), prompt=prompt))[0]
        plain_t = run_plain() if r % 2 == 0 else None
        timed = {}
        for m in models:
            timed[m] = post(srv.port, dict(policy_body(r), prompt=prompt,
                                           alignment=dict(alignment, reward_model=m)))
        if plain_t is None:
            plain_t = run_plain()
        line = f"{label} round {r}: plain {plain_t:.2f} s"
        for m in models:
            t, out = timed[m]
            rep = out["alignment"]["report"]
            ratios[m].append(t / plain_t)
            line += (f"; {label}/{m} {t:.2f} s (ratio {t / plain_t:.2f}, scored "
                     f"{rep.get('num_scored')}, tokens {rep.get('tokens_generated')})")
        print(line, flush=True)
    for m in models:
        print(f"{label}/{m}: median ratio {statistics.median(ratios[m]):.2f}, "
              f"max {max(ratios[m]):.2f}")


try:
    base = {"model": srv.model, "max_tokens": 32, "temperature": 0.8, "ignore_eos": True}
    post(srv.port, dict(base, prompt="warm up", n=8))
    # best_of_n n 8 against plain n = 8: the ratio is the 1.2x figure.
    compare("best_of_n", lambda r: dict(base, n=8, seed=r), lambda r: dict(base, seed=r),
            {"policy": "best_of_n", "params": {"n": 8}})
    if not cli.skip_args:
        # args against plain greedy: the ratio is args' per-token cost.
        greedy = dict(base, temperature=0.0)
        compare("args", lambda r: greedy, lambda r: greedy,
                {"policy": "args", "params": {"k": 10, "w": 1.0}})
finally:
    srv.stop()
