#!/usr/bin/env python3
"""Judge-score quality of best_of_n and ARGS against plain decoding (issue 5's evaluation).

Over N prompts of benchmarks/data/helpfulness_prompts.jsonl (default 50, spread evenly
over the file so every category appears, the should-decline ones included), through one
`alignserve serve` (started here, or --url) on /v1/chat/completions, prompt i of the file
sent with seed = --seed + i:

best_of_n (n 8, temperature 0.8): one best_of_n request per prompt. Plain is scored
  without a second generation: by the engine's seed contract (engine/decoding_policy.h)
  expand sample i of a seeded policy request draws exactly what a plain n = 1 request
  seeded seed + i draws, so the report's reward_0 is the judge score of the plain
  completion (same seed, temperature, max_tokens), and reward_<chosen_index> is
  best_of_n's. Both come from the engine's own judge in the same request, so the pair
  shares everything but the choice, and diff >= 0 by construction (a tie when the
  choice is sample 0). "mean_reward_all_samples" (all n rewards) is a lower-variance
  estimate of a plain sample's expected score. The report carries no texts, so the claim
  is checked per prompt (--verify, default on; costs one plain request and two scoring
  requests a prompt): the plain request is sent, its text scored by the external judge
  below must equal reward_0 (a different text would score differently), best_of_n's
  chosen text scored the same way must equal reward_<chosen_index> (the scorer is the
  engine's judge), and when chosen_index is 0 the two texts must be identical. Counts of
  each check and the largest score gaps are in the summary. Once per run, a best_of_n
  n = 1 request (which returns its sample 0) is compared with the plain text directly.

args (k 10, w 1.0): ARGS-greedy (no temperature) against plain greedy decoding
  (temperature 0), both deterministic, so each prompt's pair differs only by ARGS'
  reward guidance (w = 0 would reproduce greedy exactly). --args-temperature T runs
  sampled ARGS against plain sampling at T with the same seed instead (then the pair
  shares prompt and seed but not the random draws: ARGS draws per position with its own
  seed + position stream). The args report has only chosen_reward_mean (a mean over
  prefixes), not the final completion's reward, and the server has no "score this text"
  endpoint, so both completions are scored by the external judge below.

--reward-model self_judge (or any but judge): the policies are guided by that reward
  model and measured by the rubric judge: best_of_n's chosen text and the plain text
  (sample 0's seed) are both scored by the external judge below, so the figure says
  whether choosing by the cheap reward raises the rubric judge's score.

External judge: the same computation as alignment/judge_reward_model.cc, through
  ordinary requests. The rubric (alignment/rubrics/default.txt, or --judge-rubric, which
  is also given to a started server) is filled with the prompt and the response; the
  text is tokenized by POST /tokenize (BOS as the tokenizer adds it by default, as the
  judge encodes); the verdict tokens are found as the judge finds them (the first token
  that " Yes" / " No" adds after the filled rubric with empty fields). One
  /v1/completions request with the ids as its prompt, max_tokens 1, temperature 0,
  logprobs 20 and logit_bias +100 on the Yes token returns logprob(Yes) as the sampled
  token's logprob and logprob(No) among the top 20: the server's logprobs come from the
  raw logits row (engine/sampler.h), before bias. If No is not in the top 20, a second
  request forced to No reads it. score = logprob(Yes) - logprob(No). Its agreement with
  the engine is measured on every best_of_n prompt (above); on the dev machine it agrees
  to ~2e-6 (logprobs travel as float32). Two differences from the engine are accepted
  and flagged: /tokenize parses special-token spellings ("<|im_end|>") in the text,
  while the judge does not, so texts containing "<|" are counted in "special_markers";
  echo/prompt_logprobs would be the other route but returns nothing for
  prefix-cache-hit positions, so it is not used.

Report (stdout table, --out JSON with every record): per policy mean plain, mean
policy, mean paired difference (policy - plain) with a 95% t-interval and a 95%
percentile-bootstrap interval (10,000 resamples), win / tie / loss counts and win rate,
wall time of the policy and plain requests, tokens generated (the policy reports'
tokens_generated, usage.completion_tokens for plain), judge calls. Note that the judge
that scores is the judge that best_of_n and ARGS optimise: the figures measure how
much of the judge's preference the policy buys, not quality by an independent measure.
Progress lines go to stderr; finished prompts are appended to OUT.partial.jsonl, and
--resume reuses them after an interruption.

Full run (repository root; about an hour of CPU on the 2-core machine, ARGS dominating):
  python3 benchmarks/alignment_quality_eval.py --binary /tmp/eval-bin/alignserve \\
      --server-threads 2 --out alignment_quality_results.json
Smoke run:
  python3 benchmarks/alignment_quality_eval.py --binary /tmp/eval-bin/alignserve \\
      --server-threads 1 --num-prompts 3 --bon-n 4 --max-tokens 48 --out /tmp/q_smoke.json
"""
import argparse
import json
import re
import sys
import time
from datetime import datetime
from pathlib import Path

