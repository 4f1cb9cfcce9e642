// `alignserve bench-offline`: offline throughput and latency of the engine
// loop on any backend (--device), in the manner of vLLM's benchmark_throughput.
// N requests of random-token prompts (P tokens, ignore_eos, max_tokens O)
// are submitted to the AsyncEngine at once; one thread consumes every
// stream through the streams' notify hook. Latencies use the time the
// engine thread pushed each event, so the consumer's own pace does not
// count: TTFT = first token - submit, ITL = gaps between token events,
// E2E = last event - submit.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/async_engine.h"
#include "kernels/status_macros.h"
#include "server/cli_args.h"
#include "server/commands.h"
#include "server/engine_setup.h"

namespace alignserve {
namespace {

using Clock = std::chrono::steady_clock;

struct BenchFlags {
  EngineFlags engine;
  int num_requests = 8;
  int prompt_len = 128;
  int output_len = 32;
  int warmup = 1;  // untimed requests of the same shape run first
  std::optional<uint64_t> seed;
  // Sampling of every request (default greedy); each request seeds its
  // draws from --seed and its index.
  float temperature = 0.0f;
  float top_p = 1.0f;
  int top_k = 0;
};

// The requests' sampling parameters (ignore_eos, max_tokens tokens).
SamplingParams BenchParams(const BenchFlags& f, int max_tokens) {
  SamplingParams params;
  params.temperature = f.temperature;
  params.top_p = f.top_p;
  params.top_k = f.top_k;
  params.ignore_eos = true;
  params.max_tokens = max_tokens;
  return params;
}

// What one stream showed, in seconds from its submit.
struct RequestTiming {
  double ttft = -1;
  double e2e = -1;
  std::vector<double> itls;
  std::vector<double> token_times;  // each token's arrival, seconds from submit
  int tokens = 0;
  Clock::time_point last;
  bool done = false;
  absl::Status status;
};

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Linear interpolation between closest ranks; values must be sorted.
double Percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - static_cast<double>(lo));
}

void PrintLatency(const char* name, std::vector<double> v) {
  std::sort(v.begin(), v.end());
  double mean = 0;
  for (double x : v) mean += x;
  if (!v.empty()) mean /= static_cast<double>(v.size());
  std::printf("%-22s mean %8.2f  p50 %8.2f  p90 %8.2f  p99 %8.2f ms  (n=%zu)\n", name, mean * 1e3,
              Percentile(v, 0.5) * 1e3, Percentile(v, 0.9) * 1e3, Percentile(v, 0.99) * 1e3,
              v.size());
}

// The aggregate decode rate while every request is decoding: tokens that
// arrived after the last first token and up to the first finish, over that
// window (prefill excluded, as in "aggregate decode tokens per second").
void PrintDecodeRate(const std::vector<RequestTiming>& timings) {
  double window_begin = 0, window_end = std::numeric_limits<double>::infinity();
  for (const RequestTiming& t : timings) {
    window_begin = std::max(window_begin, t.ttft);
    window_end = std::min(window_end, t.e2e);
  }
  int64_t tokens = 0;
  for (const RequestTiming& t : timings) {
    for (double at : t.token_times) tokens += at > window_begin && at <= window_end;
  }
  if (tokens == 0 || !(window_end > window_begin)) {
    std::printf("decode (all requests running): no window (requests too short)\n");
    return;
  }
  std::printf("decode (all %zu requests running): %.1f output tokens/s over %.3f s\n",
              timings.size(), static_cast<double>(tokens) / (window_end - window_begin),
              window_end - window_begin);
}

absl::StatusOr<std::unique_ptr<AsyncEngine>> StartEngine(const BenchFlags& f, int* vocab) {
  EngineFlags engine_flags = f.engine;
  if (engine_flags.max_model_len == 0) engine_flags.max_model_len = f.prompt_len + f.output_len;
  // On the CPU, without --num-blocks: room for every request at once.
  const int per_seq = (f.prompt_len + f.output_len + f.engine.block_size - 1) / f.engine.block_size;
  ASSIGN_OR_RETURN(std::unique_ptr<LlmEngine> engine,
                   BuildEngine(engine_flags, per_seq * f.num_requests + 1, f.seed.value_or(0)));
  *vocab = engine->vocab_size();
  std::fprintf(stderr, "bench-offline: %d KV blocks of %d tokens\n",
               engine->config().scheduler.num_blocks, f.engine.block_size);
  return AsyncEngine::Create(std::move(engine));
}

