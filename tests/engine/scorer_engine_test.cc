// Scorers (engine/decoding_policy.h "Scorers"): a policy on the default
// model (SmolLM2-135M) addresses scoring requests to a second LlmEngine
// attached with AttachScorer, here the tiny Llama-3 fixture (vocabulary
// 320, its own KV pool) or its sequence-classifier twin. Oracles: the tiny
// model's logits computed directly with Model::Forward on a fresh cache
// (tests/models/model_test_util.h), log-softmax taken here in double;
// transformers' pooled score of the classifier (its fixture JSON); the
// owner's tokens against a run alone; block counts of both pools.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "engine/decoding_policy.h"
#include "engine/llm_engine.h"
#include "kernels/cpu/cpu_backend.h"
#include "models/model_loader.h"
#include "tests/engine/policy_test_util.h"
#include "tests/models/model_test_util.h"
#include "tests/test_paths.h"

namespace alignserve {
namespace {

using testing::DrainEngine;
using testing::GreedyParams;
using testing::MakeTestEngine;
using testing::PolicyTestConfig;
using testing::TestEncode;
using testing::TestOutcomes;
using testing::UsedTestBlocks;

constexpr char kTinyModel[] = "tests/data/models/tiny_llama3";
constexpr int32_t kTinyVocab = 320;

EngineConfig ScorerConfig(int32_t max_batched_tokens = 2048) {
  EngineConfig c = PolicyTestConfig(/*num_blocks=*/64);
  c.scheduler.max_num_batched_tokens = max_batched_tokens;
  return c;
}

std::unique_ptr<LlmEngine> MakeTinyScorer(const EngineConfig& config = ScorerConfig(),
                                          const char* path = kTinyModel) {
  auto backend = std::make_unique<CpuBackend>();
  auto loaded = LoadModel(testing::SourcePath(path), *backend,
                          ModelOptions{.max_model_len = 0, .load_text = false});
  REQUIRE(loaded.ok());
  auto engine = LlmEngine::Create(std::move(backend), std::move(*loaded), config);
  REQUIRE(engine.ok());
  return std::move(*engine);
}

// The tiny model's raw logits row after `prompt`, computed without an engine.
std::vector<float> TinyLastRow(const std::vector<int32_t>& prompt) {
  CpuBackend backend;
  auto loaded = LoadModel(testing::SourcePath(kTinyModel), backend,
                          ModelOptions{.max_model_len = 0, .load_text = false});
  REQUIRE(loaded.ok());
  Model& model = *(*loaded)->model;
  const int blocks = static_cast<int>(prompt.size() + 15) / 16;
  auto cache = model.AllocateKvCache(blocks, 16);
  REQUIRE(cache.ok());
  auto all = testing::AllPositionLogits(model, **cache, prompt,
                                        testing::ShuffledBlocks(blocks, blocks, 3));
  REQUIRE(all.ok());
  const int width = model.config().logits_size();
  REQUIRE(width == kTinyVocab);
  return std::vector<float>(all->end() - width, all->end());
}

std::vector<int32_t> TinyPrompt(int length) {
  std::vector<int32_t> p;
  for (int i = 0; i < length; ++i) p.push_back((i * 37 + 11) % kTinyVocab);
  return p;
}

// Scores each of its requests in its first OnStep; records the results.
class ScoreAllPolicy : public DecodingPolicy {
 public:
  explicit ScoreAllPolicy(std::vector<ScoreRequest> requests) : requests_(std::move(requests)) {}
  void OnStep(PolicyContext& ctx) override {
    if (!calls.empty()) return;
    for (const ScoreRequest& r : requests_) calls.push_back(ctx.Score(r));
  }
  void OnScores(std::span<const ScoreResult> scores, PolicyContext& ctx) override {
    results.insert(results.end(), scores.begin(), scores.end());
  }
  std::vector<absl::StatusOr<int64_t>> calls;
  std::vector<ScoreResult> results;

