#!/usr/bin/env python3
"""Online serving benchmark for OpenAI-compatible servers, after `vllm bench serve`.

Standard library only (asyncio HTTP/1.1 with keep-alive, SSE read by hand), Python 3.9+:

  python3 benchmarks/serve_bench.py [--base-url http://127.0.0.1:8000] [--model NAME]
      [--endpoint completions|chat] (--num-prompts N | --duration S) [--max-concurrency C]
      [--request-rate R|inf] [--input-len 128 --output-len 32 --range-ratio 0.0]
      [--prompt-format auto|ids|text | --dataset FILE.jsonl] [--server-pid PID]
      [--result-json PATH --label TEXT]

Load: Poisson arrivals at --request-rate R req/s (inf: all at once), at most
--max-concurrency C in flight (rate inf + C = C closed-loop clients); --duration S
issues for S seconds, cycling the --num-prompts pool, then waits for those in flight.
Prompts (lengths uniform in [L*(1-r), L*(1+r)]): ids = random token ids in [100, vocab)
sent as id lists, exact (completions' default); text = common English words trimmed to
the length the server's /tokenize (vLLM, alignserve) or /extras/tokenize/count
(llama-cpp-python) reports (chat, servers without id prompts); --dataset = JSONL of
{"prompt": text[, "output_len": n]}. Exact output lengths: "ignore_eos" (vLLM,
alignserve) or --ban-tokens 0,1,2 (logit_bias -100 on SmolLM2's end-of-text ids).
Metrics as vLLM's: TTFT, TPOT (excl. 1st token), ITL (gaps between content chunks),
E2E latency; output tokens from the include_usage chunk, else one per content chunk.
--server-pid samples the server's VmRSS each second. Progress: stderr; table: stdout.
"""
import argparse
import asyncio
import json
import math
import random
import ssl
import statistics
import sys
import time
import urllib.parse
from datetime import datetime

WORDS = ("the of and to in is was for on that with as by at from his her it an be this are have "
         "not which or had but one were all they their has been there can who more when will "
         "would time other into some what new its out two also first after people only over "
         "could year may most these then made state world great long many city water old work "
         "life school house game music small high light night story river place family number "
         "power part line end hand side point group money day way man woman child book eye word "
         "home road sound market table garden window paper").split()


class Response:
    """One HTTP/1.1 response; the body is read once through chunks()."""

    def __init__(self, http, reader, writer, status, headers, reusable):
        self.http, self.reader, self.writer = http, reader, writer
        self.status, self.headers, self.reusable, self.complete = status, headers, reusable, False

    async def chunks(self):
        r = self.reader
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            while True:
                line = await r.readline()
                if not line:
                    raise ConnectionError("connection closed inside a chunked body")
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while (await r.readline()) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                yield (await r.readexactly(size + 2))[:-2]  # data, CRLF
        elif "content-length" in self.headers:
            size = int(self.headers["content-length"])
            if size:
                yield await r.readexactly(size)
        else:  # delimited by close
            self.reusable = False
            while data := await r.read(65536):
                yield data
        self.complete = True

    async def read(self):
        return b"".join([c async for c in self.chunks()])

    def release(self):
        """Back to the keep-alive pool when fully read, else closed."""
        if self.complete and self.reusable:
            self.http.idle.append((self.reader, self.writer))
        else:
            self.writer.close()


class Http:
    """A keep-alive connection pool to one origin; not thread-safe (one event loop)."""

    def __init__(self, base_url, api_key):
        u = urllib.parse.urlsplit(base_url)
        self.host, self.tls = u.hostname, u.scheme == "https"
        self.port = u.port or (443 if self.tls else 80)
        self.netloc, self.prefix, self.api_key = u.netloc, u.path.rstrip("/"), api_key
        self.idle = []

    async def request(self, method, path, obj=None):
        body = json.dumps(obj).encode() if obj is not None else b""
        head = (f"{method} {self.prefix}{path} HTTP/1.1\r\nHost: {self.netloc}\r\nAccept: */*\r\n"
                f"Connection: keep-alive\r\nContent-Length: {len(body)}\r\n"
                + ("Content-Type: application/json\r\n" if obj is not None else "")
                + (f"Authorization: Bearer {self.api_key}\r\n" if self.api_key else ""))
        data = head.encode() + b"\r\n" + body
        while True:  # an idle connection the server has closed meanwhile gets one retry
            fresh = not self.idle
            if fresh:
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, ssl=ssl.create_default_context() if self.tls else None,
                    limit=1 << 20)
            else:
                reader, writer = self.idle.pop()
            try:
                writer.write(data)
                await writer.drain()
                line = await reader.readline()
                if not line:
                    raise ConnectionError("server closed the connection without a response")
                break
            except BaseException as e:  # cancelled by --timeout too: close, don't leak
                writer.close()
                if fresh or not isinstance(e, (ConnectionError, OSError)):
                    raise
        version, status = line.split(None, 2)[:2]
        headers = {}
        while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
            k, _, v = h.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        conn = headers.get("connection", "").lower()
        reusable = conn != "close" and (version != b"HTTP/1.0" or conn == "keep-alive")
        return Response(self, reader, writer, int(status), headers, reusable)

    async def json(self, method, path, obj=None):
        resp = await self.request(method, path, obj)
        try:
            body = await resp.read()
        finally:
            resp.release()
        text = body.decode(errors="replace")
        return resp.status, (json.loads(text) if resp.status == 200 else text)