// Records one event of a stream; returns true when it was the last.
bool Record(const StreamEvent& e, Clock::time_point submitted, RequestTiming& t) {
  if (!e.token_ids.empty()) {
    if (t.tokens == 0) {
      t.ttft = Seconds(submitted, e.emitted_at);
    } else {
      // A multi-token event spreads its gap over its tokens.
      const double gap = Seconds(t.last, e.emitted_at) / static_cast<double>(e.token_ids.size());
      for (size_t i = 0; i < e.token_ids.size(); ++i) t.itls.push_back(gap);
    }
    t.tokens += static_cast<int>(e.token_ids.size());
    t.last = e.emitted_at;
    t.token_times.insert(t.token_times.end(), e.token_ids.size(), Seconds(submitted, e.emitted_at));
  }
  if (!e.terminal()) return false;
  t.status = e.status;
  t.e2e = Seconds(submitted, e.emitted_at);
  t.done = true;
  return true;
}

// Runs `count` untimed requests one after another (kernels loaded, library
// heuristics and buffers warm) before the measured ones.
absl::Status WarmUp(AsyncEngine& engine, const BenchFlags& f, int vocab, int count) {
  const SamplingParams params = BenchParams(f, std::min(f.output_len, 8));
  for (int i = 0; i < count; ++i) {
    std::vector<int32_t> prompt(f.prompt_len);
    for (int t = 0; t < f.prompt_len; ++t) prompt[t] = 100 + (t * 7919 + i) % (vocab - 100);
    ASSIGN_OR_RETURN(std::shared_ptr<RequestStream> s, engine.Submit(std::move(prompt), params));
    while (true) {
      std::optional<StreamEvent> e = s->Next(std::chrono::milliseconds(60000));
      if (!e) return absl::DeadlineExceededError("bench-offline: warm-up request stalled");
      if (!e->status.ok()) return e->status;
      if (e->terminal()) break;
    }
  }
  return absl::OkStatus();
}

