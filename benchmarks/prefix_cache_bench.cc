// prefix_cache_bench: time to first token of a request whose long prefix is
// already in the KV cache (a shared system prompt) against the same request
// with the prefix cache off, through the engine (LlmEngine).
//
//   prefix_cache_bench [--model PATH|default] [--prefix-len 1000]
//                      [--suffix-len 16] [--repeats 5]
//
// Each repeat: a warm-up request with the prefix fills the cache, then a
// request with the same prefix and a different suffix is timed from
// AddRequest to its first token; the same two requests run on an engine
// with prefix caching disabled. Prints medians and the ratio as JSON.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "engine/llm_engine.h"
#include "kernels/cpu/cpu_backend.h"
#include "models/model_loader.h"
#include "server/cli_args.h"

namespace alignserve {
namespace {

using Clock = std::chrono::steady_clock;

struct Flags {
  std::string model = "default";
  int prefix_len = 1000;
  int suffix_len = 16;
  int repeats = 5;
};

std::vector<int32_t> RandomTokens(int n, std::mt19937& rng) {
  std::uniform_int_distribution<int32_t> pick(100, 40000);
  std::vector<int32_t> ids(n);
  for (int32_t& id : ids) id = pick(rng);
  return ids;
}

// Runs one request to its first token; returns the seconds it took.
absl::StatusOr<double> TimeToFirstToken(LlmEngine& engine, int64_t id,
                                        std::vector<int32_t> prompt) {
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  greedy.max_tokens = 1;
  const Clock::time_point t0 = Clock::now();
  absl::Status s = engine.AddRequest(id, std::move(prompt), greedy);
  if (!s.ok()) return s;
  while (engine.HasUnfinished()) {
    absl::StatusOr<std::vector<RequestOutput>> out = engine.Step();
    if (!out.ok()) return out.status();
  }
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int Run(const Flags& f) {
  CpuBackend backend;
  auto loaded = LoadModel(f.model, backend);
  if (!loaded.ok()) {
    std::fprintf(stderr, "prefix_cache_bench: %s\n", std::string(loaded.status().message()).c_str());
    return 1;
  }
  std::vector<double> cached, uncached;
  std::mt19937 rng(7);
  int64_t next_id = 0;
  for (bool caching : {true, false}) {
    EngineConfig config;
    config.scheduler.max_model_len = f.prefix_len + f.suffix_len + 8;
    config.scheduler.max_num_batched_tokens = config.scheduler.max_model_len;
    config.scheduler.num_blocks = 4 * (config.scheduler.max_model_len / 16 + 1);
    config.scheduler.enable_prefix_caching = caching;
    auto engine = LlmEngine::Create(*(*loaded)->model, (*loaded)->text, config);
    if (!engine.ok()) return 1;
    for (int r = 0; r < f.repeats; ++r) {
      const std::vector<int32_t> prefix = RandomTokens(f.prefix_len, rng);
      for (int request = 0; request < 2; ++request) {
        std::vector<int32_t> prompt = prefix;
        const std::vector<int32_t> suffix = RandomTokens(f.suffix_len, rng);
        prompt.insert(prompt.end(), suffix.begin(), suffix.end());
        absl::StatusOr<double> ttft = TimeToFirstToken(**engine, next_id++, std::move(prompt));
        if (!ttft.ok()) return 1;
        if (request == 1) (caching ? cached : uncached).push_back(*ttft);
      }
    }
  }
  std::printf("{\"prefix_tokens\": %d, \"suffix_tokens\": %d, \"repeats\": %d, "
              "\"ttft_cached_ms\": %.2f, \"ttft_uncached_ms\": %.2f, \"speedup\": %.2f}\n",
              f.prefix_len, f.suffix_len, f.repeats, 1e3 * Median(cached),
              1e3 * Median(uncached), Median(uncached) / Median(cached));
  return 0;
}

}  // namespace
}  // namespace alignserve

int main(int argc, char** argv) {
  alignserve::Flags f;
  alignserve::ArgParser args("prefix_cache_bench",
                             "Time to first token with a cached shared prefix against none.");
  args.AddString("model", &f.model, "a .gguf file, a Hugging Face folder, or 'default'");
  args.AddInt("prefix-len", &f.prefix_len, "tokens of the shared prefix");
  args.AddInt("suffix-len", &f.suffix_len, "tokens unique to each request");
  args.AddInt("repeats", &f.repeats, "timed requests per setting; the median is reported");
  absl::Status s = args.Parse(argc, argv, 1);
  if (args.help_requested()) {
    std::fputs(args.Help().c_str(), stdout);
    return 0;
  }
  if (!s.ok() || f.prefix_len <= 0 || f.suffix_len <= 0 || f.repeats <= 0) {
    std::fprintf(stderr, "prefix_cache_bench: %s\n",
                 s.ok() ? "lengths and repeats must be positive" : std::string(s.message()).c_str());
    return 2;
  }
  return alignserve::Run(f);
}
