"""Shared pieces of the alignment evaluations (benchmarks/alignment_quality_eval.py,
benchmarks/deepconf_eval.py): the server (started here or given by --url), a
small JSON client, the data sets, paired statistics without numpy, a resumable
checkpoint, progress lines on stderr. Standard library only, Python 3.9+.
"""
import hashlib
import json
import math
import os
import random
import re
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "benchmarks" / "data"
sys.path.insert(0, str(REPO / "tests" / "server"))
from serve_process import ServeProcess  # noqa: E402


class EvalError(RuntimeError):
    """A request the evaluation cannot go on without failed."""


class Client:
    """JSON over HTTP to one server; thread-safe (no shared connection)."""

    def __init__(self, base_url, model, timeout):
        self.base_url, self.model, self.timeout = base_url.rstrip("/"), model, timeout

    def post(self, path, body):
        """(parsed answer, seconds); EvalError on anything but 200."""
        req = urllib.request.Request(self.base_url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                out = json.loads(r.read())
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")[:600]
            raise EvalError(f"POST {path}: HTTP {e.code}: {text}") from None
        except (urllib.error.URLError, OSError) as e:
            raise EvalError(f"POST {path}: {e}") from None
        return out, time.perf_counter() - t0

    def get_text(self, path):
        with urllib.request.urlopen(self.base_url + path, timeout=60) as r:
            return r.read().decode(errors="replace")

    def chat(self, prompt, **fields):
        """One user message through /v1/chat/completions: (answer, seconds)."""
        body = {"model": self.model, "messages": [{"role": "user", "content": prompt}], **fields}
        return self.post("/v1/chat/completions", body)

    def tokenize(self, text):
        """Token ids as a completions prompt of `text` gets them (BOS as the tokenizer adds it)."""
        return self.post("/tokenize", {"model": self.model, "prompt": text})[0]["tokens"]


def add_server_args(ap, kv_cache_gib):
    g = ap.add_argument_group("server")
    g.add_argument("--url", default=None,
                   help="use a running server (e.g. http://127.0.0.1:8000) instead of starting one")
    g.add_argument("--binary", default=str(REPO / "build" / "alignserve"),
                   help="alignserve binary to start (default: build/alignserve)")
    g.add_argument("--model", default="default", help="--model of the started server")
    g.add_argument("--server-threads", type=int, default=None,
                   help="ALIGNSERVE_NUM_THREADS of the started server (default: inherited)")
    g.add_argument("--kv-cache-gib", type=float, default=kv_cache_gib,
                   help="--kv-cache-gib of the started server")
    g.add_argument("--timeout", type=float, default=1800.0, help="seconds per request")


def add_run_args(ap, out_default):
    g = ap.add_argument_group("run")
    g.add_argument("--seed", type=int, default=0,
                   help="base seed: item i of the data file is sent with seed + i")
    g.add_argument("--out", default=out_default, help="results JSON")
    g.add_argument("--resume", action="store_true",
                   help="reuse the records of OUT.partial.jsonl made with the same settings")


class Server:
    """The server under test: started here (and stopped by close) or given by --url."""

    def __init__(self, args, extra_flags=()):
        self.process = None
        if args.url:
            models = json.loads(urllib.request.urlopen(args.url.rstrip("/") + "/v1/models",
                                                       timeout=60).read())
            self.client = Client(args.url, models["data"][0]["id"], args.timeout)
            self.info = {"url": args.url, "model": self.client.model}
            return
        if not os.access(args.binary, os.X_OK):
            raise SystemExit(f"no executable server at {args.binary} (--binary, or --url)")
        if args.server_threads:
            os.environ["ALIGNSERVE_NUM_THREADS"] = str(args.server_threads)
        flags = ["--model", args.model, "--kv-cache-gib", str(args.kv_cache_gib), *extra_flags]
        progress(f"starting {args.binary} serve {' '.join(flags)}")
        self.process = ServeProcess(args.binary, flags)
        if not self.process.wait_ready():
            tail = self.process.log_tail()
            self.process.stop()
            raise SystemExit("the server did not become ready:\n" + tail)
        self.client = Client(self.process.url(""), self.process.model, args.timeout)
        commit = Path(args.binary).with_name("COMMIT")
        self.info = {"binary": args.binary, "model_flag": args.model, "model": self.process.model,
                     "kv_cache_gib": args.kv_cache_gib,
                     "num_threads": os.environ.get("ALIGNSERVE_NUM_THREADS"),
                     "commit": commit.read_text().strip() if commit.exists() else None,
                     "start_lines": [l for l in self.process.lines if "KV cache" in l or
                                     "loaded" in l]}

    def close(self):
        if self.process is not None:
            code = self.process.stop()
            progress(f"server stopped (exit code {code})")


def metric_values(text, suffix):
    """Values of the samples of /metrics whose name ends with `suffix` (any prefix)."""
    out = []
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name = re.split(r"[{ ]", line, 1)[0]
        if name.endswith(suffix):
            try:
                out.append(float(line.rsplit(" ", 1)[1]))
            except ValueError:
                pass
    return out


POLICY_METRIC = re.compile(r"polic|prun|judge|score|trace|vote|deepconf|consisten|best_of|args")


def policy_metric_lines(text):
    """/metrics lines (samples, HELP and TYPE) about policies, the server's name prefix
    ("alignserve:" / "alignserve_") not counted, so it cannot match by itself."""
    found = []
    for line in text.splitlines():
        body = line[2:] if line.startswith("# ") else line
        body = re.sub(r"^(HELP|TYPE) ", "", body)
        name = re.split(r"[{ ]", body, 1)[0]
        name = re.sub(r"^alignserve[:_]", "", name)
        if POLICY_METRIC.search(name):
            found.append(line)
    return found


class KvPeakSampler:
    """Polls /metrics for kv_cache_usage_perc in a thread; peak() since the last reset().
    Valid when one request at a time is in flight (the scripts send them one by one)."""

    def __init__(self, client, interval):
        self.client, self.interval = client, interval
        self._lock = threading.Lock()
        self._peak = None  # guarded by _lock
        self._stop = threading.Event()
        self._thread = None
        if interval > 0:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def _run(self):
        while not self._stop.wait(self.interval):
            try:
                values = metric_values(self.client.get_text("/metrics"), "kv_cache_usage_perc")
            except OSError:
                continue
            if values:
                with self._lock:
                    self._peak = max(values[0], self._peak if self._peak is not None else 0.0)

    def reset(self):
        with self._lock:
            self._peak = None

    def peak(self):
        with self._lock:
            return self._peak

    def close(self):
        self._stop.set()
        if self._thread:
            self._thread.join(5)


def load_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


ARITHMETIC = re.compile(r"^[0-9+\-*/() ]+$")


def load_word_problems(path):
    """Word problems, each answer checked against eval(its expression)."""
    rows = load_jsonl(path)
    for r in rows:
        if not ARITHMETIC.match(r["expression"]):
            raise SystemExit(f"{path}: {r['id']}: expression is not plain arithmetic")
        value = eval(r["expression"], {"__builtins__": {}})  # digits and operators only
        if value != r["answer"] or not isinstance(r["answer"], int):
            raise SystemExit(f"{path}: {r['id']}: {r['expression']} = {value}, "
                             f"the answer key says {r['answer']}")
    if len({r["id"] for r in rows}) != len(rows):
        raise SystemExit(f"{path}: duplicate ids")
    return rows


def spread(rows, n):
    """n items spread evenly over the file (every category of a grouped file appears);
    each keeps its index in the file, the base of its seed."""
    n = min(n, len(rows))
    picks = sorted({round(i * len(rows) / n) for i in range(n)})
    return [(i, rows[i]) for i in picks]


_T0 = time.perf_counter()


def progress(msg):
    print(f"[{time.perf_counter() - _T0:8.1f}s] {msg}", file=sys.stderr, flush=True)


class Checkpoint:
    """OUT.partial.jsonl: one record per finished item, appended as it ends, tagged with a
    hash of the settings that shape results, so --resume reuses only matching records
    (failed items are tried again)."""

    def __init__(self, out, settings, resume):
        self.path = Path(str(out) + ".partial.jsonl")
        self.tag = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        self.done = {}
        if resume and self.path.exists():
            for rec in load_jsonl(self.path):
                if rec.get("settings_tag") == self.tag and "error" not in rec:
                    self.done[rec["key"]] = rec
            progress(f"resume: {len(self.done)} records reused from {self.path}")
        elif self.path.exists():
            self.path.unlink()

    def add(self, key, record):
        record = dict(record, key=key, settings_tag=self.tag)
        self.done[key] = record
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        return record


def write_results(path, results):
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    progress(f"wrote {path}")


# ---- statistics (no numpy): paired differences -------------------------------------------


def _betacf(a, b, x):
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a, b, x):
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) +
                     a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1 - x) / b