absl::Status Bench(const BenchFlags& f) {
  int vocab = 0;
  ASSIGN_OR_RETURN(std::unique_ptr<AsyncEngine> engine, StartEngine(f, &vocab));
  RETURN_IF_ERROR(WarmUp(*engine, f, vocab, f.warmup));
  std::mt19937_64 rng(f.seed.value_or(0));
  std::uniform_int_distribution<int32_t> pick(100, vocab - 1);
  std::vector<std::vector<int32_t>> prompts(f.num_requests, std::vector<int32_t>(f.prompt_len));
  for (auto& p : prompts) {
    for (int32_t& id : p) id = pick(rng);
  }
  const SamplingParams params = BenchParams(f, f.output_len);

  std::mutex mu;
  std::condition_variable cv;
  int64_t signals = 0;  // guarded by mu
  auto notify = [&] {
    std::lock_guard<std::mutex> lock(mu);
    ++signals;
    cv.notify_one();
  };
  std::vector<std::shared_ptr<RequestStream>> streams;
  const Clock::time_point start = Clock::now();
  for (auto& p : prompts) {
    ASSIGN_OR_RETURN(std::shared_ptr<RequestStream> s, engine->Submit(std::move(p), params));
    s->SetNotify(notify);
    streams.push_back(std::move(s));
  }
  std::vector<RequestTiming> timings(streams.size());
  size_t remaining = streams.size();
  int64_t seen = 0;
  while (remaining > 0) {
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return signals != seen; });
      seen = signals;
    }
    for (size_t i = 0; i < streams.size(); ++i) {
      while (!timings[i].done) {
        std::optional<StreamEvent> e = streams[i]->TryNext();
        if (!e) break;
        if (Record(*e, start, timings[i])) --remaining;
      }
    }
  }
  const double elapsed = Seconds(start, Clock::now());
  const AsyncEngineStats stats = engine->stats();
  engine->Shutdown(std::chrono::milliseconds(0));

  std::vector<double> ttft, itl, e2e;
  int64_t out_tokens = 0;
  for (const RequestTiming& t : timings) {
    if (!t.status.ok()) return t.status;
    if (t.ttft >= 0) ttft.push_back(t.ttft);
    itl.insert(itl.end(), t.itls.begin(), t.itls.end());
    e2e.push_back(t.e2e);
    out_tokens += t.tokens;
  }
  const int64_t in_tokens = static_cast<int64_t>(f.num_requests) * f.prompt_len;
  std::printf("requests %d, prompt %d tokens, output %d tokens, elapsed %.3f s\n", f.num_requests,
              f.prompt_len, f.output_len, elapsed);
  std::printf("throughput: %.2f requests/s, %.1f output tokens/s, %.1f total tokens/s\n",
              f.num_requests / elapsed, out_tokens / elapsed, (in_tokens + out_tokens) / elapsed);
  PrintLatency("TTFT", ttft);
  PrintLatency("inter-token latency", itl);
  PrintLatency("end-to-end latency", e2e);
  PrintDecodeRate(timings);
  std::printf("engine: %lld steps, %lld preemptions, prefix cache %lld/%lld blocks hit\n",
              static_cast<long long>(stats.num_steps),
              static_cast<long long>(stats.num_preemptions),
              static_cast<long long>(stats.prefix_cache_hit_blocks),
              static_cast<long long>(stats.prefix_cache_queried_blocks));
  return absl::OkStatus();
}

absl::Status CheckFlags(const BenchFlags& f) {
  RETURN_IF_ERROR(RequirePositive("num-requests", f.num_requests));
  RETURN_IF_ERROR(RequirePositive("prompt-len", f.prompt_len));
  RETURN_IF_ERROR(RequirePositive("output-len", f.output_len));
  if (f.warmup < 0) return absl::InvalidArgumentError("--warmup must be >= 0");
  if (absl::Status s = BenchParams(f, 1).Validate(std::numeric_limits<int>::max()); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--temperature / --top-p / --top-k: ", s.message()));
  }
  return CheckEngineFlags(f.engine);
}

}  // namespace

int RunBenchOffline(int argc, char** argv) {
  BenchFlags f;
  ArgParser args("alignserve bench-offline",
                 "Submits --num-requests random-token prompts at once to the engine (greedy "
                 "unless --temperature, ignore_eos, exactly --output-len tokens each) and reports "
                 "throughput and "
                 "TTFT / inter-token / end-to-end latency percentiles.");
  AddEngineFlags(args, &f.engine);
  args.AddInt("num-requests", &f.num_requests, "requests submitted at once");
  args.AddInt("prompt-len", &f.prompt_len, "prompt tokens per request (random ids)");
  args.AddInt("output-len", &f.output_len, "output tokens per request (max_tokens, ignore_eos)");
  args.AddInt("warmup", &f.warmup, "untimed requests of the same shape run first");
  args.AddOptionalUint64("seed", &f.seed, "seed of the random prompts and of the engine; unset: 0");
  args.AddFloat("temperature", &f.temperature, "sampling temperature of every request; 0: greedy");
  args.AddFloat("top-p", &f.top_p, "nucleus sampling: keep the top tokens holding this mass");
  args.AddInt("top-k", &f.top_k, "keep the k most likely tokens; 0: all");
  absl::Status s = args.Parse(argc, argv, 2);
  if (args.help_requested()) {
    std::fputs(args.Help().c_str(), stdout);
    return 0;
  }
  if (s.ok()) s = CheckFlags(f);
  if (!s.ok()) {
    std::fprintf(stderr, "alignserve bench-offline: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  s = Bench(f);
  if (!s.ok()) {
    std::fprintf(stderr, "alignserve bench-offline: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace alignserve