async def sse_events(resp):
    """Yields each server-sent event's data field (lines joined), in order."""
    buf, data = b"", []
    async for piece in resp.chunks():
        buf += piece
        while (i := buf.find(b"\n")) >= 0:
            line, buf = buf[:i].rstrip(b"\r"), buf[i + 1:]
            if not line:
                if data:
                    yield b"\n".join(data).decode()
                data = []
            elif line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
    if data:
        yield b"\n".join(data).decode()


class Bench:
    """Prompts, requests and their timing; lives on one event loop."""

    def __init__(self, args):
        self.args, self.http = args, Http(args.base_url, args.api_key)
        self.count_path = None  # which tokenize route this server has
        self.done = self.failed = self.inflight = self.peak = self.out_tokens = 0
        self.rss = []  # (seconds since start, KiB)
        self.window_chunks = None  # content chunks seen when --duration ran out

    async def count_tokens(self, text):
        routes = [("/tokenize", {"model": self.args.model, "prompt": text}),
                  ("/extras/tokenize/count", {"input": text})]
        for path, obj in routes:
            if self.count_path in (None, path):
                status, body = await self.http.json("POST", path, obj)
                if status == 200:
                    self.count_path = path
                    return body["count"]
        raise SystemExit(f"--prompt-format text needs the server's /tokenize or "
                         f"/extras/tokenize/count: last answer {status} {body[:200]}")

    async def text_prompt(self, rng, n):
        words = [rng.choice(WORDS) for _ in range(n)]
        count = await self.count_tokens(" ".join(words))
        for _ in range(8):  # common words are one token each, so this settles quickly
            if count == n:
                break
            words += [rng.choice(WORDS) for _ in range(n - count)]  # when short
            del words[max(1, len(words) - max(0, count - n)):]  # when long
            count = await self.count_tokens(" ".join(words))
        return " ".join(words), count

    async def make_prompts(self):
        """[(prompt: ids or text, input tokens, output tokens)] from seeded randomness."""
        a, rng, n = self.args, random.Random(self.args.seed), self.args.num_prompts

        def lengths(mean):
            lo = max(1, int(mean * (1 - a.range_ratio)))
            hi = max(lo, int(mean * (1 + a.range_ratio)))
            return [rng.randint(lo, hi) for _ in range(n)]

        ins, outs = lengths(a.input_len), lengths(a.output_len)
        if a.dataset:
            with open(a.dataset) as f:
                rows = [json.loads(line) for line in f if line.strip()][:n]
            return [(r["prompt"], await self.count_tokens(r["prompt"]),
                     int(r.get("output_len", outs[i]))) for i, r in enumerate(rows)]
        if a.prompt_format == "ids":
            return [([rng.randrange(100, a.vocab_size) for _ in range(ins[i])], ins[i], outs[i])
                    for i in range(n)]
        return [(*await self.text_prompt(rng, ins[i]), outs[i]) for i in range(n)]

    def payload(self, prompt, max_tokens):
        a = self.args
        body = {"model": a.model, "max_tokens": max_tokens, "temperature": a.temperature,
                "stream": True, "stream_options": {"include_usage": True}}
        if a.endpoint == "chat":
            body.update(messages=[{"role": "user", "content": prompt}],
                        max_completion_tokens=max_tokens)
        else:
            body["prompt"] = prompt
        if a.ignore_eos:
            body["ignore_eos"] = True
        if a.ban_tokens:
            body["logit_bias"] = {str(t): -100 for t in a.ban_tokens}
        return {**body, **a.extra_body}

    async def stream_one(self, prompt, max_tokens, out):
        path = "/v1/chat/completions" if self.args.endpoint == "chat" else "/v1/completions"
        start = last = time.perf_counter()
        resp = await self.http.request("POST", path, self.payload(prompt, max_tokens))
        try:
            if resp.status != 200:
                body = (await resp.read()).decode(errors="replace")
                out["error"] = f"HTTP {resp.status}: {body[:500]}"
                return
            chunks, usage, finished = 0, None, False
            async for data in sse_events(resp):
                now = time.perf_counter()
                if data.strip() == "[DONE]":
                    finished = True
                    continue
                try:
                    obj = json.loads(data)
                except ValueError:
                    raise ValueError(f"not JSON in the stream: {data[:300]!r}") from None
                if obj.get("error"):
                    out["error"] = "in-stream error: " + json.dumps(obj["error"])[:500]
                usage = obj.get("usage") or usage
                for ch in obj.get("choices") or []:
                    text = ch["text"] if "text" in ch else (ch.get("delta") or {}).get("content")
                    if text:
                        if chunks:
                            out["itl"].append(now - last)
                        else:
                            out["ttft"] = now - start
                        last, chunks = now, chunks + 1
                        self.out_tokens += 1  # progress only: chunks, not usage
            out["latency"] = time.perf_counter() - start
            out["output_len"] = usage["completion_tokens"] if usage else chunks
            if usage:
                out["prompt_len"] = usage.get("prompt_tokens", out["prompt_len"])
            if not finished and not out["error"]:
                out["error"] = "stream ended without data: [DONE]"
            out["success"] = not out["error"]
        finally:
            resp.release()

    async def run_one(self, prompt, input_len, max_tokens):
        out = {"success": False, "prompt_len": input_len, "output_len": 0, "ttft": 0.0,
               "itl": [], "latency": 0.0, "error": "", "max_tokens": max_tokens}
        self.inflight += 1
        self.peak = max(self.peak, self.inflight)
        try:
            await asyncio.wait_for(self.stream_one(prompt, max_tokens, out), self.args.timeout)
        except asyncio.TimeoutError:
            out["error"] = f"timeout after {self.args.timeout} s"
        except Exception as e:  # a failed request is a result, not a crash
            out["error"] = out["error"] or f"{type(e).__name__}: {e}"
        self.inflight, self.done = self.inflight - 1, self.done + out["success"]
        self.failed += not out["success"]
        return out

    async def drive(self, prompts):
        a = self.args
        results, tasks = [], set()
        sem = asyncio.Semaphore(a.max_concurrency) if a.max_concurrency else None
        rng = random.Random(a.seed + 1)
        start = next_t = time.perf_counter()
        deadline = start + a.duration if a.duration else None
        if deadline:  # chunks streamed inside the window, before the drain of those in flight
            asyncio.get_running_loop().call_later(
                a.duration, lambda: setattr(self, "window_chunks", self.out_tokens))

        async def one(p):
            try:
                results.append(await self.run_one(*p))
            finally:
                if sem:
                    sem.release()

        i = 0
        while deadline is not None or i < len(prompts):
            if a.request_rate != math.inf:
                next_t += rng.expovariate(a.request_rate)
                await asyncio.sleep(max(0.0, next_t - time.perf_counter()))
            if sem:
                await sem.acquire()
            if deadline is not None and time.perf_counter() >= deadline:
                break
            tasks.add(t := asyncio.ensure_future(one(prompts[i % len(prompts)])))
            t.add_done_callback(tasks.discard)
            i += 1
        await asyncio.gather(*list(tasks))
        return results, time.perf_counter() - start

    def read_rss(self, t0):
        """Appends (seconds, VmRSS KiB); False once the process is gone."""
        try:
            with open(f"/proc/{self.args.server_pid}/status") as f:
                kib = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        except (OSError, StopIteration):
            return False  # the server exited: its last sample stands
        self.rss.append((round(time.perf_counter() - t0, 1), kib))
        return True

    async def sample_rss(self, t0):
        while self.read_rss(t0):
            await asyncio.sleep(1.0)

    async def progress(self, t0):
        while True:
            await asyncio.sleep(self.args.progress_interval)
            el = time.perf_counter() - t0
            rss = f" rss={self.rss[-1][1] / 1024:.0f}MiB" if self.rss else ""
            print(f"[{el:7.1f}s] ok={self.done} failed={self.failed} in_flight={self.inflight} "
                  f"out_tok/s={self.out_tokens / el:.1f}{rss}", file=sys.stderr, flush=True)


