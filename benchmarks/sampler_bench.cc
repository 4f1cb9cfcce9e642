// Sampler cost per row on a 49152-token vocabulary (SmolLM2's): median and
// 90th-percentile microseconds of BatchSampler::SampleOne for greedy,
// top-p 0.9, top-k 50 and the other paths, on two kinds of row:
//   peaked: N(0, 2) plus a few dozen boosted tokens, like an LLM's next-token
//           logits (most of the mass on tens of tokens);
//   flat:   plain N(0, 2), the worst case for top-p (the nucleus is most of
//           the vocabulary).
// Usage: sampler_bench [iterations]   (default 2000)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "engine/sampler.h"

namespace alignserve {
namespace {

constexpr int kVocab = 49152;

std::vector<float> MakeRow(bool peaked, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> row(kVocab);
  for (float& v : row) v = normal(gen);
  if (peaked) {
    std::uniform_int_distribution<int> pick(0, kVocab - 1);
    for (int i = 0; i < 40; ++i) row[pick(gen)] += 14.0f - 0.3f * i;
  }
  return row;
}

struct Config {
  const char* name;
  SamplingParams params;
};

std::vector<Config> Configs() {
  std::vector<Config> configs;
  auto add = [&](const char* name, auto set) {
    SamplingParams p;
    set(p);
    configs.push_back({name, p});
  };
  add("greedy", [](SamplingParams& p) { p.temperature = 0.0f; });
  add("top_p 0.9", [](SamplingParams& p) { p.top_p = 0.9f; });
  add("top_k 50", [](SamplingParams& p) { p.top_k = 50; });
  add("top_k 50 + top_p 0.9", [](SamplingParams& p) { p.top_k = 50; p.top_p = 0.9f; });
  add("min_p 0.05", [](SamplingParams& p) { p.min_p = 0.05f; });
  add("temperature 0.8 only", [](SamplingParams& p) { p.temperature = 0.8f; });
  add("greedy + logprobs 5", [](SamplingParams& p) { p.temperature = 0.0f; p.logprobs = 5; });
  add("top_p 0.9 + penalties (512 history)", [](SamplingParams& p) {
    p.top_p = 0.9f;
    p.repetition_penalty = 1.1f;
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.5f;
  });
  return configs;
}

void Run(const char* row_kind, const std::vector<float>& row, int iterations) {
  std::vector<int32_t> history(512 + iterations);
  std::mt19937 gen(7);
  for (int32_t& t : history) t = static_cast<int32_t>(gen() % kVocab);
  const std::vector<int32_t> prompt(history.begin(), history.begin() + 256);
  BatchSampler sampler({0});
  for (const Config& config : Configs()) {
    std::vector<double> micros;
    SampleResult result;
    for (int i = 0; i < iterations + 20; ++i) {
      const SamplingRow sampling_row{row, &config.params, prompt,
                                     std::span(history).subspan(i % 64, 512), uint64_t(i)};
      const auto start = std::chrono::steady_clock::now();
      sampler.SampleOne(sampling_row, &result);
      const auto end = std::chrono::steady_clock::now();
      if (i >= 20) micros.push_back(std::chrono::duration<double, std::micro>(end - start).count());
    }
    std::sort(micros.begin(), micros.end());
    std::printf("%-7s %-36s median %8.1f us   p90 %8.1f us\n", row_kind, config.name,
                micros[micros.size() / 2], micros[micros.size() * 9 / 10]);
  }
}

}  // namespace
}  // namespace alignserve

int main(int argc, char** argv) {
  const int iterations = argc > 1 ? std::max(1, std::atoi(argv[1])) : 2000;
  std::printf("sampler_bench: vocab %d, %d iterations per configuration\n",
              alignserve::kVocab, iterations);
  alignserve::Run("peaked", alignserve::MakeRow(true, 1), iterations);
  alignserve::Run("flat", alignserve::MakeRow(false, 2), iterations);
  return 0;
}
