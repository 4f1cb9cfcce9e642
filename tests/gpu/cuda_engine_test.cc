// The serving engine on the CUDA backend, with the tiny Llama-3 checkpoint
// (tests/data/models/tiny_llama3, no tokenizer: a token-ids-only engine):
// continuous batching must not change a greedy answer (each request alone
// is the oracle), the device's argmax must pick what the host sampler
// picks, and the KV cache must be sized from the GPU's real free memory.
#include <catch2/catch.hpp>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "engine/kv_memory_planner.h"
#include "engine/llm_engine.h"
#include "kernels/cuda/cuda_backend.h"
#include "models/model_loader.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/test_paths.h"

namespace alignserve {
namespace {

struct Loaded {
  std::unique_ptr<CudaBackend> backend;
  std::unique_ptr<LoadedModel> model;
};

Loaded LoadTiny() {
  Loaded l;
  auto backend = CudaBackend::Create(0);
  REQUIRE(backend.ok());
  l.backend = std::move(*backend);
  auto model = LoadModel(testing::SourcePath("tests/data/models/tiny_llama3"), *l.backend,
                         {.max_model_len = 256, .load_text = false});
  INFO(model.status().ToString());
  REQUIRE(model.ok());
  l.model = std::move(*model);
  return l;
}

// Runs the requests together through one engine; returns each one's ids.
std::map<int64_t, std::vector<int32_t>> RunTogether(
    Loaded& l, const std::map<int64_t, std::vector<int32_t>>& prompts,
    const std::map<int64_t, SamplingParams>& params) {
  EngineConfig config;
  config.scheduler.num_blocks = 256;
  config.scheduler.max_model_len = 256;
  config.scheduler.max_num_batched_tokens = 64;  // chunked prefill beside decodes
  auto engine = LlmEngine::Create(*l.model->model, l.model->text, config);
  REQUIRE(engine.ok());
  for (const auto& [id, prompt] : prompts) {
    REQUIRE((*engine)->AddRequest(id, prompt, params.at(id)).ok());
  }
  std::map<int64_t, std::vector<int32_t>> out;
  while ((*engine)->HasUnfinished()) {
    auto step = (*engine)->Step();
    REQUIRE(step.ok());
    for (const RequestOutput& o : *step) {
      out[o.request_id].insert(out[o.request_id].end(), o.new_token_ids.begin(),
                               o.new_token_ids.end());
    }
  }
  return out;
}

SamplingParams Greedy(int max_tokens) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  return p;
}

TEST_CASE("greedy requests batched on CUDA generate what each generates alone") {
  ALIGNSERVE_REQUIRE_CUDA();
  Loaded l = LoadTiny();
  std::mt19937 rng(21);
  std::uniform_int_distribution<int32_t> token(3, 319);
  std::map<int64_t, std::vector<int32_t>> prompts;
  std::map<int64_t, SamplingParams> params;
  for (int64_t id = 0; id < 12; ++id) {
    prompts[id].resize(3 + 11 * id);  // 3 .. 124 tokens
    for (int32_t& t : prompts[id]) t = token(rng);
    params[id] = Greedy(20);
  }
  const auto together = RunTogether(l, prompts, params);
  for (const auto& [id, prompt] : prompts) {
    const auto alone = RunTogether(l, {{id, prompt}}, {{id, params[id]}});
    INFO("request " << id);
    CHECK(together.at(id).size() == 20);
    CHECK(together.at(id) == alone.at(id));
  }
}

TEST_CASE("the device argmax picks the host sampler's greedy token") {
  ALIGNSERVE_REQUIRE_CUDA();
  Loaded l = LoadTiny();
  // Request 1 asks for logprobs, so its rows go to the host sampler;
  // request 2 is plain greedy, sampled by the device's argmax.
  const std::vector<int32_t> prompt = {11, 31, 239, 199, 14, 180, 53};
  SamplingParams host = Greedy(24);
  host.logprobs = 2;
  const auto out = RunTogether(l, {{1, prompt}, {2, prompt}}, {{1, host}, {2, Greedy(24)}});
  CHECK(out.at(1).size() == 24);
  CHECK(out.at(1) == out.at(2));
}

TEST_CASE("the KV cache is sized from the GPU's free memory after a profile step") {
  ALIGNSERVE_REQUIRE_CUDA();
  Loaded l = LoadTiny();
  auto before = l.backend->MemoryInfo();
  REQUIRE(before.ok());
  auto plan = PlanKvCacheFromMemory(
      *l.model->model,
      {.max_num_batched_tokens = 512, .max_num_seqs = 32, .max_model_len = 256, .block_size = 16},
      0.05);
  INFO(plan.status().ToString());
  REQUIRE(plan.ok());
  const ModelConfig& c = l.model->model->config();
  CHECK(plan->block_bytes == 2u * c.num_layers * 16 * c.num_kv_heads * c.head_dim * 2);
  CHECK(plan->total_bytes == before->total_bytes);
  CHECK(plan->used_bytes >= before->total_bytes - before->free_bytes);
  const double expected =
      (0.05 * static_cast<double>(plan->total_bytes) - static_cast<double>(plan->used_bytes)) /
      static_cast<double>(plan->block_bytes);
  CHECK(plan->num_blocks == static_cast<int32_t>(expected));
  // Too small a share is refused with what to change.
  auto refused = PlanKvCacheFromMemory(*l.model->model, {.max_model_len = 256}, 1e-6);
  CHECK(absl::IsResourceExhausted(refused.status()));
}

}  // namespace
}  // namespace alignserve