def stats(values, scale=1000.0):
    """mean/median/std/p90/p99 (numpy's linear interpolation), scaled to ms."""
    v = sorted(x * scale for x in values)

    def pct(q):
        pos = q / 100 * (len(v) - 1)
        lo = int(pos)
        return v[lo] + (v[min(lo + 1, len(v) - 1)] - v[lo]) * (pos - lo) if v else 0.0

    return {"mean": statistics.fmean(v) if v else 0.0, "median": pct(50),
            "std": statistics.pstdev(v) if v else 0.0, "p90": pct(90), "p99": pct(99)}


def summarize(args, results, duration, bench):
    ok = [r for r in results if r["success"]]
    tin, tout = sum(r["prompt_len"] for r in ok), sum(r["output_len"] for r in ok)
    tpots = [(r["latency"] - r["ttft"]) / (r["output_len"] - 1) for r in ok if r["output_len"] > 1]
    res = {"date": datetime.now().strftime("%Y%m%d-%H%M%S"), "label": args.label,
           "base_url": args.base_url, "endpoint": args.endpoint, "model_id": args.model,
           "prompt_format": "dataset" if args.dataset else args.prompt_format,
           "input_len": args.input_len, "output_len": args.output_len,
           "range_ratio": args.range_ratio, "num_prompts": args.num_prompts,
           "request_rate": "inf" if args.request_rate == math.inf else args.request_rate,
           "max_concurrency": args.max_concurrency, "duration_target_s": args.duration,
           "duration": duration, "completed": len(ok), "failed": len(results) - len(ok),
           "peak_concurrent_requests": bench.peak,
           "total_input_tokens": tin, "total_output_tokens": tout,
           "request_throughput": len(ok) / duration, "output_throughput": tout / duration,
           "total_token_throughput": (tin + tout) / duration,
           "window_output_throughput": (bench.window_chunks / args.duration
                                        if bench.window_chunks is not None else None),
           "short_outputs": sum(r["output_len"] < r["max_tokens"] for r in ok),
           "error_kinds": sorted({r["error"] for r in results if r["error"]})[:10]}
    for name, vals in (("ttft", [r["ttft"] for r in ok]), ("tpot", tpots),
                       ("itl", [x for r in ok for x in r["itl"]]),
                       ("e2el", [r["latency"] for r in ok])):
        for k, v in stats(vals).items():
            res[f"{k}_{name}_ms"] = v
    if args.server_pid:
        kib = [k for _, k in bench.rss] or [None]
        res["server_rss"] = {"pid": args.server_pid, "start_kib": kib[0], "end_kib": kib[-1],
                             "max_kib": max(kib) if kib[0] else None, "samples": bench.rss}
    if args.save_detailed:  # per request, named as vLLM's JSON names them
        for k, name in (("prompt_len", "input_lens"), ("output_len", "output_lens"),
                        ("ttft", "ttfts"), ("itl", "itls"), ("latency", "e2els"),
                        ("error", "errors")):
            res[name] = [r[k] for r in results]
    return res