import eval_common as ec

SCORE_TOLERANCE = 1e-3  # logprobs travel as float32; a different text differs by far more


class JudgeScorer:
    """Scores (prompt, response) as the server's `judge` reward model does (see the module
    docstring), with ordinary /tokenize and /v1/completions requests."""

    def __init__(self, client, rubric_path):
        self.client = client
        text = Path(rubric_path).read_text()
        text = text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
        self.pieces = self._parse(text)
        probe = self.fill("", "")
        self.yes, self.yes_text = self._verdict(probe, "Yes")
        self.no, self.no_text = self._verdict(probe, "No")
        self.requests = 0
        self.special_markers = 0

    @staticmethod
    def _parse(text):
        pieces = []
        for m in re.finditer(r"\{\{|\}\}|\{prompt\}|\{response\}|\{|\}|[^{}]+", text):
            tok = m.group(0)
            if tok in ("{prompt}", "{response}"):
                pieces.append((tok[1:-1], None))
            elif tok in ("{{", "}}"):
                pieces.append(("text", tok[0]))
            elif tok in ("{", "}"):
                raise SystemExit(f"rubric: a lone '{tok}' (Rubric::Parse would refuse it)")
            else:
                pieces.append(("text", tok))
        return pieces

    def fill(self, prompt, response):
        values = {"prompt": prompt, "response": response}
        return "".join(v if kind == "text" else values[kind] for kind, v in self.pieces)

    def _verdict(self, probe, word):
        base = self.client.tokenize(probe)
        sep = "" if probe[-1:].isspace() else " "
        with_word = self.client.tokenize(probe + sep + word)
        i = 0
        while i < len(base) and i < len(with_word) and base[i] == with_word[i]:
            i += 1
        if i >= len(with_word):
            raise SystemExit(f"judge: '{word}' adds no token after the rubric")
        token = with_word[i]
        text = self.client.post("/detokenize", {"model": self.client.model,
                                                "tokens": [token]})[0]["prompt"]
        return token, text

    def _logprob_forced(self, ids, token, token_text):
        body = {"model": self.client.model, "prompt": ids, "max_tokens": 1, "temperature": 0,
                "logprobs": 20, "logit_bias": {str(token): 100}}
        out, _ = self.client.post("/v1/completions", body)
        self.requests += 1
        lp = out["choices"][0]["logprobs"]
        if lp["tokens"][0] != token_text:
            raise ec.EvalError(f"judge: forced {token_text!r} but got {lp['tokens'][0]!r}")
        return lp["token_logprobs"][0], lp["top_logprobs"][0]

    def score(self, prompt, response):
        if "<|" in prompt or "<|" in response:
            self.special_markers += 1
        ids = self.client.tokenize(self.fill(prompt, response))
        yes_lp, top = self._logprob_forced(ids, self.yes, self.yes_text)
        no_lp = top.get(self.no_text)
        if no_lp is None:
            no_lp, _ = self._logprob_forced(ids, self.no, self.no_text)
        return yes_lp - no_lp


def content(answer):
    return answer["choices"][0]["message"]["content"] or ""


def close(a, b):
    return a is not None and b is not None and abs(a - b) <= SCORE_TOLERANCE


