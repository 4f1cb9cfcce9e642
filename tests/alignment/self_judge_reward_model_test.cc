// The `self_judge` reward model on SmolLM2 (alignment/
// self_judge_reward_model.h). Oracles: the chat template itself (the
// scoring prompt decodes to the conversation [user, assistant, user
// question] as the template renders it), the plain prompt_logprobs path
// (each best_of_n sample's reward recomputed from its scoring prompt on a
// fresh engine) and the prefix cache's hit counter (every full block of
// prompt + response is reused, not recomputed).
#include "alignment/self_judge_reward_model.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "alignment/best_of_n_policy.h"
#include "engine/llm_engine.h"
#include "nlohmann/json.hpp"
#include "tests/engine/policy_test_util.h"

namespace alignserve {
namespace {

using testing::DrainEngine;
using testing::MakeTestEngine;
using testing::PolicyTestConfig;
using testing::PromptLogprobsOracle;
using testing::SeededParams;
using testing::SharedModel;
using testing::TestOutcome;
using testing::TestTokenizer;
using Json = nlohmann::ordered_json;

constexpr int kN = 4;
constexpr int kMaxTokens = 40;
constexpr uint64_t kSeed = 77;
const char kQuestion[] = "Give me one tip for staying healthy.";

const ModelText& Text() { return SharedModel().loaded->text; }

std::shared_ptr<const SelfJudgeRewardModel> Model() {
  static const auto model = [] {
    auto m = SelfJudgeRewardModel::Create(Text());
    REQUIRE(m.ok());
    return *m;
  }();
  return model;
}

std::string Render(const Json& messages) {
  auto rendered = Text().RenderChat(messages, true);
  REQUIRE(rendered.ok());
  return *rendered;
}

std::vector<int32_t> ChatPromptIds() {
  return TestTokenizer().Encode(Render(Json::array({{{"role", "user"}, {"content", kQuestion}}})),
                                false, /*parse_special=*/true);
}

TEST_CASE("self_judge continues the conversation as the chat template renders it") {
  const std::vector<int32_t> prompt = ChatPromptIds();
  REQUIRE(Model()->IsChatPrompt(prompt));
  const std::string response = "Drink water, sleep eight hours and walk every day.";
  std::vector<int32_t> response_ids = TestTokenizer().Encode(response, false, false);
  // The end-of-turn token the model stopped on is dropped: the closing ends
  // the turn.
  REQUIRE(!Text().stop_token_ids.empty());
  std::vector<int32_t> stopped = response_ids;
  stopped.push_back(Text().stop_token_ids.back());
  const std::vector<int32_t> ids = Model()->JudgePrompt(prompt, stopped, response);
  const std::string want = Render(Json::array(
      {{{"role", "user"}, {"content", kQuestion}},
       {{"role", "assistant"}, {"content", response}},
       {{"role", "user"}, {"content", std::string(SelfJudgeRewardModel::kDefaultQuestion)}}}));
  CHECK(TestTokenizer().Decode(ids, /*skip_special=*/false) == want);
  // The prompt and the response ids come first, unchanged.
  REQUIRE(ids.size() > prompt.size() + response_ids.size());
  CHECK(std::equal(prompt.begin(), prompt.end(), ids.begin()));
  CHECK(std::equal(response_ids.begin(), response_ids.end(), ids.begin() + prompt.size()));
  // Without ids the response text is tokenized.
  CHECK(Model()->JudgePrompt(prompt, {}, response) ==
        Model()->JudgePrompt(prompt, response_ids, ""));

  // A plain completion prompt gets the plain closing.
  const std::vector<int32_t> plain = TestTokenizer().Encode("Tell me a joke.", false, false);
  CHECK_FALSE(Model()->IsChatPrompt(plain));
  const std::vector<int32_t> plain_ids = Model()->JudgePrompt(plain, response_ids, response);
  CHECK(TestTokenizer().Decode(plain_ids, false) ==
        "Tell me a joke." + response + "\n\n" +
            std::string(SelfJudgeRewardModel::kDefaultQuestion) + "\nAnswer:");
}

TEST_CASE(
    "best_of_n with self_judge: rewards equal a fresh forward pass; each score computes "
    "only the closing question after its sample") {
  BestOfNOptions options;
  options.n = kN;
  options.prompt = kQuestion;
  auto policy = std::make_shared<BestOfNPolicy>(options, Model());
  auto engine = MakeTestEngine(PolicyTestConfig(256, /*prefix_caching=*/true));
  const std::vector<int32_t> prompt = ChatPromptIds();
  RequestParams params;
  params.sampling = SeededParams(kMaxTokens, kSeed);
  params.policy = policy;
  REQUIRE(engine->AddRequest(1, prompt, params).ok());
  const TestOutcome out = DrainEngine(*engine).at(1);
  REQUIRE(out.finished);

  // The samples: a plain seeded n-choice request draws the same ones, and
  // computes everything but the scores.
  auto plain_engine = MakeTestEngine(PolicyTestConfig(256, /*prefix_caching=*/true));
  SamplingParams plain = SeededParams(kMaxTokens, kSeed);
  plain.n = kN;
  REQUIRE(plain_engine->AddRequest(1, prompt, plain).ok());
  const TestOutcome samples = DrainEngine(*plain_engine).at(1);
  REQUIRE(samples.choices.size() == static_cast<size_t>(kN));

  int64_t closing_tokens = 0;
  for (int i = 0; i < kN; ++i) {
    const std::vector<int32_t>& tokens = samples.choices.at(i).tokens;
    const std::vector<int32_t> judge = Model()->JudgePrompt(prompt, tokens, "");
    const std::vector<int32_t> verdicts = {TestTokenizer().Encode("Yes", false).at(0),
                                           TestTokenizer().Encode("No", false).at(0)};
    const std::vector<float> lp = PromptLogprobsOracle(judge, verdicts);
    double reward = NAN;
    for (const auto& [key, value] : out.report) {
      if (key == "reward_" + std::to_string(i)) reward = value;
    }
    INFO("sample " << i << ": " << samples.choices.at(i).text);
    CHECK(std::abs(reward - (static_cast<double>(lp[0]) - lp[1])) <= 1e-3);
    // Its last sampled token was never run through the model; the rest of
    // prompt + response is shared with the finished sample, partial block
    // included.
    closing_tokens += static_cast<int64_t>(judge.size() - prompt.size() - tokens.size()) + 1;
  }
  CHECK(engine->stats().num_computed_tokens - plain_engine->stats().num_computed_tokens ==
        closing_tokens);
  CHECK(closing_tokens <= kN * 30);  // the chat closing is ~25 tokens
  CHECK(engine->stats().num_free_blocks == engine->stats().num_total_blocks);
}

}  // namespace
}  // namespace alignserve
