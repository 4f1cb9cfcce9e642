// prm_beam_search on a scripted fake engine (FakeTreeEngine) with a scripted
// reward (a fixed score per text), then once with the judge through LlmEngine
// on SmolLM2. Oracles: a worked example whose every command is written out by
// hand; and on random scripts, each round's decision re-derived from the
// engine's event log and the script's rewards alone (which beams were paused,
// which were aborted, forked and resumed, how many had completed), never from
// the policy's own figures.
#include "alignment/prm_beam_search_policy.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "alignment/judge_reward_model.h"
#include "tests/alignment/fake_policy_engine.h"
#include "tests/alignment/fake_tree_engine.h"
#include "tests/alignment/judge_test_util.h"
#include "tests/alignment/policy_e2e.h"
#include "tests/engine/policy_test_util.h"

namespace alignserve {
namespace {

using testing::FakeTreeEngine;
using testing::Figure;
using testing::Piece;
using testing::TreeScript;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr FinishReason kStop = FinishReason::kStop;
constexpr FinishReason kLength = FinishReason::kLength;

// A reward per response text: nullopt makes Submit fail (as a pair too long
// for the judge), NaN makes the delivered result carry no reward.
using RewardScript = std::function<std::optional<double>(const std::string& response)>;

class ScriptedReward final : public RewardModel {
 public:
  explicit ScriptedReward(RewardScript script) : script_(std::move(script)) {}

  absl::StatusOr<int64_t> Submit(const RewardInput& input, PolicyContext& ctx) const override {
    const std::string_view response = input.response;
    if (!script_(std::string(response)).has_value()) {
      return absl::InvalidArgumentError("scripted failure");
    }
    absl::StatusOr<int64_t> id = ctx.Score(ScoreRequest{{1}, {1}});
    if (id.ok()) submitted_[*id] = std::string(response);
    return id;
  }
  double Reward(const ScoreResult& result) const override {
    const auto it = submitted_.find(result.score_id);
    if (!result.status.ok() || it == submitted_.end()) return kNaN;
    return *script_(it->second);
  }
  size_t num_submitted() const { return submitted_.size(); }