def run_best_of_n(client, judge, index, row, args):
    prompt = row["prompt"]
    common = {"max_tokens": args.max_tokens, "temperature": args.temperature,
              "seed": args.seed + index}
    bon, bon_s = client.chat(prompt, **common, alignment={
        "policy": "best_of_n", "params": {"n": args.bon_n}, "reward_model": args.reward_model})
    rep = bon["alignment"]["report"]
    rewards = [rep.get(f"reward_{i}") for i in range(rep["num_sequences"])]
    chosen = rep["chosen_index"]
    rec = {"id": row["id"], "category": row.get("category"), "seed": common["seed"],
           "rewards": rewards, "chosen_index": chosen, "report": rep, "policy_s": bon_s,
           "policy_text": content(bon), "policy_tokens": rep.get("tokens_generated"),
           "plain_score_source": "reward_0"}
    rec["policy_score"] = rewards[chosen] if chosen >= 0 else None
    rec["plain_score"] = rewards[0]
    if args.verify:
        plain, plain_s = client.chat(prompt, **common)
        ext_plain = judge.score(prompt, content(plain))
        ext_chosen = judge.score(prompt, content(bon))
        rec.update(plain_text=content(plain), plain_s=plain_s,
                   plain_tokens=plain["usage"]["completion_tokens"],
                   ext_plain_score=ext_plain, ext_chosen_score=ext_chosen,
                   sample0_matches_plain=close(ext_plain, rewards[0]),
                   judge_matches_engine=close(ext_chosen, rec["policy_score"]),
                   texts_equal_when_chosen_0=(content(plain) == content(bon)) if chosen == 0
                   else None)
        if rec["plain_score"] is None:  # sample 0 went unscored: score the plain text
            rec["plain_score"], rec["plain_score_source"] = ext_plain, "external"
    if args.reward_model != "judge":
        # Guided by another reward model: both texts are measured by the
        # rubric judge (the external one), the policy's own rewards kept as
        # `rewards`; the engine-vs-external checks do not apply.
        rec.update(plain_score=rec["ext_plain_score"], policy_score=rec["ext_chosen_score"],
                   plain_score_source="external", sample0_matches_plain=None,
                   judge_matches_engine=None)
    return rec


def check_seed_contract(client, index, row, args):
    """Once per run: best_of_n n = 1 returns its sample 0, which must be the plain text."""
    common = {"max_tokens": args.max_tokens, "temperature": args.temperature,
              "seed": args.seed + index}
    plain, _ = client.chat(row["prompt"], **common)
    one, _ = client.chat(row["prompt"], **common, alignment={
        "policy": "best_of_n", "params": {"n": 1}, "reward_model": "judge"})
    equal = content(plain) == content(one)
    ec.progress(f"seed contract: best_of_n n=1 sample 0 {'equals' if equal else 'DIFFERS FROM'} "
                f"the plain completion ({row['id']}, seed {common['seed']})")
    return {"id": row["id"], "seed": common["seed"], "texts_equal": equal,
            "plain_text": content(plain), "sample_0_text": content(one)}


def run_args(client, judge, index, row, args):
    prompt = row["prompt"]
    common = {"max_tokens": args.max_tokens, "seed": args.seed + index}
    params = {"k": args.args_k, "w": args.args_w}
    if args.args_temperature is None:
        common["temperature"] = 0.0
    else:
        common["temperature"] = params["temperature"] = args.args_temperature
    plain, plain_s = client.chat(prompt, **common)
    pol, pol_s = client.chat(prompt, **common, alignment={
        "policy": "args", "params": params, "reward_model": args.reward_model})
    rep = pol["alignment"]["report"]
    return {"id": row["id"], "category": row.get("category"), "seed": common["seed"],
            "report": rep, "policy_s": pol_s, "plain_s": plain_s,
            "policy_text": content(pol), "plain_text": content(plain),
            "policy_tokens": rep.get("tokens_generated"),
            "plain_tokens": plain["usage"]["completion_tokens"],
            "policy_score": judge.score(prompt, content(pol)),
            "plain_score": judge.score(prompt, content(plain)),
            "identical_texts": content(pol) == content(plain)}


def total(records, key):
    vals = [r.get(key) for r in records if r.get(key) is not None]
    return sum(vals) if vals else None


