// LoopGuardPolicy: stops a sequence (kStop, text kept) at exactly the token
// where a brute-force scan first finds an n-gram occurring 3 times inside
// the window; leaves a healthy path alone. Scripted paths pin the decision;
// end to end, SmolLM2 greedy on a repetitive prompt loops, and the oracle is
// the plain greedy run of the same request scanned by brute force.
#include "alignment/loop_guard_policy.h"

#include <catch2/catch.hpp>
#include <vector>

#include "tests/alignment/fake_policy_engine.h"
#include "tests/alignment/policy_e2e.h"

namespace alignserve {
namespace {

using testing::FakePolicyEngine;
using testing::Figure;
using testing::ScriptedTrace;

constexpr int32_t kMaxTokens = 100;

// Output tokens after which some n-gram lying wholly in the last `window`
// tokens occurs >= 3 times (overlaps allowed); 0 if never.
size_t FirstLoop(const std::vector<int32_t>& path, size_t ngram, size_t window) {
  for (size_t t = ngram; t <= path.size(); ++t) {
    const size_t begin = t > window ? t - window : 0;
    for (size_t a = begin; a + ngram <= t; ++a) {
      int count = 0;
      for (size_t b = begin; b + ngram <= t; ++b) {
        count += std::equal(path.begin() + static_cast<long>(a),
                            path.begin() + static_cast<long>(a + ngram),
                            path.begin() + static_cast<long>(b));
      }
      if (count >= 3) return t;
    }
  }
  return 0;
}

std::shared_ptr<LoopGuardPolicy> Make(int ngram, int window) {
  LoopGuardParams p;
  p.ngram = ngram;
  p.window = window;
  auto made = LoopGuardPolicy::Create(p);
  REQUIRE(made.ok());
  return *made;
}

TEST_CASE("loop_guard stops a looping path at exactly the token the definition says") {
  ScriptedTrace trace;
  for (int i = 0; i < 11; ++i) trace.tokens.push_back(10 + i);
  for (int i = 0; i < 20; ++i) trace.tokens.push_back(i % 3 == 0 ? 7 : 8 + i % 3);  // period 3
  trace.text = "looping";
  const size_t expected = FirstLoop(trace.tokens, 3, 16);
  REQUIRE(expected == 11 + 3 * 2 + 3);  // third occurrence of the first 3-gram of the loop
  auto policy = Make(3, 16);
  FakePolicyEngine engine(*policy, {trace}, kMaxTokens);
  const PolicyResult result = engine.Run();
  CHECK(engine.state(0).out.size() == expected);
  CHECK(engine.state(0).reason == FinishReason::kStop);
  CHECK(result.choices == std::vector<int64_t>{FakePolicyEngine::Id(0)});
  CHECK(policy->loop_detected_at_token() == static_cast<int64_t>(expected));
  CHECK(Figure(result, "loop_detected") == 1);
  CHECK(Figure(result, "loop_detected_at_token") == static_cast<double>(expected));
  CHECK(Figure(result, "tokens_generated") == static_cast<double>(expected));
  CHECK(Figure(result, "tokens_saved") == static_cast<double>(kMaxTokens - expected));
}

TEST_CASE("loop_guard leaves a path alone whose repeats spread wider than the window") {
  ScriptedTrace trace;
  // The 2-gram (5, 6) recurs every 10 tokens: at most 2 occurrences in 16.
  for (int i = 0; i < 60; ++i) trace.tokens.push_back(i % 10 < 2 ? 5 + i % 10 : 100 + i);
  REQUIRE(FirstLoop(trace.tokens, 2, 16) == 0);
  auto policy = Make(2, 16);
  FakePolicyEngine engine(*policy, {trace}, kMaxTokens);
  const PolicyResult result = engine.Run();
  CHECK(engine.state(0).out.size() == 60);
  CHECK(engine.state(0).reason == FinishReason::kLength);
  CHECK(Figure(result, "loop_detected") == 0);
  CHECK_FALSE(Figure(result, "loop_detected_at_token").has_value());
}

TEST_CASE("SequenceLoopGuards keeps one guard per sequence and feeds a fork its whole path") {
  LoopGuardConfig config;
  config.ngram = 1;
  config.window = 8;
  auto guards = SequenceLoopGuards::Create(config);
  REQUIRE(guards.ok());
  const std::vector<int32_t> a = {4, 4, 4};
  CHECK_FALSE(guards->Add(1, std::span<const int32_t>(a).first(1)));
  CHECK_FALSE(guards->Add(1, std::span<const int32_t>(a).first(2)));
  CHECK_FALSE(guards->Add(2, std::span<const int32_t>(a).first(1)));  // its own count
  CHECK(guards->Add(1, a));
  CHECK(guards->Add(3, a));  // first seen with 3 tokens: all of them counted
  CHECK(guards->loops_detected() == 2);
  config.ngram = 9;
  CHECK(absl::IsInvalidArgument(SequenceLoopGuards::Create(config).status()));
}

TEST_CASE("loop_guard on SmolLM2 stops greedy repetition where the plain run first loops") {
  constexpr int kNgram = 4, kWindow = 64;
  constexpr int32_t kE2eMaxTokens = 48;
  const std::vector<int32_t> prompt =
      testing::TestEncode("Repeat after me forever: la la la la la la la la la la la la");
  const testing::Outcome plain = testing::RunAlone(prompt, testing::GreedyParams(kE2eMaxTokens));
  const std::vector<int32_t>& path = plain.choices.at(0).tokens;
  const size_t expected = FirstLoop(path, kNgram, kWindow);
  REQUIRE(expected > 0);  // the model does loop on this prompt
  auto policy = Make(kNgram, kWindow);
  const testing::Outcome guarded =
      testing::RunAlone(prompt, testing::GreedyParams(kE2eMaxTokens), policy);
  const testing::TestChoice& choice = guarded.choices.at(0);
  REQUIRE(choice.tokens.size() == expected);
  CHECK(std::equal(choice.tokens.begin(), choice.tokens.end(), path.begin()));
  CHECK(choice.reason == FinishReason::kStop);
  CHECK_FALSE(choice.text.empty());
  CHECK(policy->loop_detected_at_token() == static_cast<int64_t>(expected));
  CHECK(guarded.report == std::vector<std::pair<std::string, double>>{
                              {"loop_detected", 1},
                              {"tokens_generated", static_cast<double>(expected)},
                              {"tokens_saved", static_cast<double>(kE2eMaxTokens - expected)},
                              {"loop_detected_at_token", static_cast<double>(expected)}});
}

}  // namespace
}  // namespace alignserve
