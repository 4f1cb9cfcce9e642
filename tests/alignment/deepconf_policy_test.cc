// DeepConfPolicy: the warm-up threshold, the exact token at which a later
// trace is aborted, who votes and with what weight. Scripted traces
// (FakePolicyEngine) pin every decision; end to end on SmolLM2 the oracle
// recomputes everything by brute force from the top logprobs the engine
// showed the policy, and the tokens from plain requests seeded seed + i.
#include "alignment/deepconf_policy.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "engine/llm_engine.h"
#include "tests/alignment/fake_policy_engine.h"
#include "tests/alignment/policy_e2e.h"

namespace alignserve {
namespace {

using testing::FakePolicyEngine;
using testing::Figure;
using testing::RecordingPolicy;
using testing::ScriptedTrace;

constexpr int32_t kMaxTokens = 50;

// --- Brute-force oracle (no GroupConfidenceWindow, no DeepConfThreshold).
double Conf(const std::vector<float>& top) {
  double sum = 0;
  for (float lp : top) sum += lp;
  return top.empty() ? 0 : -sum / static_cast<double>(top.size());
}
double WindowMean(const std::vector<double>& c, size_t end, size_t w) {
  return std::accumulate(c.begin() + static_cast<long>(end - w), c.begin() + static_cast<long>(end),
                         0.0) /
         static_cast<double>(w);
}
double Lowest(const std::vector<double>& c, size_t w) {
  if (c.size() < w) return std::accumulate(c.begin(), c.end(), 0.0) / static_cast<double>(c.size());
  double lowest = INFINITY;
  for (size_t end = w; end <= c.size(); ++end) lowest = std::min(lowest, WindowMean(c, end, w));
  return lowest;
}
// Tokens at the first full window whose mean is < s; 0 if none.
size_t FirstBelow(const std::vector<double>& c, size_t w, double s) {
  for (size_t end = w; end <= c.size(); ++end) {
    if (WindowMean(c, end, w) < s) return end;
  }
  return 0;
}
double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const double rank = p / 100 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(rank);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (rank - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

// A trace whose token i has confidence conf[i] (top-2 logprobs -c, -c).
ScriptedTrace Trace(const std::vector<double>& conf, const std::string& answer,
                    FinishReason end = FinishReason::kLength) {
  ScriptedTrace t;
  for (size_t i = 0; i < conf.size(); ++i) {
    t.tokens.push_back(static_cast<int32_t>(2000 + i));
    t.top.push_back({static_cast<float>(-conf[i]), static_cast<float>(-conf[i])});
  }
  t.text = "The answer is " + answer;
  t.end = end;
  return t;
}

std::shared_ptr<DeepConfPolicy> Make(int n, int n_init, int window, double percentile,
                                     int top_k = 2) {
  DeepConfParams p;
  p.n = n;
  p.n_init = n_init;
  p.window = window;
  p.percentile = percentile;
  p.top_k = top_k;
  auto made = DeepConfPolicy::Create(p);
  REQUIRE(made.ok());
  return *made;
}

TEST_CASE("deepconf sets the threshold from the warm-up and aborts at the first low window") {
  const std::vector<std::vector<double>> conf = {
      {3, 3, 1, 1},
      {2, 2, 2, 2},
      {6, 6, 5, 5},          // warm-up: lowest 1, 2, 5
      {5, 5, 3, 0.5, 5, 5},  // window mean 1.75 < 2 at token 4
      {2, 2, 2, 2, 2},       // never below 2: survives, votes 2
      {0.5}};                // ends at once, too short: no vote
  const std::vector<std::string> answers = {"1", "2", "3", "4", "2", "6"};
  std::vector<ScriptedTrace> traces;
  for (size_t i = 0; i < conf.size(); ++i) traces.push_back(Trace(conf[i], answers[i]));
  traces[5].end = FinishReason::kStop;
  auto policy = Make(6, 3, 2, 50);
  FakePolicyEngine engine(*policy, traces, kMaxTokens);
  const PolicyResult result = engine.Run();

  const double s = Percentile({Lowest(conf[0], 2), Lowest(conf[1], 2), Lowest(conf[2], 2)}, 50);
  REQUIRE(s == 2.0);
  CHECK(policy->threshold() == s);
  CHECK(Figure(result, "threshold") == s);
  REQUIRE(FirstBelow(conf[3], 2, s) == 4);
  CHECK(engine.state(3).out.size() == 4);
  CHECK(engine.state(3).reason == FinishReason::kAbort);
  CHECK(engine.state(3).end_step == 6);  // resumed at step 3, tokens 2-4 at steps 4-6
  CHECK(engine.state(4).reason == FinishReason::kLength);
  // Later traces waited after their first token until the warm-up ended.
  CHECK(engine.state(4).token_steps == std::vector<int64_t>{0, 4, 5, 6, 7});
  // Votes: trace 1 ("2", 2), trace 2 ("3", 5), trace 4 ("2", 2); trace 0's
  // lowest 1 and trace 5's 0.5 are below s. "3" wins on weight 5 > 4.
  CHECK(Figure(result, "traces_voting") == 3);
  CHECK(Figure(result, "votes:2") == 4.0);
  CHECK(Figure(result, "votes:3") == 5.0);
  CHECK_FALSE(Figure(result, "votes:1").has_value());
  CHECK(result.choices == std::vector<int64_t>{FakePolicyEngine::Id(2)});
  CHECK(Figure(result, "traces_pruned") == 1);
  CHECK(Figure(result, "tokens_generated") == 4 * 3 + 4 + 5 + 1);
  CHECK(Figure(result, "tokens_saved") == kMaxTokens - 4);
}

TEST_CASE("deepconf aborts a resumed trace at once when its full window is already low") {
  auto policy = Make(2, 1, 1, 50);
  FakePolicyEngine engine(*policy, {Trace({2, 2, 2}, "1"), Trace({1, 3, 3}, "1")}, kMaxTokens);
  const PolicyResult result = engine.Run();
  CHECK(policy->threshold() == 2.0);
  CHECK(engine.state(1).out.size() == 1);
  CHECK(engine.state(1).reason == FinishReason::kAbort);
  CHECK(engine.state(1).end_step == 2);  // the step the warm-up ended
  CHECK(result.choices == std::vector<int64_t>{FakePolicyEngine::Id(0)});
}

TEST_CASE("deepconf stops the remaining traces once the vote reaches consensus") {
  // Every token has confidence 3, so the threshold is 3, nothing falls
  // below it and every finished trace votes with weight 3. Warm-up: "7"
  // and "8" (share 1/2). Trace 2 ends at its second token with "7": share
  // 2/3, at least tau 0.6, so traces 3 and 4 (10 tokens each) stop then.
  const std::vector<double> flat2(2, 3.0), flat10(10, 3.0);
  const std::vector<ScriptedTrace> traces = {Trace(flat2, "7"), Trace(flat2, "8"),
                                             Trace(flat2, "7", FinishReason::kStop),
                                             Trace(flat10, "8"), Trace(flat10, "8")};
  for (const std::optional<double> tau : {std::optional<double>(0.6), std::optional<double>()}) {
    INFO((tau ? "consensus 0.6" : "no consensus"));
    DeepConfParams p;
    p.n = 5;
    p.n_init = 2;
    p.window = 2;
    p.percentile = 10;
    p.top_k = 2;
    p.consensus = tau;
    auto made = DeepConfPolicy::Create(p);
    REQUIRE(made.ok());
    FakePolicyEngine engine(**made, traces, kMaxTokens);
    const PolicyResult result = engine.Run();
    CHECK((*made)->threshold() == 3.0);
    if (tau) {
      for (int i : {3, 4}) {
        CHECK(engine.state(i).reason == FinishReason::kAbort);
        CHECK(engine.state(i).out.size() == 2);  // stopped in the step trace 2 ended
      }
      CHECK(Figure(result, "consensus_reached") == 1);
      CHECK(Figure(result, "traces_stopped_at_consensus") == 2);
      CHECK(Figure(result, "traces_pruned") == 2);
      CHECK(Figure(result, "traces_voting") == 3);
      CHECK(Figure(result, "votes:7") == 6.0);
      CHECK(result.choices == std::vector<int64_t>{FakePolicyEngine::Id(0)});
      CHECK(Figure(result, "tokens_generated") == 5 * 2);
    } else {
      // Without it they run out; "8" then wins 9 to 6.
      for (int i : {3, 4}) CHECK(engine.state(i).reason == FinishReason::kLength);
      CHECK_FALSE(Figure(result, "consensus_reached").has_value());
      CHECK(Figure(result, "votes:8") == 9.0);
      CHECK(result.choices == std::vector<int64_t>{FakePolicyEngine::Id(1)});
      CHECK(Figure(result, "tokens_generated") == 3 * 2 + 2 * 10);
    }
  }
}

TEST_CASE("deepconf percentiles: 90 keeps the top tenth of the warm-up voting") {
  std::vector<std::vector<double>> conf;
  std::vector<ScriptedTrace> traces;
  for (int i = 0; i < 10; ++i) {
    conf.push_back({1.0 + i, 1.0 + i});
    traces.push_back(Trace(conf.back(), std::to_string(i)));
  }
  auto policy = Make(10, 10, 4, 90);
  FakePolicyEngine engine(*policy, traces, kMaxTokens);
  const PolicyResult result = engine.Run();
  std::vector<double> lowest;
  for (const auto& c : conf) lowest.push_back(Lowest(c, 4));
  CHECK(policy->threshold() == Approx(Percentile(lowest, 90)).epsilon(1e-12));  // 9.1
  CHECK(Figure(result, "traces_voting") == 1);  // only lowest 10 >= 9.1
  CHECK(result.choices == std::vector<int64_t>{FakePolicyEngine::Id(9)});
}

// ---------------------------------------------------------------------------
// End to end on SmolLM2.

TEST_CASE("deepconf on SmolLM2 matches the brute-force oracle over the engine's logprobs") {
  constexpr int kN = 6, kInit = 3, kWindow = 4, kTopK = 5;
  constexpr double kPercentile = 60;
  constexpr int32_t kE2eMaxTokens = 16;
  // top_p keeps the draw off the far tail, where the rounding differences
  // between a batch of 6 and a request alone could pick another token.
  SamplingParams sampling = testing::SeededParams(kE2eMaxTokens, 4242, 1.2f, /*top_p=*/1.0f);
  sampling.top_p = 0.95f;
  auto inner = Make(kN, kInit, kWindow, kPercentile, kTopK);
  auto recorder = std::make_shared<RecordingPolicy>(inner);
  const std::vector<int32_t> prompt = testing::TestEncode("Q: What is 6 times 7? A:");
  const testing::Outcome outcome = testing::RunAlone(prompt, sampling, recorder);

  // Sample i (seq ids ascending) against the plain request seeded seed + i.
  std::vector<int64_t> ids;
  for (const auto& [id, seen] : recorder->seen) ids.push_back(id);
  REQUIRE(ids.size() == kN);
  std::vector<std::vector<double>> conf(kN);
  for (int i = 0; i < kN; ++i) {
    const auto& seen = recorder->seen.at(ids[i]);
    for (const auto& top : seen.top) {
      REQUIRE(top.size() == kTopK);
      conf[i].push_back(Conf(top));
    }
    SamplingParams plain = sampling;
    plain.seed = *sampling.seed + static_cast<uint64_t>(i);
    plain.logprobs = kTopK;
    const testing::Outcome alone = testing::RunAlone(prompt, plain);
    const std::vector<int32_t>& full = alone.choices.at(0).tokens;
    const std::vector<int32_t>& got = recorder->final_tokens.at(ids[i]);
    REQUIRE(got.size() <= full.size());
    INFO("trace " << i);
    double max_diff = 0;
    for (size_t t = 0; t < got.size(); ++t) {
      std::vector<float> top;
      for (const TokenLogprob& lp : alone.choices.at(0).logprobs[t].top) top.push_back(lp.logprob);
      max_diff = std::max(max_diff, std::abs(Conf(top) - conf[i][t]));
    }
    // Batched and alone differ only by float rounding (~1e-6 seen).
    CHECK(max_diff < 1e-4);
    for (size_t t = 0; t < got.size(); ++t) {
      INFO("token " << t << " top " << conf[i][t]);
      CHECK(got[t] == full[t]);
    }
  }
  std::vector<double> warm;
  for (int i = 0; i < kInit; ++i) warm.push_back(Lowest(conf[i], kWindow));
  const double s = Percentile(warm, kPercentile);
  CHECK(inner->threshold().value() == Approx(s).epsilon(1e-9));
  int pruned = 0;
  for (int i = kInit; i < kN; ++i) {
    const size_t below = FirstBelow(conf[i], kWindow, s);
    const FinishReason reason = recorder->final_reasons.at(ids[i]);
    INFO("trace " << i << " first low window at " << below << " of " << conf[i].size());
    if (below != 0 && below < static_cast<size_t>(kE2eMaxTokens)) {
      CHECK(reason == FinishReason::kAbort);
      CHECK(recorder->final_tokens.at(ids[i]).size() == below);  // aborted at exactly that token
      ++pruned;
    } else {
      CHECK(reason != FinishReason::kAbort);
    }
  }
  CHECK(Figure(recorder->result, "traces_pruned") == pruned);
  CHECK(outcome.report == recorder->result.report);
  size_t generated = 0;
  for (const auto& [id, seen] : recorder->seen) generated += seen.tokens.size();
  CHECK(Figure(recorder->result, "tokens_generated") == static_cast<double>(generated));
  WARN("deepconf e2e: threshold " << s << ", pruned " << pruned << " of " << kN - kInit);
}

}  // namespace
}  // namespace alignserve
