// SelfConsistencyPolicy: the stopping rules' decision points, the windows
// held back and released, the majority vote and the figures, on scripted
// samples (FakePolicyEngine); then end to end on SmolLM2 against plain
// seeded requests (sample i of the policy draws what a plain request seeded
// seed + i draws, so the oracle re-runs the samples one by one).
#include "alignment/self_consistency_policy.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "tests/alignment/fake_policy_engine.h"
#include "tests/alignment/policy_e2e.h"

namespace alignserve {
namespace {

using testing::FakePolicyEngine;
using testing::Figure;
using testing::ScriptedTrace;

constexpr int32_t kMaxTokens = 50;

// A sample of `len` tokens whose text names `answer` (none if empty).
ScriptedTrace Sample(int len, const std::string& answer) {
  ScriptedTrace t;
  for (int i = 0; i < len; ++i) t.tokens.push_back(1000 + i);
  t.text = answer.empty() ? "no idea" : "so the answer is " + answer + ".";
  return t;
}

std::shared_ptr<SelfConsistencyPolicy> Make(int n, int window, SelfConsistencyRule rule) {
  SelfConsistencyParams p;
  p.n = n;
  p.window = window;
  p.rule = rule;
  auto made = SelfConsistencyPolicy::Create(p);
  REQUIRE(made.ok());
  return *made;
}

// P(p1 > p2) under Beta(v1 + 1, v2 + 1) with p1 + p2 = 1, as the binomial
// tail P(Binomial(v1 + v2 + 1, 1/2) >= v2 + 1), summed term by term.
double BetaOracle(int v1, int v2) {
  const int n = v1 + v2 + 1;
  double p = 0;
  for (int j = v2 + 1; j <= n; ++j) {
    double c = 1;
    for (int i = 0; i < j; ++i) c = c * (n - i) / (i + 1);
    p += c / std::pow(2.0, n);
  }
  return p;
}

TEST_CASE("ESC stops after the first unanimous window and prunes the held-back samples") {
  auto policy = Make(8, 4, SelfConsistencyRule::kEsc);
  // Window 1 agrees on 7; sample 0 finishes last, so the rule can only fire
  // once all four ended (step 9, sample 0's tenth token).
  std::vector<ScriptedTrace> traces = {Sample(10, "7"), Sample(3, "7"), Sample(5, "7"),
                                       Sample(4, "7")};
  for (int i = 0; i < 4; ++i) traces.push_back(Sample(6, "9"));
  FakePolicyEngine engine(*policy, traces, kMaxTokens);
  const PolicyResult result = engine.Run();
  REQUIRE(result.choices == std::vector<int64_t>{FakePolicyEngine::Id(0)});
  for (size_t i = 4; i < 8; ++i) {
    CHECK(engine.state(i).out.size() == 1);  // paused after the first token, never resumed
    CHECK(engine.state(i).reason == FinishReason::kAbort);
    CHECK(engine.state(i).end_step == 9);
  }
  CHECK(Figure(result, "samples_used") == 4);
  CHECK(Figure(result, "traces_pruned") == 4);
  CHECK(Figure(result, "stopped_early") == 1);
  CHECK(Figure(result, "tokens_generated") == 10 + 3 + 5 + 4 + 4);
  CHECK(Figure(result, "tokens_saved") == 4 * (kMaxTokens - 1));
  CHECK(Figure(result, "votes:7") == 4);
  CHECK(Figure(result, "winner_share") == 1.0);
  CHECK_FALSE(Figure(result, "votes:9").has_value());
}

TEST_CASE("ESC releases the next window when one disagrees, and votes over all finished") {
  auto policy = Make(12, 4, SelfConsistencyRule::kEsc);
  std::vector<ScriptedTrace> traces = {Sample(2, "1"), Sample(2, "2"), Sample(2, "2"),
                                       Sample(2, "2")};
  for (int i = 0; i < 4; ++i) traces.push_back(Sample(3, "2"));  // window 2 agrees
  for (int i = 0; i < 4; ++i) traces.push_back(Sample(3, "1"));
  FakePolicyEngine engine(*policy, traces, kMaxTokens);
  const PolicyResult result = engine.Run();
  REQUIRE(result.choices == std::vector<int64_t>{FakePolicyEngine::Id(1)});
  // Window 2 resumed when window 1 ended (step 1) and ran its other 2 tokens.
  for (size_t i = 4; i < 8; ++i) {
    CHECK(engine.state(i).token_steps == std::vector<int64_t>{0, 2, 3});
  }
  for (size_t i = 8; i < 12; ++i) CHECK(engine.state(i).out.size() == 1);
  CHECK(Figure(result, "samples_used") == 8);
  CHECK(Figure(result, "traces_pruned") == 4);
  CHECK(Figure(result, "votes:1") == 1);
  CHECK(Figure(result, "votes:2") == 7);
  CHECK(Figure(result, "winner_share") == Approx(7.0 / 8));
}

TEST_CASE("a window with a missing answer never agrees under ESC") {
  auto policy = Make(4, 2, SelfConsistencyRule::kEsc);
  FakePolicyEngine engine(*policy, {Sample(2, "5"), Sample(2, ""), Sample(2, "5"), Sample(2, "6")},
                          kMaxTokens);
  const PolicyResult result = engine.Run();
  CHECK(Figure(result, "samples_used") == 4);
  CHECK(Figure(result, "stopped_early") == 0);
  CHECK(Figure(result, "votes:5") == 2);
  CHECK(result.choices == std::vector<int64_t>{FakePolicyEngine::Id(0)});
}

TEST_CASE("the Beta rule stops at the sample its formula says, mid-window") {
  // Answers a b a a a a a ...: the rule is asked after every end, in sample
  // order; the oracle finds the first prefix whose P(p1 > p2) >= 0.95.
  const std::vector<std::string> answers = {"3", "8", "3", "3", "3", "3", "3", "3", "3", "3"};
  size_t stop_at = 0;
  for (size_t m = 1; m <= answers.size() && stop_at == 0; ++m) {
    std::map<std::string, int> counts;
    for (size_t i = 0; i < m; ++i) ++counts[answers[i]];
    int v1 = 0, v2 = 0;
    for (const auto& [a, c] : counts) {
      if (c > v1) {
        v2 = v1;
        v1 = c;
      } else if (c > v2) {
        v2 = c;
      }
    }
    if (BetaOracle(v1, v2) >= 0.95) stop_at = m;
  }
  REQUIRE(stop_at == 7);  // 1 - 9/256 = 0.9648 after 6:1; 0.9375 after 5:1
  auto policy = Make(10, 3, SelfConsistencyRule::kBeta);
  std::vector<ScriptedTrace> traces;
  for (size_t i = 0; i < answers.size(); ++i) traces.push_back(Sample(4, answers[i]));
  traces[6].tokens.resize(2);  // sample 6 ends first in window [6, 9)
  FakePolicyEngine engine(*policy, traces, kMaxTokens);
  const PolicyResult result = engine.Run();
  // Windows [0,3) and [3,6) run 4 tokens each (steps 0-3, 4-6); [6,9) is
  // resumed at step 6; sample 6 ends at step 7, and 7, 8 are aborted then.
  CHECK(engine.state(6).end_step == 7);
  for (size_t i = 7; i < 9; ++i) {
    CHECK(engine.state(i).reason == FinishReason::kAbort);
    CHECK(engine.state(i).end_step == 7);
    CHECK(engine.state(i).out.size() == 2);
  }
  CHECK(engine.state(9).out.size() == 1);
  CHECK(Figure(result, "samples_used") == 7);
  CHECK(Figure(result, "traces_pruned") == 3);
  CHECK(Figure(result, "tokens_saved") == 2 * (kMaxTokens - 2) + (kMaxTokens - 1));
  CHECK(result.choices == std::vector<int64_t>{FakePolicyEngine::Id(0)});
}

TEST_CASE("rule none runs every sample at once and prunes nothing") {
  auto policy = Make(5, 2, SelfConsistencyRule::kNone);
  FakePolicyEngine engine(
      *policy, {Sample(3, "1"), Sample(3, "2"), Sample(3, "2"), Sample(4, "1"), Sample(2, "2")},
      kMaxTokens);
  const PolicyResult result = engine.Run();
  for (size_t i = 0; i < 5; ++i) CHECK(engine.state(i).token_steps.front() == 0);
  CHECK(engine.log.empty());  // no pause, no resume, no abort
  CHECK(Figure(result, "votes:2") == 3);
  CHECK(Figure(result, "tokens_saved") == 0);
  CHECK(result.choices == std::vector<int64_t>{FakePolicyEngine::Id(1)});
}

TEST_CASE("a released window that ended at its first tokens does not stall the group") {
  auto policy = Make(6, 2, SelfConsistencyRule::kEsc);
  std::vector<ScriptedTrace> traces = {Sample(3, "1"), Sample(3, "2"), Sample(1, "4"),
                                       Sample(1, "5"), Sample(2, "6"), Sample(2, "6")};
  traces[2].end = traces[3].end = FinishReason::kStop;  // EOS at the first token
  FakePolicyEngine engine(*policy, traces, kMaxTokens);
  const PolicyResult result = engine.Run(100);
  CHECK(engine.state(4).reason == FinishReason::kLength);
  CHECK(Figure(result, "samples_used") == 6);
  CHECK(Figure(result, "stopped_early") == 0);
  CHECK(result.choices == std::vector<int64_t>{FakePolicyEngine::Id(4)});
}

TEST_CASE("self_consistency rejects parameters outside their ranges") {
  SelfConsistencyParams p;
  p.n = 4;
  p.window = 5;
  CHECK(absl::IsInvalidArgument(SelfConsistencyPolicy::Create(p).status()));
  p.window = 2;
  p.answer = "regex:(";
  CHECK(absl::IsInvalidArgument(SelfConsistencyPolicy::Create(p).status()));
}

// ---------------------------------------------------------------------------
// End to end on SmolLM2.

const char kPrompt[] = "Q: What is 6 times 7? A:";

std::optional<std::string> LastNumber(const std::string& text) {
  auto extractor = MakeAnswerExtractor("last_number");
  REQUIRE(extractor.ok());
  return (*extractor)->Extract(text);
}

TEST_CASE("ESC on SmolLM2: identical greedy samples stop after one window, blocks freed") {
  constexpr int32_t kE2eMaxTokens = 12;
  const std::vector<int32_t> prompt = testing::TestEncode(kPrompt);
  const testing::Outcome plain = testing::RunAlone(prompt, testing::GreedyParams(kE2eMaxTokens));
  const testing::TestChoice& want = plain.choices.at(0);
  const std::optional<std::string> answer = LastNumber(want.text);
  REQUIRE(answer.has_value());  // the prompt makes the model name a number
  auto policy = Make(6, 2, SelfConsistencyRule::kEsc);
  const testing::Outcome got =
      testing::RunAlone(prompt, testing::GreedyParams(kE2eMaxTokens), policy);
  REQUIRE(got.choices.size() == 1);
  CHECK(got.choices.at(0).tokens == want.tokens);
  CHECK(got.choices.at(0).text == want.text);
  CHECK(got.steps == plain.steps);  // done when the first window is
  CHECK(got.used_blocks_at_end == 0);
  const double len = static_cast<double>(want.tokens.size());
  CHECK(got.report ==
        std::vector<std::pair<std::string, double>>{{"samples_used", 2},
                                                    {"traces_pruned", 4},
                                                    {"stopped_early", 1},
                                                    {"tokens_generated", 2 * len + 4},
                                                    {"tokens_saved", 4.0 * (kE2eMaxTokens - 1)},
                                                    {"winner_share", 1},
                                                    {"votes:" + *answer, 2}});
}

// Oracle: sample i alone, seeded seed + i; ESC by hand over windows of 2.
size_t CheckSeededEsc(uint64_t seed) {
  constexpr int kN = 6, kWindow = 2;
  constexpr int32_t kE2eMaxTokens = 10;
  const std::vector<int32_t> prompt = testing::TestEncode(kPrompt);
  SamplingParams sampling = testing::SeededParams(kE2eMaxTokens, seed, 0.5f, /*top_p=*/1.0f);
  sampling.top_p = 0.95f;  // off the far tail (see deepconf_policy_test)
  std::vector<testing::TestChoice> samples;
  std::vector<std::optional<std::string>> answers;
  size_t used = kN;
  for (int i = 0; i < kN; ++i) {
    SamplingParams one = sampling;
    one.seed = seed + static_cast<uint64_t>(i);
    samples.push_back(testing::RunAlone(prompt, one).choices.at(0));
    answers.push_back(LastNumber(samples.back().text));
    if (used == kN && (i + 1) % kWindow == 0 && answers[i].has_value() &&
        answers[i] == answers[i - 1]) {
      used = static_cast<size_t>(i + 1);
    }
  }
  std::map<std::string, int> counts;
  std::optional<std::string> winner;
  for (size_t i = 0; i < used; ++i) {
    if (!answers[i]) continue;
    const int c = ++counts[*answers[i]];
    if (!winner || c > counts[*winner]) winner = answers[i];
  }
  size_t chosen = 0;
  while (winner && answers[chosen] != winner) ++chosen;

  auto policy = Make(kN, kWindow, SelfConsistencyRule::kEsc);
  const testing::Outcome got = testing::RunAlone(prompt, sampling, policy);
  const PolicyResult result{{}, got.report};
  CHECK(got.choices.at(0).tokens == samples[chosen].tokens);
  CHECK(Figure(result, "samples_used") == static_cast<double>(used));
  CHECK(Figure(result, "traces_pruned") == static_cast<double>(kN - used));
  CHECK(Figure(result, "votes:" + winner.value_or("")) == counts[winner.value_or("")]);
  double generated = static_cast<double>(kN - used);  // the held-back first tokens
  for (size_t i = 0; i < used; ++i) generated += static_cast<double>(samples[i].tokens.size());
  CHECK(Figure(result, "tokens_generated") == generated);
  CHECK(got.used_blocks_at_end == 0);
  return used;
}

TEST_CASE("ESC on SmolLM2 decides as the rule does over plain seeded samples") {
  // Seed 104: the first window agrees (2 samples used); seed 99: only the
  // third does (all 6 used), found by running the oracle. Both paths must
  // be covered whatever the seeds give.
  std::vector<size_t> used;
  for (const uint64_t seed : {uint64_t{104}, uint64_t{99}}) {
    INFO("seed " << seed);
    used.push_back(CheckSeededEsc(seed));
  }
  CHECK(std::count(used.begin(), used.end(), size_t{6}) == 1);
}

}  // namespace
}  // namespace alignserve