def summarize(policy, records, args):
    ok = [r for r in records if "error" not in r and r.get("plain_score") is not None
          and r.get("policy_score") is not None]
    s = ec.paired_summary([r["plain_score"] for r in ok], [r["policy_score"] for r in ok],
                          args.seed)
    s.update(errors=sum("error" in r for r in records),
             policy_wall_s=total(ok, "policy_s"), plain_wall_s=total(ok, "plain_s"),
             policy_tokens=total(ok, "policy_tokens"), plain_tokens=total(ok, "plain_tokens"))
    if policy == "best_of_n":
        every = [x for r in ok for x in r["rewards"] if x is not None]
        s["mean_reward_all_samples"] = sum(every) / len(every) if every else None
        s["chosen_not_sample_0"] = sum(r["chosen_index"] != 0 for r in ok)
        s["plain_scored_externally"] = sum(r["plain_score_source"] != "reward_0" for r in ok)
        checked = [r for r in ok if "ext_plain_score" in r]
        if checked:
            gap = lambda a, b: abs(a - b) if a is not None and b is not None else None
            g0 = [gap(r["ext_plain_score"], r["rewards"][0]) for r in checked
                  if r["sample0_matches_plain"] is not None]
            gc = [gap(r["ext_chosen_score"], r["policy_score"]) for r in checked
                  if r["judge_matches_engine"] is not None]
            eq = [r["texts_equal_when_chosen_0"] for r in checked
                  if r["texts_equal_when_chosen_0"] is not None]
            s["verify"] = {
                "prompts": len(checked),
                "sample0_matches_plain": sum(bool(r["sample0_matches_plain"]) for r in checked),
                "max_gap_plain_vs_reward_0": max((g for g in g0 if g is not None), default=None),
                "judge_matches_engine": sum(bool(r["judge_matches_engine"]) for r in checked),
                "max_gap_external_vs_engine": max((g for g in gc if g is not None), default=None),
                "chosen_0_texts_equal": f"{sum(eq)}/{len(eq)}"}
    else:
        s["identical_texts"] = sum(r["identical_texts"] for r in ok)
        s["judge_calls"] = sum(r["report"].get("judge_calls", 0) for r in ok)
        means = [r["report"].get("chosen_reward_mean") for r in ok]
        means = [m for m in means if m is not None]
        s["mean_chosen_reward_mean"] = sum(means) / len(means) if means else None
    return s


def print_table(summary):
    for policy, s in summary.items():
        print(f"== {policy} vs plain ({s['n']} prompts, {s['errors']} errors) ==")
        rows = [("mean plain score", s.get("mean_plain")),
                ("mean policy score", s.get("mean_policy")),
                ("mean paired diff (policy - plain)", s.get("mean_diff")),
                ("  95% t-interval", s.get("t_ci95_diff")),
                ("  95% bootstrap interval", s.get("bootstrap_ci95_diff")),
                ("wins / ties / losses", f"{s.get('wins')} / {s.get('ties')} / {s.get('losses')}"),
                ("win rate (ties excluded)", s.get("win_rate_without_ties")),
                ("policy wall s (total)", s.get("policy_wall_s")),
                ("plain wall s (total)", s.get("plain_wall_s")),
                ("policy tokens generated", s.get("policy_tokens")),
                ("plain tokens generated", s.get("plain_tokens"))]
        for key in ("mean_reward_all_samples", "chosen_not_sample_0", "plain_scored_externally",
                    "identical_texts", "judge_calls", "mean_chosen_reward_mean"):
            if key in s:
                rows.append((key.replace("_", " "), s[key]))
        for k, v in (s.get("verify") or {}).items():
            rows.append(("verify: " + k.replace("_", " "), v))
        for label, v in rows:
            print(f"  {label:<38} {ec.fmt(v)}")


POLICIES = {"best_of_n": run_best_of_n, "args": run_args}