def t_cdf(t, df):
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p, df):
    """Student t quantile by bisection (p in (0.5, 1))."""
    lo, hi = 0.0, 1e4
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


def bootstrap_ci(values, seed, resamples=10000, level=0.95):
    """Percentile bootstrap interval of the mean."""
    if len(values) < 2:
        return None
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    lo = means[int((1 - level) / 2 * resamples)]
    hi = means[min(resamples - 1, int((1 + level) / 2 * resamples))]
    return [lo, hi]


def paired_summary(plain, policy, seed, tie_tol=1e-9):
    """Means, paired difference (policy - plain) with a 95% t-interval and a bootstrap
    interval, and win / tie / loss counts of the policy against plain."""
    diffs = [b - a for a, b in zip(plain, policy)]
    n = len(diffs)
    out = {"n": n}
    if n == 0:
        return out
    mean = statistics.fmean(diffs)
    out.update(mean_plain=statistics.fmean(plain), mean_policy=statistics.fmean(policy),
               mean_diff=mean, sd_diff=statistics.stdev(diffs) if n > 1 else None)
    if n > 1:
        half = t_quantile(0.975, n - 1) * out["sd_diff"] / math.sqrt(n)
        out["t_ci95_diff"] = [mean - half, mean + half]
    out["bootstrap_ci95_diff"] = bootstrap_ci(diffs, seed)
    wins = sum(d > tie_tol for d in diffs)
    losses = sum(d < -tie_tol for d in diffs)
    out.update(wins=wins, ties=n - wins - losses, losses=losses, win_rate=wins / n,
               win_rate_without_ties=wins / (wins + losses) if wins + losses else None)
    return out


def fmt(x, digits=3):
    if x is None:
        return "-"
    if isinstance(x, list):
        return "[" + ", ".join(fmt(v, digits) for v in x) + "]"
    if isinstance(x, float):
        return f"{x:.2e}" if 0 < abs(x) < 10 ** -digits else f"{x:.{digits}f}"
    return str(x)
