#!/usr/bin/env python3
"""Online DeepConf against full self-consistency on word problems (issue 5's evaluation).

Over N problems of benchmarks/data/word_problems.jsonl (default 50, spread evenly over
the file; every answer key is checked against eval of the record's expression at load),
through one `alignserve serve` (started here, or --url) on /v1/chat/completions, problem
i of the file sent with seed = --seed + i, temperature 0.7, max_tokens 256, the question
followed by an instruction to end with "The answer is N.":

full:      self_consistency {n: N, rule: "none", answer}: all N traces run to the end
           (rule "none" turns early stopping off), majority vote by the engine's own
           answer extractor (alignment/answer_extractor.h; default last_number).
deepconf:  deepconf {n: N, n_init: 16, window: 32, percentile: P, top_k: 20, answer} for
           each P of --percentiles (default 90 = DeepConf-low, keeping the top 10% of
           the warm-up's confidence; 10 = DeepConf-high, keeping the top 90%).
N defaults to 64 traces. Window: the paper's 2,048-token groups are for traces of up to
64k tokens; a trace shorter than the window can never be stopped online (only filtered
from the vote), so at max_tokens 256 the default window is 32 tokens (an eighth of the
budget). Same seed for every method: trace i of either policy samples with seed + i
(engine/decoding_policy.h), so a deepconf trace that is not pruned is token for token the
full run's trace i, and the methods differ only by pruning and weighting.

Per method: accuracy against the answer key, the voted answer's agreement with full,
tokens generated (the reports' tokens_generated: every token any trace produced), tokens
saved = 1 - deepconf / full (over the sum, and the mean of per-problem ratios), traces
pruned and voting, the report's tokens_saved (an upper-bound estimate: each pruned
trace charged its unused budget), wall time, and the peak of /metrics'
kv_cache_usage_perc while the request ran ("kv_peak_usage", a fraction of the cache;
polled every 0.5 s; requests run one at a time) with the preemptions it caused. The voted answer is the returned completion's
answer (Finalize returns the first trace whose answer won), re-extracted here by a
port of last_number and checked against the report's votes:<answer> figures
("vote_mismatches" counts disagreements). "coverage" is the share of problems where the
correct answer got any full-run vote. KV blocks freed by pruned traces: /metrics has no
policy metric (the script prints any /metrics line about policies, and records them);
the peak KV usage is the nearest figure the server exposes.

Progress lines go to stderr; finished problems are appended to OUT.partial.jsonl and
--resume reuses them after an interruption.

Full run (repository root; about an hour of CPU on the 2-core machine):
  python3 benchmarks/deepconf_eval.py --binary /tmp/eval-bin/alignserve \\
      --server-threads 2 --out deepconf_results.json
Smoke run:
  python3 benchmarks/deepconf_eval.py --binary /tmp/eval-bin/alignserve --server-threads 1 \\
      --num-problems 3 --traces 8 --n-init 4 --window 16 --max-tokens 48 --out /tmp/dc_smoke.json
"""
import argparse
import json
import statistics
import sys
import time
from datetime import datetime

import eval_common as ec

INSTRUCTION = ('Work it out step by step, then end with the sentence "The answer is N." '
               "where N is a whole number.")
DIGITS = "0123456789"


# ---- a port of alignment/answer_extractor.cc's last_number -------------------------------


def _digit_run(s, i):
    j = i
    while j < len(s) and s[j] in DIGITS:
        j += 1
    return j - i


def _scan_unsigned(s, i):
    j = i
    head = _digit_run(s, j)
    j += head
    if 1 <= head <= 3:
        while j + 3 < len(s) and s[j] == "," and _digit_run(s, j + 1) == 3:
            j += 4
    if j + 1 < len(s) and s[j] == "." and s[j + 1] in DIGITS:
        j += 1 + _digit_run(s, j + 1)
    return j - i


