// args (ARGS) with the `judge` reward (the served model judging with the
// default rubric) through LlmEngine on SmolLM2. Oracles: each position's
// candidates and logit gaps come from a plain request's top logprobs on the
// same prefix; rewards are recomputed through the plain prompt_logprobs path
// (PromptLogprobsOracle); each chosen token is argmax(logit + w * reward) of
// those figures; w = 0 is plain greedy decoding; blocks are counted exactly.
#include "alignment/args_policy.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "alignment/judge_reward_model.h"
#include "engine/llm_engine.h"
#include "tests/alignment/judge_test_util.h"
#include "tests/engine/policy_test_util.h"

namespace alignserve {
namespace {

using testing::DrainEngine;
using testing::GreedyParams;
using testing::Judge;
using testing::MakeTestEngine;
using testing::PolicyTestConfig;
using testing::PromptLogprobsOracle;
using testing::TestEncode;
using testing::TestOutcome;
using testing::TestTokenizer;
using testing::UsedTestBlocks;

const char kPrompt[] = "Give me one tip for staying healthy.";

std::shared_ptr<ArgsPolicy> MakeArgs(int32_t k, double w) {
  ArgsOptions options;
  options.params.k = k;
  options.params.w = w;
  options.prompt = kPrompt;
  auto policy = ArgsPolicy::Create(options, Judge());
  REQUIRE(policy.ok());
  return *policy;
}

TestOutcome Run(std::shared_ptr<DecodingPolicy> policy, int32_t max_tokens) {
  auto engine = MakeTestEngine(PolicyTestConfig(256));
  RequestParams params;
  params.sampling = GreedyParams(max_tokens);
  params.policy = std::move(policy);
  REQUIRE(engine->AddRequest(1, TestEncode(kPrompt), params).ok());
  TestOutcome out = DrainEngine(*engine).at(1);
  REQUIRE(out.finished);
  REQUIRE(out.choices.size() == 1);
  return out;
}

// Top-k logprobs after prompt + prefix from a plain greedy request.
std::vector<TokenLogprob> PlainTopK(const std::vector<int32_t>& prefix, int k) {
  auto engine = MakeTestEngine();
  std::vector<int32_t> prompt = TestEncode(kPrompt);
  prompt.insert(prompt.end(), prefix.begin(), prefix.end());
  SamplingParams p = GreedyParams(1);
  p.logprobs = k;
  REQUIRE(engine->AddRequest(1, prompt, p).ok());
  const TestOutcome out = DrainEngine(*engine).at(1);
  REQUIRE(out.choices.at(0).logprobs.size() == 1);
  return out.choices.at(0).logprobs[0].top;
}

double OracleReward(const std::vector<int32_t>& output) {
  const std::string response = TestTokenizer().Decode(output, /*skip_special=*/true);
  const std::vector<int32_t> verdicts = {TestEncode(" Yes").at(0), TestEncode(" No").at(0)};
  const std::vector<float> lp =
      PromptLogprobsOracle(Judge()->JudgePrompt(kPrompt, response), verdicts);
  return static_cast<double>(lp[0]) - static_cast<double>(lp[1]);
}

TEST_CASE("args takes argmax(logit + w * reward) over the top k at every position") {
  constexpr int kK = 3;
  constexpr int kMaxTokens = 4;
  constexpr double kW = 1.0;
  auto policy = MakeArgs(kK, kW);
  const TestOutcome out = Run(policy, kMaxTokens);
  const std::vector<int32_t>& tokens = out.choices.at(0).tokens;
  REQUIRE(tokens.size() == static_cast<size_t>(kMaxTokens));
  const std::vector<ArgsStep>& steps = policy->steps();
  REQUIRE(steps.size() == static_cast<size_t>(kMaxTokens));
  // Position 0 too: its candidates are the expand group (args_policy.h).
  for (size_t p = 0; p < steps.size(); ++p) {
    INFO("position " << p);
    const ArgsStep& s = steps[p];
    CHECK(s.position == static_cast<int32_t>(p));
    REQUIRE(s.tokens.size() == static_cast<size_t>(kK));
    REQUIRE(s.rewards.size() == static_cast<size_t>(kK));
    const std::vector<int32_t> prefix(tokens.begin(), tokens.begin() + static_cast<long>(p));
    // Candidates and logit gaps as a plain request sees that prefix.
    const std::vector<TokenLogprob> top = PlainTopK(prefix, kK);
    REQUIRE(top.size() == static_cast<size_t>(kK));
    size_t best = 0;
    for (size_t i = 0; i < s.tokens.size(); ++i) {
      CHECK(s.tokens[i] == top[i].token);
      CHECK(std::abs((s.logits[i] - s.logits[0]) - (top[i].logprob - top[0].logprob)) <= 1e-3);
      std::vector<int32_t> extended = prefix;
      extended.push_back(s.tokens[i]);
      CHECK(std::abs(s.rewards[i] - OracleReward(extended)) <= 1e-3);
      const double score = s.logits[i] + kW * s.rewards[i];
      if (score > s.logits[best] + kW * s.rewards[best]) best = i;
    }
    CHECK(s.chosen == best);
    CHECK(tokens[p] == s.tokens[s.chosen]);
  }
  const auto report = [&out](const std::string& key) {
    for (const auto& [name, value] : out.report) {
      if (name == key) return value;
    }
    FAIL("no report entry " << key);
    return 0.0;
  };
  CHECK(report("args_steps") == kMaxTokens);
  CHECK(report("judge_calls") == kK * kMaxTokens);
  CHECK(report("num_scored") == kK * kMaxTokens);
  CHECK(report("tokens_generated") == kK * kMaxTokens);
}

TEST_CASE("args with w = 0 is greedy decoding") {
  constexpr int kMaxTokens = 6;
  const TestOutcome args = Run(MakeArgs(2, 0.0), kMaxTokens);
  auto engine = MakeTestEngine();
  REQUIRE(engine->AddRequest(1, TestEncode(kPrompt), GreedyParams(kMaxTokens)).ok());
  const TestOutcome greedy = DrainEngine(*engine).at(1);
  CHECK(args.choices.at(0).tokens == greedy.choices.at(0).tokens);
  CHECK(args.choices.at(0).text == greedy.choices.at(0).text);
}

TEST_CASE("aborting args while its candidates are scored frees every block") {
  // Judge prompts prefill in chunks of 48 tokens, over several steps.
  EngineConfig config = PolicyTestConfig(256);
  config.scheduler.max_num_batched_tokens = 48;
  auto engine = MakeTestEngine(config);
  RequestParams params;
  params.sampling = GreedyParams(8);
  params.policy = MakeArgs(3, 1.0);
  REQUIRE(engine->AddRequest(1, TestEncode(kPrompt), params).ok());
  bool aborted = false;
  for (int step = 0; step < 200 && !aborted; ++step) {
    auto outputs = engine->Step();
    REQUIRE(outputs.ok());
    REQUIRE(outputs->empty());
    int scoring = 0;
    for (const Sequence* s : engine->scheduler().running()) scoring += s->request_id() < 0 ? 1 : 0;
    // Past position 1: the k candidates hold blocks while their judges run.
    if (step > 4 && scoring > 0) {
      CHECK(UsedTestBlocks(*engine) > 0);
      REQUIRE(engine->Abort(1).ok());
      aborted = true;
    }
  }
  REQUIRE(aborted);
  CHECK(UsedTestBlocks(*engine) == 0);
  CHECK(engine->stats().num_unfinished_requests == 0);
  CHECK_FALSE(engine->HasUnfinished());
}

TEST_CASE("args rejects out-of-range k, w and temperature and a missing reward model") {
  ArgsOptions options;
  options.params.k = 0;
  CHECK(ArgsPolicy::Create(options, Judge()).status().code() == absl::StatusCode::kInvalidArgument);
  options.params.k = 2;
  options.params.w = -1;
  CHECK(ArgsPolicy::Create(options, Judge()).status().code() == absl::StatusCode::kInvalidArgument);
  options.params.w = 1;
  options.params.temperature = 0.0;
  CHECK(ArgsPolicy::Create(options, Judge()).status().code() == absl::StatusCode::kInvalidArgument);
  options.params.temperature.reset();
  CHECK(ArgsPolicy::Create(options, nullptr).status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(ArgsPolicy::Create(options, Judge()).ok());
}

}  // namespace
}  // namespace alignserve
