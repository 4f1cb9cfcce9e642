// best_of_n and soft_best_of_n with the `judge` reward (the served model
// judging with the default rubric) through LlmEngine on SmolLM2. Oracles:
// the n samples are what a plain seeded n-choice request draws (choice i
// seeded seed + i); each sample's judge score is recomputed independently
// through the plain prompt_logprobs path (a request whose prompt is the
// judge prompt plus " Yes", and one plus " No"); the selection is
// BestOfN / SoftBestOfN of those rewards; blocks are counted exactly.
#include "alignment/best_of_n_policy.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "alignment/judge_reward_model.h"
#include "alignment/reward_selection.h"
#include "engine/llm_engine.h"
#include "tests/alignment/judge_test_util.h"
#include "tests/engine/policy_test_util.h"

namespace alignserve {
namespace {

using testing::DrainEngine;
using testing::Judge;
using testing::MakeTestEngine;
using testing::PolicyTestConfig;
using testing::PromptLogprobsOracle;
using testing::SeededParams;
using testing::TestEncode;
using testing::TestOutcome;
using testing::TestTokenizer;
using testing::UsedTestBlocks;

constexpr int kN = 4;
constexpr uint64_t kSeed = 2024;
const char kPrompt[] = "Give me one tip for staying healthy.";

// Full KV blocks of the default rubric's text before {prompt}: the part
// every judge prompt shares.
int64_t RubricOpeningBlocks() {
  const std::string filled = Rubric::Default().Fill("\x01", "r");
  const std::string opening = filled.substr(0, filled.find('\x01'));
  return static_cast<int64_t>(TestEncode(opening).size()) / testing::kTestBlock;
}

SamplingParams Sampling() { return SeededParams(10, kSeed); }

std::shared_ptr<BestOfNPolicy> MakePolicy(std::optional<double> lambda) {
  BestOfNOptions options;
  options.n = kN;
  options.lambda = lambda;
  options.prompt = kPrompt;
  return std::make_shared<BestOfNPolicy>(options, Judge());
}

// One policy request alone on an engine with the prefix cache on.
TestOutcome RunPolicy(std::shared_ptr<DecodingPolicy> policy, LlmEngine* engine = nullptr) {
  std::unique_ptr<LlmEngine> own;
  if (engine == nullptr) {
    own = MakeTestEngine(PolicyTestConfig(256, /*prefix_caching=*/true));
    engine = own.get();
  }
  RequestParams params;
  params.sampling = Sampling();
  params.policy = std::move(policy);
  REQUIRE(engine->AddRequest(1, TestEncode(kPrompt), params).ok());
  TestOutcome out = DrainEngine(*engine).at(1);
  REQUIRE(out.finished);
  return out;
}

double ReportValue(const TestOutcome& out, const std::string& key) {
  for (const auto& [name, value] : out.report) {
    if (name == key) return value;
  }
  FAIL("no report entry " << key);
  return 0;
}

std::vector<double> ReportRewards(const TestOutcome& out) {
  std::vector<double> rewards;
  for (int i = 0; i < kN; ++i) rewards.push_back(ReportValue(out, "reward_" + std::to_string(i)));
  return rewards;
}

// The n samples (plain n-choice request, same seed) and their judge scores
// recomputed without the Score hook.
struct Oracle {
  std::vector<testing::TestChoice> samples;
  std::vector<double> rewards;
};
const Oracle& TheOracle() {
  static const Oracle oracle = [] {
    Oracle o;
    auto engine = MakeTestEngine();
    SamplingParams plain = Sampling();
    plain.n = kN;
    REQUIRE(engine->AddRequest(1, TestEncode(kPrompt), plain).ok());
    const TestOutcome out = DrainEngine(*engine).at(1);
    REQUIRE(out.choices.size() == static_cast<size_t>(kN));
    const std::vector<int32_t> verdicts = {TestEncode(" Yes").at(0), TestEncode(" No").at(0)};
    for (int i = 0; i < kN; ++i) {
      o.samples.push_back(out.choices.at(i));
      const std::vector<int32_t> judge_prompt =
          TestTokenizer().Encode(Rubric::Default().Fill(kPrompt, out.choices.at(i).text),
                                 TestTokenizer().add_bos_by_default(), false);
      const std::vector<float> lp = PromptLogprobsOracle(judge_prompt, verdicts);
      o.rewards.push_back(static_cast<double>(lp[0]) - static_cast<double>(lp[1]));
    }
    return o;
  }();
  return oracle;
}

TEST_CASE("best_of_n returns the sample with the highest judge score and reports every reward") {
  const Oracle& oracle = TheOracle();
  auto engine = MakeTestEngine(PolicyTestConfig(256, /*prefix_caching=*/true));
  const TestOutcome out = RunPolicy(MakePolicy(std::nullopt), engine.get());
  const std::vector<double> rewards = ReportRewards(out);
  for (int i = 0; i < kN; ++i) {
    INFO("sample " << i << ": " << oracle.samples[i].text);
    CHECK(std::abs(rewards[i] - oracle.rewards[i]) <= 1e-3);
  }
  const size_t best = *BestOfN(oracle.rewards);
  // The oracle's winner is clear of the runner-up by more than the tolerance.
  for (int i = 0; i < kN; ++i) {
    if (static_cast<size_t>(i) != best) REQUIRE(oracle.rewards[best] - oracle.rewards[i] > 2e-3);
  }
  CHECK(ReportValue(out, "chosen_index") == static_cast<double>(best));
  CHECK(ReportValue(out, "num_sequences") == kN);
  CHECK(ReportValue(out, "num_scored") == kN);
  CHECK(ReportValue(out, "tokens_generated") == 10.0 * kN);
  CHECK(ReportValue(out, "chosen_reward") == rewards[best]);
  REQUIRE(out.choices.size() == 1);
  CHECK(out.choices.at(0).tokens == oracle.samples[best].tokens);
  CHECK(out.choices.at(0).text == oracle.samples[best].text);
  // Run again on the same engine: the judge prompts now find the rubric's
  // opening (and the whole prompt) in the prefix cache, and nothing changes.
  REQUIRE(RubricOpeningBlocks() >= 3);
  const int64_t hits_before = engine->stats().prefix_cache_hit_blocks;
  const TestOutcome again = RunPolicy(MakePolicy(std::nullopt), engine.get());
  CHECK(engine->stats().prefix_cache_hit_blocks - hits_before >= 4 * RubricOpeningBlocks());
  CHECK(again.report == out.report);
  CHECK(again.choices.at(0).tokens == out.choices.at(0).tokens);
}

TEST_CASE("soft_best_of_n: lambda 1e-9 is best_of_n; a fixed seed reproduces its draw") {
  const Oracle& oracle = TheOracle();
  const TestOutcome hard = RunPolicy(MakePolicy(std::nullopt));
  const TestOutcome tiny = RunPolicy(MakePolicy(1e-9));
  CHECK(tiny.choices.at(0).tokens == hard.choices.at(0).tokens);
  CHECK(ReportValue(tiny, "chosen_index") == ReportValue(hard, "chosen_index"));
  // lambda 1: the draw SoftBestOfN makes from the request's seed, twice.
  const TestOutcome soft = RunPolicy(MakePolicy(1.0));
  const TestOutcome again = RunPolicy(MakePolicy(1.0));
  CHECK(soft.report == again.report);
  CHECK(soft.choices.at(0).tokens == again.choices.at(0).tokens);
  const std::optional<size_t> drawn = SoftBestOfN(ReportRewards(soft), 1.0, kSeed);
  REQUIRE(drawn.has_value());
  CHECK(ReportValue(soft, "chosen_index") == static_cast<double>(*drawn));
  CHECK(soft.choices.at(0).tokens == oracle.samples[*drawn].tokens);
}

TEST_CASE("aborting best_of_n while it scores frees its blocks and its scoring requests'") {
  // Judge prompts prefill in chunks of 48 tokens, over several steps.
  EngineConfig config = PolicyTestConfig();
  config.scheduler.max_num_batched_tokens = 48;
  for (const bool before_added : {true, false}) {
    INFO("abort " << (before_added ? "with scores queued" : "mid-way through scoring"));
    auto engine = MakeTestEngine(config);
    auto policy = MakePolicy(std::nullopt);
    RequestParams params;
    params.sampling = Sampling();
    params.policy = policy;
    REQUIRE(engine->AddRequest(1, TestEncode(kPrompt), params).ok());
    bool aborted = false;
    for (int step = 0; step < 200 && !aborted; ++step) {
      auto outputs = engine->Step();
      REQUIRE(outputs.ok());
      REQUIRE(outputs->empty());
      bool scoring = false;
      for (const Sequence* s : engine->scheduler().running()) scoring |= s->request_id() < 0;
      const bool sampling_done = engine->stats().num_unfinished_requests == 0;
      if ((before_added && sampling_done) || (!before_added && scoring)) {
        CHECK(engine->HasUnfinished());
        if (!before_added) CHECK(UsedTestBlocks(*engine) > 0);
        REQUIRE(engine->Abort(1).ok());
        aborted = true;
      }
    }
    REQUIRE(aborted);
    CHECK(UsedTestBlocks(*engine) == 0);
    CHECK(engine->stats().num_unfinished_requests == 0);
    CHECK_FALSE(engine->HasUnfinished());
    auto next = engine->Step();
    REQUIRE(next.ok());
    CHECK(next->empty());
    CHECK_FALSE(engine->HasUnfinished());
  }
}

}  // namespace
}  // namespace alignserve