def _is_alnum(c):
    return c in DIGITS or "a" <= c <= "z" or "A" <= c <= "Z"


def _signed_start(s, start):
    if start == 0 or s[start - 1] not in "-+":
        return start
    if start >= 2 and (_is_alnum(s[start - 2]) or s[start - 2] == "."):
        return start
    return start - 1


def normalize_number(literal):
    negative = False
    if literal[:1] in ("-", "+"):
        negative, literal = literal[0] == "-", literal[1:]
    if not literal or not (literal[0] in DIGITS or literal[0] == "."):
        return None
    if _scan_unsigned(literal, 0) != len(literal):
        return None
    integer, _, fraction = literal.partition(".")
    integer = integer.replace(",", "").lstrip("0") or "0"
    fraction = fraction.rstrip("0")
    out = integer + ("." + fraction if fraction else "")
    return "-" + out if negative and out != "0" else out


def last_number(text):
    last, i, n = None, 0, len(text)
    while i < n:
        digit = text[i] in DIGITS
        dot_start = (text[i] == "." and i + 1 < n and text[i + 1] in DIGITS and
                     (i == 0 or (text[i - 1] not in DIGITS and text[i - 1] != ".")))
        if not digit and not dot_start:
            i += 1
            continue
        length = _scan_unsigned(text, i)
        begin = _signed_start(text, i)
        last = text[begin:i + length]
        i += length
    return normalize_number(last) if last else None


# ---- one problem ---------------------------------------------------------------------------


def voted_answer(report, text, answer_spec):
    """(voted answer or None, whether the text's answer disagrees with the votes)."""
    votes = {k[len("votes:"):]: v for k, v in report.items() if k.startswith("votes:")}
    from_text = last_number(text) if answer_spec == "last_number" else None
    if not votes:
        return None, from_text is not None
    top = max(votes.values())
    leaders = sorted(a for a, w in votes.items() if w >= top - 1e-9 * max(1.0, abs(top)))
    if from_text in leaders:
        return from_text, False
    # Not last_number, or a disagreement: the heaviest answer (a tie: the first by name).
    return leaders[0], answer_spec == "last_number"


def preemptions(client):
    text = client.get_text("/metrics")
    return (ec.metric_values(text, "num_preemptions_total") or
            ec.metric_values(text, "num_preemptions"))


def run_method(client, kv, question, seed, alignment, args):
    before = preemptions(client)
    kv.reset()
    out, seconds = client.chat(f"{question}\n{INSTRUCTION}", max_tokens=args.max_tokens,
                               temperature=args.temperature, seed=seed, alignment=alignment)
    peak = kv.peak()
    after = preemptions(client)
    rep = out["alignment"]["report"]
    text = out["choices"][0]["message"]["content"] or ""
    voted, mismatch = voted_answer(rep, text, args.answer)
    return {"report": rep, "text": text, "voted": voted, "vote_mismatch": mismatch,
            "tokens": rep.get("tokens_generated"), "wall_s": seconds, "kv_peak_usage": peak,
            "preemptions": (after[0] - before[0]) if before and after else None}


def methods(args):
    out = {"full": {"policy": "self_consistency",
                    "params": {"n": args.traces, "rule": "none", "answer": args.answer}}}
    for p in args.percentiles:
        params = {"n": args.traces, "n_init": args.n_init, "window": args.window,
                  "percentile": p, "top_k": args.top_k, "answer": args.answer}
        name = f"deepconf_p{p:g}"
        if args.consensus is not None:
            params["consensus"] = args.consensus
            name += f"_c{args.consensus:g}"
        out[name] = {"policy": "deepconf", "params": params}
    return out


