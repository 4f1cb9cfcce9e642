// `alignserve bench-offline`: offline throughput and latency of the engine
// loop on the CPU backend, in the manner of vLLM's benchmark_throughput.
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
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/async_engine.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/status_macros.h"
#include "models/model_loader.h"
#include "server/cli_args.h"
#include "server/commands.h"

namespace alignserve {
namespace {

using Clock = std::chrono::steady_clock;

struct BenchFlags {
  std::string model = "default";
  int num_requests = 8;
  int prompt_len = 128;
  int output_len = 32;
  int max_num_seqs = 256;
  int max_num_batched_tokens = 2048;
  int num_blocks = 0;  // 0: enough for every request at once
  int block_size = 16;
  std::optional<uint64_t> seed;
};

// What one stream showed, in seconds from its submit.
struct RequestTiming {
  double ttft = -1;
  double e2e = -1;
  std::vector<double> itls;
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

absl::StatusOr<std::unique_ptr<AsyncEngine>> StartEngine(const BenchFlags& f, int* vocab) {
  auto backend = std::make_unique<CpuBackend>();
  ASSIGN_OR_RETURN(std::unique_ptr<LoadedModel> loaded, LoadModel(f.model, *backend));
  *vocab = loaded->model->config().vocab_size;
  const int per_seq = (f.prompt_len + f.output_len + f.block_size - 1) / f.block_size;
  EngineConfig config;
  config.scheduler.max_num_seqs = f.max_num_seqs;
  config.scheduler.max_num_batched_tokens = f.max_num_batched_tokens;
  config.scheduler.block_size = f.block_size;
  config.scheduler.num_blocks = f.num_blocks > 0 ? f.num_blocks : per_seq * f.num_requests + 1;
  config.scheduler.max_model_len = f.prompt_len + f.output_len;
  config.seed = f.seed.value_or(0);
  std::fprintf(stderr, "bench-offline: loaded %s; %d KV blocks of %d tokens\n",
               loaded->name.c_str(), config.scheduler.num_blocks, f.block_size);
  ASSIGN_OR_RETURN(std::unique_ptr<LlmEngine> engine,
                   LlmEngine::Create(std::move(backend), std::move(loaded), config));
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
  }
  if (!e.terminal()) return false;
  t.status = e.status;
  t.e2e = Seconds(submitted, e.emitted_at);
  t.done = true;
  return true;
}

absl::Status Bench(const BenchFlags& f) {
  int vocab = 0;
  ASSIGN_OR_RETURN(std::unique_ptr<AsyncEngine> engine, StartEngine(f, &vocab));
  std::mt19937_64 rng(f.seed.value_or(0));
  std::uniform_int_distribution<int32_t> pick(100, vocab - 1);
  std::vector<std::vector<int32_t>> prompts(f.num_requests, std::vector<int32_t>(f.prompt_len));
  for (auto& p : prompts) {
    for (int32_t& id : p) id = pick(rng);
  }
  SamplingParams params;
  params.temperature = 0.0f;
  params.ignore_eos = true;
  params.max_tokens = f.output_len;

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
  std::printf("engine: %lld steps, %lld preemptions, prefix cache %lld/%lld blocks hit\n",
              static_cast<long long>(stats.num_steps),
              static_cast<long long>(stats.num_preemptions),
              static_cast<long long>(stats.prefix_cache_hit_blocks),
              static_cast<long long>(stats.prefix_cache_queried_blocks));
  return absl::OkStatus();
}

absl::Status CheckFlags(const BenchFlags& f) {
  auto positive = [](const char* name, int v) {
    return v > 0 ? absl::OkStatus()
                 : absl::InvalidArgumentError(absl::StrCat("--", name, " must be > 0, got ", v));
  };
  RETURN_IF_ERROR(positive("num-requests", f.num_requests));
  RETURN_IF_ERROR(positive("prompt-len", f.prompt_len));
  RETURN_IF_ERROR(positive("output-len", f.output_len));
  RETURN_IF_ERROR(positive("max-num-seqs", f.max_num_seqs));
  RETURN_IF_ERROR(positive("max-num-batched-tokens", f.max_num_batched_tokens));
  RETURN_IF_ERROR(positive("block-size", f.block_size));
  if (f.num_blocks < 0) return absl::InvalidArgumentError("--num-blocks must be >= 0");
  return absl::OkStatus();
}

}  // namespace

int RunBenchOffline(int argc, char** argv) {
  BenchFlags f;
  ArgParser args("alignserve bench-offline",
                 "Submits --num-requests random-token prompts at once to the engine (greedy, "
                 "ignore_eos, exactly --output-len tokens each) and reports throughput and "
                 "TTFT / inter-token / end-to-end latency percentiles.");
  args.AddString("model", &f.model, "a .gguf file, a Hugging Face model folder, or 'default'");
  args.AddInt("num-requests", &f.num_requests, "requests submitted at once");
  args.AddInt("prompt-len", &f.prompt_len, "prompt tokens per request (random ids)");
  args.AddInt("output-len", &f.output_len, "output tokens per request (max_tokens, ignore_eos)");
  args.AddInt("max-num-seqs", &f.max_num_seqs, "sequences scheduled per step");
  args.AddInt("max-num-batched-tokens", &f.max_num_batched_tokens, "token budget of one step");
  args.AddInt("num-blocks", &f.num_blocks, "KV cache blocks; 0 fits every request at once");
  args.AddInt("block-size", &f.block_size, "tokens per KV block");
  args.AddOptionalUint64("seed", &f.seed, "seed of the random prompts and of the engine; unset: 0");
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
