// The `score_head` reward model end to end against transformers, text side
// included: tiny_reward_chat (a LlamaForSequenceClassification folder with
// tokenizer.json, tokenizer_config.json and a Llama-3-style chat template;
// tests/reference/model_fixture_reward_chat.py) loaded as a scorer engine
// beside the default model (SmolLM2-135M). Oracles, per conversation of
// tiny_reward_chat_scores.json: the text and ids of transformers'
// apply_chat_template(add_generation_prompt=False), and the float32 pooled
// score of LlamaForSequenceClassification.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "alignment/score_head_reward_model.h"
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

constexpr char kModelDir[] = "tests/data/models/tiny_reward_chat";
constexpr char kFixture[] = "tests/data/models/tiny_reward_chat_scores.json";
// As reward_head_model_test: transformers differs from itself by ~3e-6 on
// this model (f32 vs f64, eager vs SDPA); the CPU kernels keep float32.
constexpr double kTolerance = 1e-4;

struct Conversation {
  std::string name;
  std::string prompt;
  std::string response;
  std::string text;  // the chat as transformers renders it
  std::vector<int32_t> ids;
  double score = 0.0;
};

std::vector<Conversation> Conversations() {
  const nlohmann::json fixture = testing::ReadJson(testing::SourcePath(kFixture));
  std::vector<Conversation> out;
  for (const nlohmann::json& c : fixture["conversations"]) {
    out.push_back({c["name"], c["prompt"], c["response"], c["text"],
                   c["ids"].get<std::vector<int32_t>>(), c["score"][0].get<double>()});
  }
  REQUIRE(out.size() == 6);
  return out;
}

// The reward model's engine, its text side loaded from its folder.
std::unique_ptr<LlmEngine> MakeRewardScorer() {
  auto backend = std::make_unique<CpuBackend>();
  auto loaded = LoadModel(testing::SourcePath(kModelDir), *backend,
                          ModelOptions{.max_model_len = 0, .load_text = true});
  INFO(loaded.status());
  REQUIRE(loaded.ok());
  EngineConfig config = PolicyTestConfig(/*num_blocks=*/64);
  auto engine = LlmEngine::Create(std::move(backend), std::move(*loaded), config);
  REQUIRE(engine.ok());
  return std::move(*engine);
}

std::shared_ptr<const ScoreHeadRewardModel> MakeRewardModel(const LlmEngine& scorer, int index) {
  auto model = ScoreHeadRewardModel::Create(scorer.text(), scorer.model_config().num_labels, index);
  REQUIRE(model.ok());
  return *model;
}

nlohmann::ordered_json Chat(const Conversation& c) {
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  messages.push_back({{"role", "user"}, {"content", c.prompt}});
  messages.push_back({{"role", "assistant"}, {"content", c.response}});
  return messages;
}

TEST_CASE("the reward model's folder loads its tokenizer, special tokens and chat template") {
  const std::unique_ptr<LlmEngine> scorer = MakeRewardScorer();
  const ModelText& text = scorer->text();
  REQUIRE(text.tokenizer != nullptr);
  REQUIRE(text.chat_template.has_value());
  CHECK(scorer->model_config().num_labels == 1);
  // Every tokenizer id (3,000 BPE tokens and 4 added ones) has an embedding.
  CHECK(text.tokenizer->vocab_size() == 3004);
  CHECK(scorer->model_config().vocab_size == 3004);
  CHECK(text.bos_token == "<|begin_of_text|>");
  CHECK(text.eos_token == "<|eot_id|>");
  CHECK(text.IsStopToken(3002));
}

TEST_CASE("ScorePrompt renders and tokenizes each pair as transformers' apply_chat_template") {
  const std::unique_ptr<LlmEngine> scorer = MakeRewardScorer();
  const auto model = MakeRewardModel(*scorer, /*index=*/1);
  for (const Conversation& c : Conversations()) {
    INFO(c.name);
    auto rendered = scorer->text().RenderChat(Chat(c), /*add_generation_prompt=*/false);
    REQUIRE(rendered.ok());
    CHECK(*rendered == c.text);
    auto ids = model->ScorePrompt(c.prompt, c.response);
    REQUIRE(ids.ok());
    CHECK(*ids == c.ids);
  }
}

// Submits every conversation in its first OnStep; records what comes back.
class ScoreConversationsPolicy : public DecodingPolicy {
 public:
  ScoreConversationsPolicy(std::shared_ptr<const ScoreHeadRewardModel> model,
                           std::vector<Conversation> conversations)
      : model_(std::move(model)), conversations_(std::move(conversations)) {}
  void OnStep(PolicyContext& ctx) override {
    if (submitted_) return;
    submitted_ = true;
    for (size_t i = 0; i < conversations_.size(); ++i) {
      const Conversation& c = conversations_[i];
      absl::StatusOr<int64_t> id = model_->Submit(
          {.prompt = c.prompt, .response = c.response, .response_token_ids = {}}, ctx);
      submit_status.push_back(id.status());
      if (id.ok()) conversation_of[*id] = i;
    }
  }
  void OnScores(std::span<const ScoreResult> scores, PolicyContext& ctx) override {
    results.insert(results.end(), scores.begin(), scores.end());
  }
  std::vector<absl::Status> submit_status;
  std::map<int64_t, size_t> conversation_of;  // score id -> conversation index
  std::vector<ScoreResult> results;

 private:
  std::shared_ptr<const ScoreHeadRewardModel> model_;
  std::vector<Conversation> conversations_;
  bool submitted_ = false;
};

TEST_CASE("a policy's score_head rewards equal transformers' scores of the conversations") {
  const std::vector<Conversation> conversations = Conversations();
  auto engine = MakeTestEngine();
  const int index = engine->AttachScorer(MakeRewardScorer());
  REQUIRE(index == 1);
  auto policy = std::make_shared<ScoreConversationsPolicy>(
      MakeRewardModel(*engine->scorer(index), index), conversations);
  RequestParams params;
  params.sampling = GreedyParams(4);
  params.policy = policy;
  REQUIRE(engine->AddRequest(1, TestEncode("Rate these answers:"), params).ok());
  DrainEngine(*engine);
  CHECK_FALSE(engine->scorer(index)->HasUnfinished());

  REQUIRE(policy->submit_status.size() == conversations.size());
  for (const absl::Status& s : policy->submit_status) CHECK(s.ok());
  REQUIRE(policy->results.size() == conversations.size());
  const auto model = MakeRewardModel(*engine->scorer(index), index);
  std::vector<bool> seen(conversations.size(), false);
  for (const ScoreResult& r : policy->results) {
    REQUIRE(policy->conversation_of.contains(r.score_id));
    const Conversation& c = conversations[policy->conversation_of.at(r.score_id)];
    INFO(c.name << ": " << r.status);
    REQUIRE(r.status.ok());
    seen[policy->conversation_of.at(r.score_id)] = true;
    const double reward = model->Reward(r);
    INFO("reward " << reward << ", transformers " << c.score);
    CHECK(std::abs(reward - c.score) <= kTolerance);
  }
  for (const bool s : seen) CHECK(s);
}

}  // namespace
}  // namespace alignserve