def run_problem(client, kv, index, row, args):
    seed = args.seed + index
    truth = normalize_number(str(row["answer"]))
    rec = {"id": row["id"], "seed": seed, "answer": truth, "methods": {}}
    for name, alignment in methods(args).items():
        if name == "full" and row["id"] in args.full_records:
            rec["methods"]["full"] = args.full_records[row["id"]]  # --full-from
            continue
        m = run_method(client, kv, row["question"], seed, alignment, args)
        m["correct"] = m["voted"] == truth
        rec["methods"][name] = m
    full = rec["methods"]["full"]
    rec["coverage"] = any(k == f"votes:{truth}" for k in full["report"])
    for name, m in rec["methods"].items():
        if name != "full":
            m["agrees_with_full"] = m["voted"] == full["voted"]
            m["tokens_saved_vs_full"] = (1 - m["tokens"] / full["tokens"]
                                         if m["tokens"] is not None and full["tokens"] else None)
    return rec


# ---- summary -------------------------------------------------------------------------------


def mean(values):
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def summarize(records, args):
    ok = [r for r in records if "error" not in r]
    summary = {"problems": len(ok), "errors": len(records) - len(ok),
               "coverage": mean([float(r["coverage"]) for r in ok])}
    full_tokens = sum(r["methods"]["full"]["tokens"] or 0 for r in ok)
    for name in methods(args):
        ms = [r["methods"][name] for r in ok]
        rep = lambda key: [m["report"].get(key) for m in ms]
        s = {"accuracy": mean([float(m["correct"]) for m in ms]),
             "correct": sum(m["correct"] for m in ms),
             "no_answer": sum(m["voted"] is None for m in ms),
             "vote_mismatches": sum(m["vote_mismatch"] for m in ms),
             "tokens_generated": sum(m["tokens"] or 0 for m in ms),
             "mean_tokens": mean([m["tokens"] for m in ms]),
             "wall_s": sum(m["wall_s"] for m in ms),
             "mean_kv_peak_usage": mean([m["kv_peak_usage"] for m in ms]),
             "preemptions": sum(m["preemptions"] or 0 for m in ms)}
        if name != "full":
            s.update(tokens_saved_vs_full=1 - s["tokens_generated"] / full_tokens
                     if full_tokens else None,
                     mean_tokens_saved_vs_full=mean([m["tokens_saved_vs_full"] for m in ms]),
                     agreement_with_full=mean([float(m["agrees_with_full"]) for m in ms]),
                     mean_traces_pruned=mean(rep("traces_pruned")),
                     mean_traces_voting=mean(rep("traces_voting")),
                     report_tokens_saved_upper_bound=sum(v or 0 for v in rep("tokens_saved")),
                     mean_threshold=mean(rep("threshold")))
        else:
            s.update(mean_samples_used=mean(rep("samples_used")),
                     stopped_early=sum(v or 0 for v in rep("stopped_early")))
        summary[name] = s
    return summary