 private:
  RewardScript script_;
  mutable std::map<int64_t, std::string> submitted_;  // score id -> response
};

PrmBeamSearchOptions Options(PrmBeamSearchParams params) {
  PrmBeamSearchOptions options;
  options.params = std::move(params);
  options.prompt = "question";
  return options;
}

std::shared_ptr<PrmBeamSearchPolicy> MakeBeams(int32_t n, int32_t width, std::string delimiter,
                                               RewardScript reward) {
  auto made = PrmBeamSearchPolicy::Create(Options({n, width, std::move(delimiter)}),
                                          std::make_shared<ScriptedReward>(reward));
  REQUIRE(made.ok());
  return *made;
}

double Report(const PolicyResult& result, const std::string& key) {
  const std::optional<double> value = Figure(result, key);
  INFO("report key " << key);
  REQUIRE(value.has_value());
  return *value;
}

// The worked example, N = 4 beams, M = 2: each round keeps 2 and forks each
// once. Sequence i's piece at output position d is kHandPieces {i, d}.
const std::map<std::pair<int32_t, int32_t>, Piece> kHandPieces = {
    {{0, 0}, {"a0\n\n"}},    {{1, 0}, {"a1\n\n"}},      {{2, 0}, {"a2\n\n"}},
    {{3, 0}, {"a3\n\n"}},    {{1, 1}, {"b1\n\n"}},      {{4, 1}, {"b4", kStop}},
    {{2, 1}, {"b2\n\n"}},    {{5, 1}, {"b5\n\n"}},      {{1, 2}, {"c1\n\n"}},
    {{5, 2}, {"c5", kStop}}, {{6, 2}, {"c6", kLength}}, {{7, 2}, {"c7", kStop}},
};
const std::map<std::string, std::optional<double>> kHandRewards = {
    {"a0\n\n", 0.1},  // round 0: a1 best; a2 and a3 tie, a2 (smaller id) kept
    {"a1\n\n", 0.9},
    {"a2\n\n", 0.5},
    {"a3\n\n", 0.5},
    {"a1\n\nb1\n\n", 0.2},  // round 1: b5 > b1 > b2 (failed submit)
    {"a1\n\nb4", 0.6},      // completes
    {"a2\n\nb2\n\n", std::nullopt},
    {"a2\n\nb5\n\n", 0.3},
    {"a1\n\nb1\n\nc1\n\n", 5.0},  // round 2: paused, but 4 have completed
    {"a2\n\nb5\n\nc5", 0.6},
    {"a2\n\nb5\n\nc6", 0.95},  // the answer
    {"a1\n\nb1\n\nc7", kNaN},  // a failed score never wins
};

TEST_CASE("prm_beam_search keeps the top N/M each round, forks each M-1 ways, ends at N done") {
  auto policy = MakeBeams(4, 2, "\n\n", [](const std::string& text) {
    INFO("scored text " << text);
    REQUIRE(kHandRewards.contains(text));
    return kHandRewards.at(text);
  });
  FakeTreeEngine engine(*policy, [](int32_t index, int32_t depth, std::string_view) {
    INFO("piece " << index << ", " << depth);
    REQUIRE(kHandPieces.contains({index, depth}));
    return kHandPieces.at({index, depth});
  });
  const PolicyResult result = engine.Run();

  const std::vector<std::string> expected = {
      // Round 0: all four pause at their first step, scores arrive at step 2.
      "pause 100 @0", "pause 101 @0", "pause 102 @0", "pause 103 @0",
      // Keep 101 (0.9) and 102 (0.5, the tie with 103 goes to the smaller
      // id); abort the rest in rank order; fork the kept best first.
      "end 103 abort @2", "end 100 abort @2", "fork 101 -> 104 @2", "resume 101 @2",
      "fork 102 -> 105 @2", "resume 102 @2",
      // Round 1: 104 completes; 102's submit fails (NaN ranks last).
      "pause 101 @2", "pause 102 @2", "end 104 stop @2", "pause 105 @2",
      // Keep 105 (0.3) and 101 (0.2); fork them in that order.
      "end 102 abort @4", "fork 105 -> 106 @4", "resume 105 @4", "fork 101 -> 107 @4",
      "resume 101 @4",
      // Round 2: three complete (4 in all = N), so paused 101 is aborted.
      "pause 101 @4", "end 105 stop @4", "end 106 length @4", "end 107 stop @4",
      "end 101 abort @6"};
  CHECK(engine.log == expected);

  REQUIRE(result.choices == std::vector<int64_t>{FakeTreeEngine::Id(6)});
  CHECK(engine.seq(FakeTreeEngine::Id(6)).text == "a2\n\nb5\n\nc6");
  CHECK(Report(result, "chosen_reward") == 0.95);
  CHECK(Report(result, "rounds") == 3);
  CHECK(Report(result, "num_completed") == 4);
  CHECK(Report(result, "traces_pruned") == 4);  // 100, 103; 102; 101
  CHECK(Report(result, "beams_forked") == 4);
  CHECK(Report(result, "num_scored") == 10);  // 4 + 3 + 3: one submit failed, one NaN
  CHECK(Report(result, "tokens_generated") == 12);
  std::vector<std::string> keys;
  for (const auto& [key, value] : result.report) keys.push_back(key);
  CHECK(keys == std::vector<std::string>{"rounds", "num_completed", "traces_pruned", "beams_forked",
                                         "num_scored", "tokens_generated", "chosen_reward"});
}

// Ties everywhere: every step scores 1. The group cap stops the second fork.
TEST_CASE("prm_beam_search ties go to the smaller seq id; a refused fork leaves the beam alone") {
  auto policy = MakeBeams(4, 2, "\n\n", [](const std::string&) { return 1.0; });
  FakeTreeEngine engine(*policy, [](int32_t index, int32_t depth, std::string_view) {
    return depth == 0 ? Piece{"x" + std::to_string(index) + "\n\n"}
                      : Piece{"y" + std::to_string(index), kStop};
  });
  engine.max_sequences = 5;
  const PolicyResult result = engine.Run();
  const std::vector<std::string> expected = {
      "pause 100 @0",     "pause 101 @0",     "pause 102 @0",       "pause 103 @0",
      "end 102 abort @2", "end 103 abort @2", "fork 100 -> 104 @2", "resume 100 @2",
      "resume 101 @2",    "end 100 stop @2",  "end 101 stop @2",    "end 104 stop @2"};
  CHECK(engine.log == expected);
  CHECK(result.choices == std::vector<int64_t>{FakeTreeEngine::Id(0)});
  CHECK(Report(result, "rounds") == 2);
  CHECK(Report(result, "num_completed") == 3);
  CHECK(Report(result, "traces_pruned") == 2);
  CHECK(Report(result, "beams_forked") == 1);
  CHECK(Report(result, "chosen_reward") == 1.0);
}

TEST_CASE("prm_beam_search never returns a failed score; with none scored, the first unpruned") {
  const auto finish_at_once = [](int32_t index, int32_t, std::string_view) {
    return Piece{"done" + std::to_string(index), kStop};
  };
  SECTION("a NaN loses to any number, even a low one") {
    auto policy = MakeBeams(2, 1, "\n\n", [](const std::string& text) -> std::optional<double> {
      return text == "done0" ? kNaN : -5.0;
    });
    FakeTreeEngine engine(*policy, finish_at_once);
    const PolicyResult result = engine.Run();
    CHECK(result.choices == std::vector<int64_t>{FakeTreeEngine::Id(1)});
    CHECK(Report(result, "chosen_reward") == -5.0);
    CHECK(Report(result, "num_scored") == 1);
    CHECK(Report(result, "rounds") == 1);
  }
  SECTION("nothing scored") {
    auto policy = MakeBeams(2, 1, "\n\n", [](const std::string& text) -> std::optional<double> {
      if (text == "done0") return std::nullopt;
      return kNaN;
    });
    FakeTreeEngine engine(*policy, finish_at_once);
    const PolicyResult result = engine.Run();
    CHECK(result.choices == std::vector<int64_t>{FakeTreeEngine::Id(0)});
    CHECK(std::isnan(Report(result, "chosen_reward")));
    CHECK(Report(result, "num_scored") == 0);
    CHECK(Report(result, "num_completed") == 2);
  }
}

// Random scripts: pieces and rewards from a hash, with many ties, failed
// submits and NaN scores.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
uint64_t Hash(std::string_view text, uint64_t seed) {
  uint64_t h = Mix(seed);
  for (const char c : text) h = Mix(h ^ static_cast<unsigned char>(c));
  return h;
}

constexpr char kDelimiter[] = ";";
constexpr int32_t kMaxDepth = 7;

TreeScript RandomScript(uint64_t seed) {
  return [seed](int32_t index, int32_t depth, std::string_view) {
    if (depth + 1 >= kMaxDepth) return Piece{"z", kLength};
    const uint64_t r = Mix(seed ^ Mix(static_cast<uint64_t>(index) * 131 + depth)) % 10;
    const std::string tag = std::to_string(index) + "." + std::to_string(depth);
    if (r < 6) return Piece{"s" + tag + kDelimiter};
    if (r < 8) return Piece{"t" + tag + " "};
    return Piece{"e" + tag, kStop};
  };
}

RewardScript RandomReward(uint64_t seed) {
  return [seed](const std::string& text) -> std::optional<double> {
    const uint64_t h = Hash(text, seed);
    if (h % 17 == 0) return std::nullopt;
    if (h % 13 == 0) return kNaN;
    return static_cast<double>(h % 5) * 0.25;
  };
}

// The rank order the policy documents, written out again: reward
// descending, failed (nullopt or NaN) last, ties to the smaller id.
bool Before(std::optional<double> ra, int64_t a, std::optional<double> rb, int64_t b) {
  const bool sa = ra.has_value() && !std::isnan(*ra);
  const bool sb = rb.has_value() && !std::isnan(*rb);
  if (sa != sb) return sa;
  if (sa && *ra != *rb) return *ra > *rb;
  return a < b;
}

// One decision as the engine saw it: the commands of one hook call.
struct Decision {
  std::map<int64_t, std::string> paused;  // before it: seq id -> text scored
  std::set<int64_t> live;                 // unfinished sequences before it
  int completed = 0;                      // sequences finished (not aborted) before it
  std::set<int64_t> aborted;
  std::set<int64_t> resumed;
  std::map<int64_t, int> forks;  // parent -> children
};

std::vector<Decision> Decisions(const FakeTreeEngine& engine, int32_t n) {
  std::vector<Decision> out;
  std::map<int64_t, std::string> paused;
  std::set<int64_t> live;
  for (int32_t i = 0; i < n; ++i) live.insert(FakeTreeEngine::Id(i));
  int completed = 0;
  bool open = false;
  for (const FakeTreeEngine::Event& e : engine.events) {
    const bool command = e.kind == "resume" || e.kind == "fork" ||
                         (e.kind == "end" && e.reason == FinishReason::kAbort);
    if (e.kind == "hook") open = false;
    if (command && !open) {
      out.emplace_back();
      out.back().paused = paused;
      out.back().live = live;
      out.back().completed = completed;
      open = true;
    }
    if (e.kind == "pause") paused[e.id] = e.text;
    if (e.kind == "resume") {
      out.back().resumed.insert(e.id);
      paused.erase(e.id);
    }
    if (e.kind == "fork") {
      ++out.back().forks[e.id];
      live.insert(e.other);
    }
    if (e.kind == "end") {
      live.erase(e.id);
      paused.erase(e.id);
      if (e.reason == FinishReason::kAbort) {
        out.back().aborted.insert(e.id);
      } else {
        ++completed;
      }
    }
  }
  return out;
}

// Which situations the random runs reached, so the test knows it saw them.
struct Coverage {
  int tie_decided_by_id = 0;    // a kept and an aborted beam with the same reward
  int failed_score_pruned = 0;  // an aborted beam whose score failed
  int ended_at_n = 0;           // a decision that kept nothing: N had completed
  int fallback_choice = 0;      // no completed beam had a reward
};

void CheckRandomRun(int32_t n, int32_t width, uint64_t seed, Coverage& seen) {
  INFO("n " << n << " beam_width " << width << " seed " << seed);
  const RewardScript reward = RandomReward(seed);
  auto policy = MakeBeams(n, width, kDelimiter, reward);
  FakeTreeEngine engine(*policy, RandomScript(seed));
  const PolicyResult result = engine.Run();

  const std::vector<Decision> decisions = Decisions(engine, n);
  int64_t aborted = 0;
  int64_t forked = 0;
  for (size_t r = 0; r < decisions.size(); ++r) {
    const Decision& d = decisions[r];
    INFO("decision " << r);
    // Every live beam of the round had paused: the round was settled.
    for (const int64_t id : d.live) CHECK(d.paused.contains(id));
    std::set<int64_t> kept;
    for (const auto& [id, text] : d.paused) {
      if (!d.aborted.contains(id)) kept.insert(id);
    }
    for (const int64_t id : d.aborted) CHECK(d.paused.contains(id));
    const size_t want =
        d.completed >= n ? 0 : std::min(d.paused.size(), static_cast<size_t>(n / width));
    CHECK(kept.size() == want);
    CHECK(d.resumed == kept);
    for (const int64_t k : kept) {
      CHECK(d.forks.contains(k) == (width > 1));
      if (width > 1) CHECK(d.forks.at(k) == width - 1);
      for (const int64_t a : d.aborted) {
        INFO("kept " << k << " over aborted " << a);
        const std::optional<double> rk = reward(d.paused.at(k));
        const std::optional<double> ra = reward(d.paused.at(a));
        CHECK(Before(rk, k, ra, a));
        seen.tie_decided_by_id += rk.has_value() && ra.has_value() && *rk == *ra ? 1 : 0;
      }
    }
    for (const auto& [parent, count] : d.forks) CHECK(kept.contains(parent));
    for (const int64_t a : d.aborted) {
      const std::optional<double> ra = reward(d.paused.at(a));
      seen.failed_score_pruned += !ra.has_value() || std::isnan(*ra) ? 1 : 0;
    }
    seen.ended_at_n += kept.empty() ? 1 : 0;
    aborted += static_cast<int64_t>(d.aborted.size());
    for (const auto& [parent, count] : d.forks) forked += count;
  }

  // The answer: the best completed beam by its final text's reward.
  int64_t best = -1;
  std::optional<double> best_reward;
  int64_t completed = 0;
  int64_t scored = 0;
  for (const FakeTreeEngine::Event& e : engine.events) {
    const bool done = e.kind == "end" && e.reason != FinishReason::kAbort;
    if (e.kind != "pause" && !done) continue;
    const std::optional<double> r = reward(e.text);
    scored += r.has_value() && !std::isnan(*r) ? 1 : 0;
    if (!done) continue;
    ++completed;
    if (r.has_value() && !std::isnan(*r) && (best < 0 || Before(r, e.id, best_reward, best))) {
      best = e.id;
      best_reward = r;
    }
  }
  if (best < 0) {  // fallback: the first sequence not pruned
    ++seen.fallback_choice;
    for (const FakeTreeEngine::Seq& s : engine.seqs()) {
      if (s.reason != FinishReason::kAbort) {
        best = s.id;
        break;
      }
    }
  }
  CHECK(result.choices == std::vector<int64_t>{best});
  if (best_reward.has_value()) {
    CHECK(Report(result, "chosen_reward") == *best_reward);
  } else {
    CHECK(std::isnan(Report(result, "chosen_reward")));
  }
  const bool ended_by_prune = !decisions.empty() && decisions.back().resumed.empty();
  CHECK(Report(result, "rounds") ==
        static_cast<double>(decisions.size() + (ended_by_prune ? 0 : 1)));
  CHECK(Report(result, "num_completed") == static_cast<double>(completed));
  CHECK(Report(result, "traces_pruned") == static_cast<double>(aborted));
  CHECK(Report(result, "beams_forked") == static_cast<double>(forked));
  CHECK(Report(result, "num_scored") == static_cast<double>(scored));
  CHECK(Report(result, "tokens_generated") == static_cast<double>(engine.tokens_sampled()));
}

TEST_CASE("prm_beam_search decisions match the rank rule on random scripts") {
  const std::pair<int32_t, int32_t> shapes[] = {{4, 2}, {6, 3}, {8, 2}, {4, 4},
                                                {3, 1}, {1, 1}, {8, 8}, {12, 4}};
  Coverage seen;
  for (const auto& [n, width] : shapes) {
    for (uint64_t seed = 1; seed <= 40; ++seed) CheckRandomRun(n, width, seed, seen);
  }
  CHECK(seen.tie_decided_by_id > 0);
  CHECK(seen.failed_score_pruned > 0);
  CHECK(seen.ended_at_n > 0);
  CHECK(seen.fallback_choice > 0);
}

TEST_CASE("prm_beam_search rejects bad parameters and a missing reward model") {
  auto reward = std::make_shared<ScriptedReward>([](const std::string&) { return 0.0; });
  const PrmBeamSearchParams bad[] = {{0, 1, "\n\n"},
                                     {65, 1, "\n\n"},
                                     {4, 0, "\n\n"},
                                     {4, 3, "\n\n"},
                                     {4, 8, "\n\n"},
                                     {4, 2, ""},
                                     {4, 2, std::string(65, ';')}};
  for (const PrmBeamSearchParams& p : bad) {
    INFO("n " << p.n << " beam_width " << p.beam_width << " delimiter bytes "
              << p.delimiter.size());
    CHECK(absl::IsInvalidArgument(PrmBeamSearchPolicy::Create(Options(p), reward).status()));
  }
  CHECK(absl::IsInvalidArgument(
      PrmBeamSearchPolicy::Create(Options({4, 2, "\n\n"}), nullptr).status()));
  auto ok = PrmBeamSearchPolicy::Create(Options({6, 3, "Step"}), reward);
  REQUIRE(ok.ok());
  CHECK((*ok)->Spec().num_sequences == 6);
  CHECK((*ok)->Spec().boundary_delimiter == "Step");
}

// End to end: the served model judges every step (the default rubric)
// through LlmEngine. Oracles: each completed beam's judge score recomputed
// through the plain prompt_logprobs path; the counts from what the engine
// showed the policy (RecordingPolicy); RunAlone checks every block is free.
constexpr int32_t kE2eBeams = 4;
constexpr int32_t kE2eWidth = 2;
constexpr int32_t kE2eMaxTokens = 12;
constexpr uint64_t kE2eSeed = 11;
const char kE2ePrompt[] = "List three fruits, one per line.";
const char kE2eDelimiter[] = "\n";

double OracleReward(const std::string& response) {
  const std::vector<int32_t> verdicts = {testing::TestEncode(" Yes").at(0),
                                         testing::TestEncode(" No").at(0)};
  const std::vector<float> lp =
      testing::PromptLogprobsOracle(testing::Judge()->JudgePrompt(kE2ePrompt, response), verdicts);
  return static_cast<double>(lp[0]) - static_cast<double>(lp[1]);
}

TEST_CASE("prm_beam_search with the judge on SmolLM2 returns the best completed beam") {
  PrmBeamSearchOptions options;
  options.params = PrmBeamSearchParams{kE2eBeams, kE2eWidth, kE2eDelimiter};
  options.prompt = kE2ePrompt;
  auto made = PrmBeamSearchPolicy::Create(options, testing::Judge());
  REQUIRE(made.ok());
  auto recording = std::make_shared<testing::RecordingPolicy>(*made);
  const testing::Outcome out = testing::RunAlone(
      testing::TestEncode(kE2ePrompt), testing::SeededParams(kE2eMaxTokens, kE2eSeed), recording);
  CHECK(out.used_blocks_at_end == 0);
  REQUIRE(out.choices.size() == 1);
  const PolicyResult& result = recording->result;
  REQUIRE(result.choices.size() == 1);

  int64_t pauses = 0;
  int64_t tokens = 0;
  for (const auto& [id, seen] : recording->seen) {
    tokens += static_cast<int64_t>(seen.tokens.size());
    for (const TokenDecision d : seen.decisions) pauses += d == TokenDecision::kPause ? 1 : 0;
  }
  int64_t pruned = 0;
  int64_t best = -1;
  double best_reward = 0;
  std::map<int64_t, double> rewards;
  for (const auto& [id, reason] : recording->final_reasons) {
    if (reason == FinishReason::kAbort) {
      ++pruned;
      continue;
    }
    const std::string text =
        testing::TestTokenizer().Decode(recording->final_tokens.at(id), /*skip_special=*/true);
    rewards[id] = OracleReward(text);
    INFO("completed " << id << ": " << text << " reward " << rewards[id]);
    if (best < 0 || rewards[id] > best_reward) {
      best = id;
      best_reward = rewards[id];
    }
  }
  INFO("report rounds " << Report(result, "rounds") << ", pauses " << pauses);
  // Every sequence beyond the expand group is a fork child, and each drew.
  const size_t forked = recording->final_reasons.size() - static_cast<size_t>(kE2eBeams);
  CHECK(recording->seen.size() == recording->final_reasons.size());
  CHECK(forked >= static_cast<size_t>(kE2eWidth - 1));  // the search branched
  CHECK(Report(result, "beams_forked") == static_cast<double>(forked));
  CHECK(Report(result, "rounds") >= 2);
  CHECK(Report(result, "traces_pruned") == static_cast<double>(pruned));
  CHECK(pruned >= 1);
  CHECK(Report(result, "num_completed") == static_cast<double>(rewards.size()));
  CHECK(Report(result, "tokens_generated") == static_cast<double>(tokens));
  CHECK(Report(result, "num_scored") == static_cast<double>(pauses + rewards.size()));
  for (const auto& [id, reward] : rewards) {
    if (id != best) REQUIRE(best_reward - reward > 2e-3);  // a clear winner
  }
  CHECK(result.choices[0] == best);
  CHECK(std::abs(Report(result, "chosen_reward") - best_reward) <= 1e-3);
  CHECK(out.choices.at(0).text ==
        testing::TestTokenizer().Decode(recording->final_tokens.at(best), /*skip_special=*/true));
  CHECK(out.choices.at(0).tokens.size() == static_cast<size_t>(kE2eMaxTokens));
}

}  // namespace
}  // namespace alignserve
