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
#include "tests/engine/engine_choices.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/test_paths.h"

namespace alignserve {
namespace {

using testing::CheckSameLogprobs;
using testing::ChoiceKey;
using testing::ChoiceOutput;
using testing::RunToCompletion;

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

// Runs the requests together through one engine; returns each choice's
// output. device_sampling: EngineConfig::device_sampling.
std::map<ChoiceKey, ChoiceOutput> RunChoices(Loaded& l,
                                             const std::map<int64_t, std::vector<int32_t>>& prompts,
                                             const std::map<int64_t, SamplingParams>& params,
                                             bool device_sampling = true) {
  EngineConfig config;
  config.scheduler.num_blocks = 256;
  config.scheduler.max_model_len = 256;
  config.scheduler.max_num_batched_tokens = 64;  // chunked prefill beside decodes
  config.device_sampling = device_sampling;
  auto engine = LlmEngine::Create(*l.model->model, l.model->text, config);
  REQUIRE(engine.ok());
  for (const auto& [id, prompt] : prompts) {
    REQUIRE((*engine)->AddRequest(id, prompt, params.at(id)).ok());
  }
  return RunToCompletion(**engine);
}

// Choice 0's ids of each request.
std::map<int64_t, std::vector<int32_t>> RunTogether(
    Loaded& l, const std::map<int64_t, std::vector<int32_t>>& prompts,
    const std::map<int64_t, SamplingParams>& params, bool device_sampling = true) {
  std::map<int64_t, std::vector<int32_t>> out;
  for (auto& [key, g] : RunChoices(l, prompts, params, device_sampling)) {
    if (key.second == 0) out[key.first] = std::move(g.ids);
  }
  return out;
}

// Ids in [3, vocab): the tiny Llama-3 has 320, the tiny classifier 300.
std::vector<int32_t> RandomPrompt(std::mt19937& rng, int length, int32_t vocab = 320) {
  std::uniform_int_distribution<int32_t> token(3, vocab - 1);
  std::vector<int32_t> prompt(length);
  for (int32_t& t : prompt) t = token(rng);
  return prompt;
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
  // Request 1 asks for logprobs, so (device sampling off) its rows go to the
  // host sampler; request 2 is plain greedy, sampled by the device's argmax.
  const std::vector<int32_t> prompt = {11, 31, 239, 199, 14, 180, 53};
  SamplingParams host = Greedy(24);
  host.logprobs = 2;
  const auto out = RunTogether(l, {{1, prompt}, {2, prompt}}, {{1, host}, {2, Greedy(24)}},
                               /*device_sampling=*/false);
  CHECK(out.at(1).size() == 24);
  CHECK(out.at(1) == out.at(2));
}

// Untruncated sampling walks the tokens in id order on both sides with the
// same Philox uniform, so the device's draws are the host's token for token
// (rounding could move a draw that lands within ~1e-7 of a boundary; none
// does here), and its logprobs are the host's.
TEST_CASE("seeded sampling drawn on the device equals the host's draws, logprobs too") {
  ALIGNSERVE_REQUIRE_CUDA();
  Loaded l = LoadTiny();
  std::mt19937 rng(31);
  std::map<int64_t, std::vector<int32_t>> prompts;
  std::map<int64_t, SamplingParams> params;
  for (int64_t id = 0; id < 10; ++id) {
    prompts[id] = RandomPrompt(rng, 5 + 9 * static_cast<int>(id));
    SamplingParams& p = params[id];
    p.temperature = 0.6f + 0.1f * static_cast<float>(id);
    p.seed = 1000 + static_cast<uint64_t>(id);
    p.max_tokens = 24;
    p.ignore_eos = true;
    if (id % 3 == 0) p.logprobs = static_cast<int>(id % 5);
    if (id == 4) p.n = 3;                      // three draws from one row at the fork step
    if (id == 5) p.repetition_penalty = 1.3f;  // adjustments on the device
    if (id == 6) {
      p.logit_bias = {{7, 5.0f}, {100, -100.0f}};
      p.frequency_penalty = 0.5f;
      p.presence_penalty = 0.25f;
    }
    if (id == 7) {
      p.min_tokens = 10;
      p.stop_token_ids = {prompts[id][0], prompts[id][1]};
    }
  }
  const auto device = RunChoices(l, prompts, params, true);
  const auto host = RunChoices(l, prompts, params, false);
  REQUIRE(device.size() == host.size());
  REQUIRE(device.size() == 12);  // 9 requests of one choice, one of three
  for (const auto& [key, h] : host) {
    INFO("request " << key.first << " choice " << key.second);
    const ChoiceOutput& d = device.at(key);
    if (key.first != 7) CHECK(h.ids.size() == 24);  // 7 may stop at a stop id after 10
    CHECK(d.ids == h.ids);
    CheckSameLogprobs(d.logprobs, h.logprobs, 1e-4);
  }
  // Request 7 could not stop before min_tokens: neither stop id was drawn.
  REQUIRE(device.at({7, 0}).ids.size() >= 10);
  for (int i = 0; i < 10; ++i) {
    CHECK(device.at({7, 0}).ids[i] != prompts[7][0]);
    CHECK(device.at({7, 0}).ids[i] != prompts[7][1]);
  }
}

// Truncated draws walk survivors in a different order than the host's, so
// the oracle is the counter-based seed: a sequence draws the same tokens
// whatever shares its batch, and the same again on a second run.
TEST_CASE("truncated seeded sampling on the device: batched equals alone, runs repeat") {
  ALIGNSERVE_REQUIRE_CUDA();
  Loaded l = LoadTiny();
  std::mt19937 rng(41);
  std::map<int64_t, std::vector<int32_t>> prompts;
  std::map<int64_t, SamplingParams> params;
  for (int64_t id = 0; id < 8; ++id) {
    prompts[id] = RandomPrompt(rng, 4 + 13 * static_cast<int>(id));
    SamplingParams& p = params[id];
    p.temperature = 0.9f;
    p.top_k = id % 2 == 0 ? 20 : 0;
    p.top_p = id % 4 < 2 ? 0.9f : 0.6f;
    p.min_p = id == 3 ? 0.05f : 0.0f;
    p.seed = 77 + static_cast<uint64_t>(id);
    p.max_tokens = 20;
    p.ignore_eos = true;
  }
  const auto together = RunTogether(l, prompts, params);
  CHECK(RunTogether(l, prompts, params) == together);
  for (const auto& [id, prompt] : prompts) {
    INFO("request " << id);
    CHECK(together.at(id).size() == 20);
    CHECK(RunTogether(l, {{id, prompt}}, {{id, params[id]}}).at(id) == together.at(id));
  }
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

// A sequence classifier's rows are num_labels wide (3 here): the device
// draws from them as the host does, and bias entries for ids past the row
// are dropped on both sides rather than failing the step.
TEST_CASE("seeded sampling from a classifier's narrow rows equals the host's on the device") {
  ALIGNSERVE_REQUIRE_CUDA();
  auto backend = CudaBackend::Create(0);
  REQUIRE(backend.ok());
  Loaded l;
  l.backend = std::move(*backend);
  auto model = LoadModel(testing::SourcePath("tests/data/models/tiny_qwen2_classifier3"),
                         *l.backend, {.max_model_len = 256, .load_text = false});
  INFO(model.status().ToString());
  REQUIRE(model.ok());
  l.model = std::move(*model);
  REQUIRE(l.model->model->config().logits_size() == 3);
  REQUIRE(l.model->model->SupportsDeviceSampling());
  std::mt19937 rng(51);
  std::map<int64_t, std::vector<int32_t>> prompts;
  std::map<int64_t, SamplingParams> params;
  for (int64_t id = 0; id < 6; ++id) {
    prompts[id] = RandomPrompt(rng, 3 + 5 * static_cast<int>(id), 300);
    SamplingParams& p = params[id];
    p.temperature = 1.0f;
    p.seed = 90 + static_cast<uint64_t>(id);
    p.max_tokens = 12;
    p.ignore_eos = true;
    if (id == 1) p.logit_bias = {{1, 3.0f}, {200, 5.0f}};  // 200: in the vocabulary, past the row
    if (id == 2) p.repetition_penalty = 1.5f;              // prompt ids mostly past the row
    if (id == 3) p.logprobs = 2;
  }
  const auto device = RunChoices(l, prompts, params, true);
  const auto host = RunChoices(l, prompts, params, false);
  REQUIRE(device.size() == host.size());
  for (const auto& [key, h] : host) {
    INFO("request " << key.first);
    CHECK(h.ids.size() == 12);
    CHECK(device.at(key).ids == h.ids);
    CheckSameLogprobs(device.at(key).logprobs, h.logprobs, 1e-4);
    for (int32_t t : h.ids) CHECK((t >= 0 && t < 3));
  }
}

}  // namespace
}  // namespace alignserve