def print_table(res):
    def line(k, v):
        print(f"{k:<40} {v:<10.2f}" if isinstance(v, float) else f"{k:<40} {v:<10}")

    rows = [("Successful requests:", "completed"), ("Failed requests:", "failed"),
            ("Maximum request concurrency:", "max_concurrency"),
            ("Request rate configured (RPS):", "request_rate"),
            ("Benchmark duration (s):", "duration"), ("Total input tokens:", "total_input_tokens"),
            ("Total generated tokens:", "total_output_tokens"),
            ("Request throughput (req/s):", "request_throughput"),
            ("Output token throughput (tok/s):", "output_throughput"),
            ("Total Token throughput (tok/s):", "total_token_throughput"),
            ("Output chunk/s within --duration:", "window_output_throughput"),
            ("Peak concurrent requests:", "peak_concurrent_requests")]
    print("{s:{c}^{n}}".format(s=" Serving Benchmark Result ", n=50, c="="))
    for label, key in rows:
        if res[key] is not None:
            line(label, res[key])
    for key, title, name in (("ttft", "Time to First Token", "TTFT"),
                             ("tpot", "Time per Output Token (excl. 1st token)", "TPOT"),
                             ("itl", "Inter-token Latency", "ITL"),
                             ("e2el", "End-to-end Latency", "E2EL")):
        print("{s:{c}^{n}}".format(s=title, n=50, c="-"))
        for stat, label in (("mean", "Mean"), ("median", "Median"), ("p90", "P90"), ("p99", "P99")):
            line(f"{label} {name} (ms):", res[f"{stat}_{key}_ms"])
    if res.get("server_rss", {}).get("start_kib"):
        print("{s:{c}^{n}}".format(s="Server memory (VmRSS)", n=50, c="-"))
        for k in ("start", "max", "end"):
            line(f"{k.capitalize()} RSS (MiB):", res["server_rss"][f"{k}_kib"] / 1024)
    if res["short_outputs"]:
        line("Requests short of max_tokens:", res["short_outputs"])
    print("=" * 50)
    for e in res["error_kinds"]:
        print("error:", e)