def print_table(summary, names):
    print(f"== deepconf vs full self-consistency ({summary['problems']} problems, "
          f"{summary['errors']} errors; coverage {ec.fmt(summary['coverage'])}) ==")
    keys = ["accuracy", "correct", "no_answer", "vote_mismatches", "agreement_with_full",
            "tokens_generated", "mean_tokens", "tokens_saved_vs_full",
            "mean_tokens_saved_vs_full", "report_tokens_saved_upper_bound",
            "mean_traces_pruned", "mean_traces_voting", "mean_threshold", "mean_samples_used",
            "stopped_early", "wall_s", "mean_kv_peak_usage", "preemptions"]
    print(f"  {'':<34}" + "".join(f"{n:>16}" for n in names))
    for k in keys:
        if any(k in summary[n] for n in names):
            print(f"  {k.replace('_', ' '):<34}" +
                  "".join(f"{ec.fmt(summary[n].get(k)):>16}" for n in names))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("--problems", default=str(ec.DATA / "word_problems.jsonl"))
    ap.add_argument("--num-problems", type=int, default=50)
    ap.add_argument("--traces", type=int, default=64, help="N: traces of every method")
    ap.add_argument("--n-init", type=int, default=16, help="deepconf warm-up traces")
    ap.add_argument("--window", type=int, default=32, help="deepconf group window, tokens")
    ap.add_argument("--consensus", type=float, default=None,
                    help="deepconf's early stop at consensus tau (e.g. 0.95); unset: off")
    ap.add_argument("--full-from", default=None,
                    help="reuse the full self-consistency records of an earlier results JSON "
                         "made with the same problems, seeds, traces, max_tokens and "
                         "temperature (its token counts are a function of the seeds)")
    ap.add_argument("--percentiles", default="90,10",
                    help="deepconf percentiles: 90 = DeepConf-low, 10 = DeepConf-high")
    ap.add_argument("--top-k", type=int, default=20, help="deepconf logprobs per token")
    ap.add_argument("--answer", default="last_number",
                    help="answer extractor of both policies (last_number is re-checked here)")
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--kv-poll", type=float, default=0.5,
                    help="seconds between /metrics polls for peak KV usage (0: off)")
    ec.add_server_args(ap, kv_cache_gib=2.0)
    ec.add_run_args(ap, "deepconf_results.json")
    args = ap.parse_args()
    args.percentiles = [float(p) for p in args.percentiles.split(",") if p.strip()]
    args.full_records = {}
    if args.full_from:
        with open(args.full_from) as f:
            earlier = json.load(f)
        for r in earlier["records"]:
            if "error" not in r and r.get("seed") is not None:
                args.full_records[r["id"]] = r["methods"]["full"]
    rows = ec.spread(ec.load_word_problems(args.problems), args.num_problems)
    names = list(methods(args))

    server = ec.Server(args)
    started = time.perf_counter()
    kv = ec.KvPeakSampler(server.client, args.kv_poll)
    try:
        client = server.client
        settings = {"problems": args.problems.rsplit("/", 1)[-1], "methods": methods(args),
                    "max_tokens": args.max_tokens, "temperature": args.temperature,
                    "seed": args.seed, "model": client.model, "instruction": INSTRUCTION}
        ckpt = ec.Checkpoint(args.out, settings, args.resume)
        records, failures = [], 0
        for done, (index, row) in enumerate(rows, 1):
            if row["id"] in ckpt.done:
                records.append(ckpt.done[row["id"]])
                continue
            t0 = time.perf_counter()
            try:
                rec = run_problem(client, kv, index, row, args)
                failures = 0
            except ec.EvalError as e:
                rec, failures = {"id": row["id"], "error": str(e)}, failures + 1
                if failures >= 3:
                    raise SystemExit(f"3 failures in a row, last: {e}")
            records.append(ckpt.add(row["id"], rec))
            if "error" in rec:
                ec.progress(f"{done}/{len(rows)} {row['id']}: ERROR {rec['error']}")
                continue
            parts = [f"{n} {m['voted']}{'*' if m['correct'] else ''} {m['tokens']} tok"
                     for n, m in rec["methods"].items()]
            ec.progress(f"{done}/{len(rows)} {row['id']} (key {rec['answer']}): "
                        + "; ".join(parts) + f" ({time.perf_counter() - t0:.1f} s)")
        summary = summarize(records, args)
        metrics = client.get_text("/metrics")
    finally:
        kv.close()
        server.close()
    wall = time.perf_counter() - started
    print_table(summary, names)
    lines = ec.policy_metric_lines(metrics)
    print(f"  run wall s {wall:.1f}")
    print("  /metrics lines about policies: " + ("none" if not lines else ""))
    for line in lines:
        print("    " + line)
    ec.write_results(args.out, {
        "script": "benchmarks/deepconf_eval.py", "argv": sys.argv[1:],
        "date": datetime.now().isoformat(timespec="seconds"), "server": server.info,
        "settings": {k: v for k, v in vars(args).items() if k != "full_records"}, "wall_s": wall, "summary": summary,
        "policy_metric_lines": lines, "records": records})


if __name__ == "__main__":
    main()
