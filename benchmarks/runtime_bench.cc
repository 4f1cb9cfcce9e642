// runtime_bench: prompt (prefill) and single-stream decode speed of the CPU
// model runtime on one model, the figures benchmarks/compare_llamacpp.py
// sets beside llama.cpp's.
//
//   runtime_bench [--model PATH|default] [--prompt-tokens 512]
//                 [--decode-tokens 128] [--repeats 3]
//
// The prompt is a fixed pseudo-random token sequence (same seed as the
// llama.cpp side); decode is greedy, one token per step, past EOS. Prints
// one JSON object with the median of the repeats.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "kernels/cpu/cpu_backend.h"
#include "models/model_loader.h"
#include "server/cli_args.h"

namespace alignserve {
namespace {

using Clock = std::chrono::steady_clock;

struct Flags {
  std::string model = "default";
  int prompt_tokens = 512;
  int decode_tokens = 128;
  int repeats = 3;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Tokens 100..vocab-1 from a fixed seed. compare_llamacpp.py draws its own
// ids of the same length and range: content does not change a pass's cost.
std::vector<int32_t> BenchPrompt(int n, int vocab) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> pick(100, vocab - 1);
  std::vector<int32_t> ids(n);
  for (int32_t& id : ids) id = pick(rng);
  return ids;
}

int Run(const Flags& f) {
  CpuBackend backend;
  auto loaded = LoadModel(f.model, backend);
  if (!loaded.ok()) {
    std::fprintf(stderr, "runtime_bench: %s\n", std::string(loaded.status().message()).c_str());
    return 1;
  }
  Model& model = *(*loaded)->model;
  const int vocab = model.config().vocab_size;
  const int total = f.prompt_tokens + f.decode_tokens;
  const int block_size = 16, num_blocks = (total + block_size - 1) / block_size;
  auto cache = model.AllocateKvCache(num_blocks, block_size);
  if (!cache.ok()) return 1;
  std::vector<int32_t> blocks(num_blocks);
  for (int i = 0; i < num_blocks; ++i) blocks[i] = i;
  const std::vector<int32_t> prompt = BenchPrompt(f.prompt_tokens, vocab);
  std::vector<double> prefill_tps, decode_tps;
  ForwardOutput out;
  for (int r = 0; r < f.repeats; ++r) {
    BatchLayout layout;
    layout.AddSequence(prompt, 0, blocks, block_size, true);
    layout.Finish();
    Clock::time_point t0 = Clock::now();
    if (!model.Forward(layout, **cache, false, out).ok()) return 1;
    Clock::time_point t1 = Clock::now();
    int32_t next = Argmax({out.logits.data(), static_cast<size_t>(vocab)});
    for (int i = 0; i < f.decode_tokens; ++i) {
      BatchLayout step;
      step.AddSequence({next}, f.prompt_tokens + i, blocks, block_size, true);
      step.Finish();
      if (!model.Forward(step, **cache, false, out).ok()) return 1;
      next = Argmax({out.logits.data(), static_cast<size_t>(vocab)});
    }
    Clock::time_point t2 = Clock::now();
    prefill_tps.push_back(f.prompt_tokens / std::chrono::duration<double>(t1 - t0).count());
    decode_tps.push_back(f.decode_tokens / std::chrono::duration<double>(t2 - t1).count());
  }
  std::printf("{\"engine\": \"alignserve\", \"model\": \"%s\", \"threads\": %d, "
              "\"prompt_tokens\": %d, \"decode_tokens\": %d, \"prompt_tok_s\": %.2f, "
              "\"decode_tok_s\": %.2f}\n",
              (*loaded)->name.c_str(), DefaultThreadPool().num_threads(), f.prompt_tokens,
              f.decode_tokens, Median(prefill_tps), Median(decode_tps));
  return 0;
}

}  // namespace
}  // namespace alignserve

int main(int argc, char** argv) {
  alignserve::Flags f;
  alignserve::ArgParser args("runtime_bench",
                             "Prompt and decode tokens per second of the CPU runtime.");
  args.AddString("model", &f.model, "a .gguf file, a Hugging Face folder, or 'default'");
  args.AddInt("prompt-tokens", &f.prompt_tokens, "prompt length");
  args.AddInt("decode-tokens", &f.decode_tokens, "tokens decoded one step at a time");
  args.AddInt("repeats", &f.repeats, "runs; the median is reported");
  absl::Status s = args.Parse(argc, argv, 1);
  if (args.help_requested()) {
    std::fputs(args.Help().c_str(), stdout);
    return 0;
  }
  if (!s.ok() || f.prompt_tokens <= 0 || f.decode_tokens <= 0 || f.repeats <= 0) {
    std::fprintf(stderr, "runtime_bench: %s\n",
                 s.ok() ? "lengths and repeats must be positive" : std::string(s.message()).c_str());
    return 2;
  }
  return alignserve::Run(f);
}