def policy_tag(policy, args):
    guide = "" if args.reward_model == "judge" else f",rm={args.reward_model}"
    if policy == "best_of_n":
        return f"best_of_n(n={args.bon_n},T={args.temperature},verify={args.verify}{guide})"
    return f"args(k={args.args_k},w={args.args_w},T={args.args_temperature}{guide})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("--prompts", default=str(ec.DATA / "helpfulness_prompts.jsonl"))
    ap.add_argument("--num-prompts", type=int, default=50)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--policies", default="best_of_n,args",
                    help="comma-separated subset of best_of_n,args")
    ap.add_argument("--temperature", type=float, default=0.8,
                    help="sampling temperature of best_of_n and its plain pair")
    ap.add_argument("--bon-n", type=int, default=8)
    ap.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                    help="check per prompt that reward_0 scores the plain completion")
    ap.add_argument("--args-k", type=int, default=10)
    ap.add_argument("--args-w", type=float, default=1.0)
    ap.add_argument("--args-temperature", type=float, default=None,
                    help="sampled ARGS against plain sampling at T (default: both greedy)")
    ap.add_argument("--judge-rubric", default=str(ec.REPO / "alignment" / "rubrics" / "default.txt"),
                    help="rubric of the external judge, also given to a started server")
    ap.add_argument("--reward-model", default="judge",
                    help="reward model that guides the policies (judge, self_judge, ...); "
                         "other than judge, both texts of a pair are scored by the external "
                         "rubric judge (best_of_n then needs --verify)")
    ec.add_server_args(ap, kv_cache_gib=1.0)
    ec.add_run_args(ap, "alignment_quality_results.json")
    args = ap.parse_args()
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    if not policies or any(p not in POLICIES for p in policies):
        ap.error(f"--policies takes a subset of {','.join(POLICIES)}")
    if args.reward_model != "judge" and "best_of_n" in policies and not args.verify:
        ap.error("--reward-model other than judge needs --verify for best_of_n (the rubric "
                 "judge scores both texts)")
    rows = ec.spread(ec.load_jsonl(args.prompts), args.num_prompts)

    default_rubric = Path(args.judge_rubric).resolve() == \
        (ec.REPO / "alignment" / "rubrics" / "default.txt").resolve()
    server = ec.Server(args, [] if default_rubric else ["--judge-rubric", args.judge_rubric])
    started = time.perf_counter()
    try:
        client = server.client
        judge = JudgeScorer(client, args.judge_rubric)
        ec.progress(f"judge verdict tokens: Yes {judge.yes} {judge.yes_text!r}, "
                    f"No {judge.no} {judge.no_text!r}")
        settings = {"prompts": Path(args.prompts).name, "max_tokens": args.max_tokens,
                    "seed": args.seed, "model": client.model,
                    "rubric": Path(args.judge_rubric).read_text()}
        ckpt = ec.Checkpoint(args.out, settings, args.resume)
        records = {p: [] for p in policies}
        contract = (check_seed_contract(client, *rows[0], args)
                    if args.verify and "best_of_n" in policies else None)
        for policy in policies:
            tag, failures = policy_tag(policy, args), 0
            for done, (index, row) in enumerate(rows, 1):
                key = f"{tag}:{row['id']}"
                if key in ckpt.done:
                    records[policy].append(ckpt.done[key])
                    continue
                t0 = time.perf_counter()
                try:
                    rec = POLICIES[policy](client, judge, index, row, args)
                    failures = 0
                except ec.EvalError as e:
                    rec, failures = {"id": row["id"], "error": str(e)}, failures + 1
                    if failures >= 3:
                        raise SystemExit(f"3 failures in a row, last: {e}")
                records[policy].append(ckpt.add(key, rec))
                if "error" in rec:
                    ec.progress(f"{policy} {done}/{len(rows)} {row['id']}: ERROR {rec['error']}")
                else:
                    extra = (f" chosen {rec['chosen_index']}" if policy == "best_of_n"
                             else f" identical {rec['identical_texts']}")
                    ec.progress(f"{policy} {done}/{len(rows)} {row['id']}: plain "
                                f"{ec.fmt(rec['plain_score'])} policy {ec.fmt(rec['policy_score'])}"
                                f"{extra} ({time.perf_counter() - t0:.1f} s)")
        summary = {p: summarize(p, records[p], args) for p in policies}
        summary["_run"] = {"wall_s": time.perf_counter() - started, "seed_contract": contract,
                           "judge_scoring_requests": judge.requests,
                           "special_markers": judge.special_markers}
        metrics = client.get_text("/metrics")
    finally:
        server.close()
    run = summary.pop("_run")
    print_table(summary)
    print(f"  run wall s {run['wall_s']:.1f}; external judge requests {run['judge_scoring_requests']}"
          f"; special markers {run['special_markers']}")
    if run["seed_contract"]:
        print(f"  seed contract (best_of_n n=1 sample 0 == plain text): "
              f"{run['seed_contract']['texts_equal']}")
    ec.write_results(args.out, {
        "script": "benchmarks/alignment_quality_eval.py", "argv": sys.argv[1:],
        "date": datetime.now().isoformat(timespec="seconds"), "server": server.info,
        "settings": vars(args), "num_prompts": len(rows), "run": run, "summary": summary,
        "policy_metric_lines": ec.policy_metric_lines(metrics), "records": records})


if __name__ == "__main__":
    main()