 private:
  std::vector<ScoreRequest> requests_;
};

ScoreRequest TinyRequest(std::vector<int32_t> prompt, std::vector<int32_t> ids,
                         ScoreRequest::Output output) {
  ScoreRequest r;
  r.prompt_token_ids = std::move(prompt);
  r.token_ids = std::move(ids);
  r.output = output;
  r.scorer = 1;
  return r;
}

TEST_CASE("a scorer engine computes the scores a policy addresses to it, in the owner's step") {
  const std::vector<int32_t> ids = {0, 5, 77, kTinyVocab - 1};
  const std::vector<int32_t> short_prompt = TinyPrompt(7);
  const std::vector<int32_t> long_prompt = TinyPrompt(61);
  auto policy = std::make_shared<ScoreAllPolicy>(std::vector<ScoreRequest>{
      TinyRequest(short_prompt, ids, ScoreRequest::Output::kLogprobs),
      TinyRequest(long_prompt, ids, ScoreRequest::Output::kLogits),
      TinyRequest(short_prompt, ids, ScoreRequest::Output::kLogits),
  });
  auto engine = MakeTestEngine();
  REQUIRE(engine->AttachScorer(MakeTinyScorer()) == 1);
  const std::vector<int32_t> prompt = TestEncode("The capital of France is");
  RequestParams params;
  params.sampling = GreedyParams(6);
  params.policy = policy;
  REQUIRE(engine->AddRequest(1, prompt, params).ok());
  const TestOutcomes out = DrainEngine(*engine);

  REQUIRE(policy->calls.size() == 3);
  REQUIRE(policy->results.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    REQUIRE(policy->calls[i].ok());
    const ScoreResult& r = policy->results[i];
    INFO("request " << i << ": " << r.status);
    REQUIRE(r.status.ok());
    CHECK(r.score_id == *policy->calls[i]);  // delivered in the order Score was called
    CHECK(r.step == 1);                      // the scorer's first step, run in the owner's first
    REQUIRE(r.values.size() == ids.size());
  }
  const std::vector<float> short_row = TinyLastRow(short_prompt);
  const std::vector<float> long_row = TinyLastRow(long_prompt);
  double norm = 0.0;
  for (const float v : short_row) norm += std::exp(static_cast<double>(v));
  const double log_norm = std::log(norm);
  for (size_t k = 0; k < ids.size(); ++k) {
    const float logprob = static_cast<float>(short_row[ids[k]] - log_norm);
    CHECK(std::abs(policy->results[0].values[k] - logprob) <= 1e-4f);
    CHECK(std::abs(policy->results[1].values[k] - long_row[ids[k]]) <= 1e-4f);
    CHECK(std::abs(policy->results[2].values[k] - short_row[ids[k]]) <= 1e-4f);
  }
  // The scorer holds nothing once done; the owner generated what it
  // generates alone and its pool is empty too.
  const LlmEngine& scorer = *engine->scorer(1);
  CHECK_FALSE(scorer.HasUnfinished());
  CHECK(scorer.stats().num_free_blocks == scorer.stats().num_total_blocks);
  CHECK(UsedTestBlocks(*engine) == 0);
  auto alone = MakeTestEngine();
  REQUIRE(alone->AddRequest(1, prompt, GreedyParams(6)).ok());
  CHECK(out.at(1).choices.at(0).tokens == DrainEngine(*alone).at(1).choices.at(0).tokens);
}

TEST_CASE("a sequence-classifier scorer returns transformers' score as its label logit") {
  const nlohmann::json fixture =
      testing::ReadJson(testing::SourcePath("tests/data/models/tiny_llama3_reward_scores.json"));
  std::vector<ScoreRequest> requests;
  std::vector<float> expected;
  for (const auto& seq : fixture["sequences"]) {
    requests.push_back(
        TinyRequest(seq["ids"].get<std::vector<int32_t>>(), {0}, ScoreRequest::Output::kLogits));
    expected.push_back(seq["score"][0].get<float>());
  }
  REQUIRE(requests.size() >= 4);
  auto policy = std::make_shared<ScoreAllPolicy>(requests);
  auto engine = MakeTestEngine();
  engine->AttachScorer(MakeTinyScorer(ScorerConfig(), "tests/data/models/tiny_llama3_reward"));
  CHECK(engine->scorer(1)->model_config().logits_size() == 1);
  RequestParams params;
  params.sampling = GreedyParams(3);
  params.policy = policy;
  REQUIRE(engine->AddRequest(1, TestEncode("Hello"), params).ok());
  DrainEngine(*engine);
  REQUIRE(policy->results.size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    INFO("sequence " << i << ": " << policy->results[i].status);
    REQUIRE(policy->results[i].status.ok());
    REQUIRE(policy->results[i].values.size() == 1);
    CHECK(std::abs(policy->results[i].values[0] - expected[i]) <= 1e-4f);
  }
  // A label outside the one-label head is refused.
  auto bad = std::make_shared<ScoreAllPolicy>(
      std::vector<ScoreRequest>{TinyRequest(TinyPrompt(4), {1}, ScoreRequest::Output::kLogits)});
  params.policy = bad;
  REQUIRE(engine->AddRequest(2, TestEncode("Hello"), params).ok());
  DrainEngine(*engine);
  REQUIRE(bad->calls.size() == 1);
  CHECK(absl::IsInvalidArgument(bad->calls[0].status()));
}

TEST_CASE("scoring requests are checked against the scorer's model") {
  auto policy = std::make_shared<ScoreAllPolicy>(std::vector<ScoreRequest>{
      TinyRequest(TinyPrompt(5), {1}, ScoreRequest::Output::kLogits),
      TinyRequest(TinyPrompt(5), {kTinyVocab}, ScoreRequest::Output::kLogprobs),  // SmolLM2 has it
      TinyRequest({1000}, {1}, ScoreRequest::Output::kLogprobs),
      [] {
        ScoreRequest r = TinyRequest(TinyPrompt(5), {1}, ScoreRequest::Output::kLogits);
        r.scorer = 2;
        return r;
      }(),
  });
  auto engine = MakeTestEngine();
  engine->AttachScorer(MakeTinyScorer());
  RequestParams params;
  params.sampling = GreedyParams(2);
  params.policy = policy;
  REQUIRE(engine->AddRequest(1, TestEncode("Hi"), params).ok());
  DrainEngine(*engine);
  REQUIRE(policy->calls.size() == 4);
  CHECK(policy->calls[0].ok());
  for (size_t i = 1; i < 4; ++i) {
    INFO("request " << i << ": " << policy->calls[i].status());
    CHECK(absl::IsInvalidArgument(policy->calls[i].status()));
  }
  REQUIRE(policy->results.size() == 1);
  CHECK(policy->results[0].status.ok());
}

TEST_CASE("aborting the owner aborts its scores on the scorer and frees the scorer's blocks") {
  // Chunks of 16 tokens: the 61-token scoring prompt spans four scorer steps.
  auto engine = MakeTestEngine();
  engine->AttachScorer(MakeTinyScorer(ScorerConfig(/*max_batched_tokens=*/16)));
  auto policy = std::make_shared<ScoreAllPolicy>(std::vector<ScoreRequest>{
      TinyRequest(TinyPrompt(61), {3}, ScoreRequest::Output::kLogits),
  });
  RequestParams params;
  params.sampling = GreedyParams(50);
  params.policy = policy;
  REQUIRE(engine->AddRequest(1, TestEncode("Tell me a story"), params).ok());
  REQUIRE(engine->Step().ok());
  REQUIRE(engine->Step().ok());
  const LlmEngine& scorer = *engine->scorer(1);
  REQUIRE(scorer.HasUnfinished());
  CHECK(scorer.stats().num_free_blocks < scorer.stats().num_total_blocks);
  REQUIRE(engine->Abort(1).ok());
  CHECK_FALSE(scorer.HasUnfinished());
  CHECK(scorer.stats().num_free_blocks == scorer.stats().num_total_blocks);
  CHECK(UsedTestBlocks(*engine) == 0);
  CHECK_FALSE(engine->HasUnfinished());
  REQUIRE(engine->Step().ok());
  CHECK(policy->results.empty());  // an aborted owner hears nothing more
}

}  // namespace
}  // namespace alignserve