async def amain(args):
    bench = Bench(args)
    if not args.model:
        status, body = await bench.http.json("GET", "/v1/models")
        if status != 200:
            raise SystemExit(f"GET /v1/models: {status} {body}")
        args.model = body["data"][0]["id"]
    print(f"model {args.model}; preparing {args.num_prompts} prompts "
          f"({args.dataset or args.prompt_format})", file=sys.stderr)
    prompts = await bench.make_prompts()
    for i in range(args.warmup):  # as vLLM's initial test run: fail fast on a bad config
        p = prompts[i % len(prompts)]
        out = await bench.run_one(*p)
        if not out["success"]:
            raise SystemExit(f"warm-up request failed: {out['error']}\nrequest: "
                             f"{json.dumps(bench.payload(p[0], p[2]))[:1000]}")
    bench.done = bench.failed = bench.out_tokens = bench.peak = 0
    t0 = time.perf_counter()
    side = [asyncio.ensure_future(bench.progress(t0))]
    if args.server_pid:
        side.append(asyncio.ensure_future(bench.sample_rss(t0)))
    await asyncio.sleep(0)  # the first RSS sample comes before the load
    results, duration = await bench.drive(prompts)
    for t in side:
        t.cancel()
    if args.server_pid:
        bench.read_rss(t0)  # and one after it
    res = summarize(args, results, duration, bench)
    print_table(res)
    if args.result_json:
        with open(args.result_json, "w") as f:
            json.dump(res, f, indent=1)
        print(f"wrote {args.result_json}", file=sys.stderr)
    return 0 if res["failed"] == 0 else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("--base-url", default="http://127.0.0.1:8000")
    ap.add_argument("--model", default=None, help="default: the first id of GET /v1/models")
    ap.add_argument("--endpoint", choices=["completions", "chat"], default="completions")
    ap.add_argument("--num-prompts", type=int, default=1000,
                    help="requests to send, or the prompt pool cycled through with --duration")
    ap.add_argument("--duration", type=float, default=None, help="keep issuing for S seconds")
    ap.add_argument("--max-concurrency", type=int, default=None)
    ap.add_argument("--request-rate", type=float, default=math.inf, help="Poisson req/s; inf")
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=32)
    ap.add_argument("--range-ratio", type=float, default=0.0)
    ap.add_argument("--prompt-format", choices=["auto", "ids", "text"], default="auto")
    ap.add_argument("--dataset", default=None, help='JSONL of {"prompt": text}')
    ap.add_argument("--vocab-size", type=int, default=49152)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--ignore-eos", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--ban-tokens", default="", help="comma-separated ids given logit_bias -100")
    ap.add_argument("--extra-body", default="{}", help="JSON merged into every request")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per request")
    ap.add_argument("--warmup", type=int, default=1, help="untimed requests first")
    ap.add_argument("--server-pid", type=int, default=None, help="sample its VmRSS each second")
    ap.add_argument("--progress-interval", type=float, default=5.0)
    ap.add_argument("--result-json", default=None)
    ap.add_argument("--label", default=None)
    ap.add_argument("--save-detailed", action="store_true", help="per-request lists in the JSON")
    args = ap.parse_args()
    args.ban_tokens = [int(t) for t in args.ban_tokens.split(",") if t.strip()]
    args.extra_body = json.loads(args.extra_body)
    if args.prompt_format == "auto":
        args.prompt_format = "text" if args.endpoint == "chat" else "ids"
    if args.endpoint == "chat" and args.prompt_format == "ids":
        ap.error("chat needs text prompts (--prompt-format text or --dataset)")
    if args.duration and args.request_rate == math.inf and not args.max_concurrency:
        ap.error("--duration needs --max-concurrency or a finite --request-rate")
    if args.num_prompts < 1:
        ap.error("--num-prompts must be >= 1")
    try:
        sys.exit(asyncio.run(amain(args)))
    except OSError as e:
        sys.exit(f"serve_bench: {args.base_url}: {e}")


if __name__ == "__main__":
    main()
