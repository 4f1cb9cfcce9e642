// blockwise_cd with the `judge` reward (the served model judging with the
// default rubric) through LlmEngine on SmolLM2. Oracles: block 0's
// candidates are what a plain seeded n-choice request draws; every
// candidate's judge score is recomputed through the plain prompt_logprobs
// path (PromptLogprobsOracle); the blocks freed by pruning are counted from
// the candidates' block tables.
#include "alignment/blockwise_cd_policy.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <memory>
#include <set>
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

constexpr int kK = 3;
constexpr int kM = 2;
constexpr int kMaxTokens = 5;  // two full blocks, then one cut by max_tokens
constexpr int kNumBlocks = 256;
constexpr uint64_t kSeed = 7;
const char kPrompt[] = "Give me one tip for staying healthy.";

double OracleReward(const std::string& response) {
  const std::vector<int32_t> verdicts = {TestEncode(" Yes").at(0), TestEncode(" No").at(0)};
  const std::vector<float> lp =
      PromptLogprobsOracle(Judge()->JudgePrompt(kPrompt, response), verdicts);
  return static_cast<double>(lp[0]) - static_cast<double>(lp[1]);
}

double ReportValue(const TestOutcome& out, const std::string& key) {
  for (const auto& [name, value] : out.report) {
    if (name == key) return value;
  }
  FAIL("no report entry " << key);
  return 0;
}

struct Observed {
  std::vector<BlockRecord> blocks;
  std::vector<int> expected_freed;  // blocks only the pruned candidates held
  std::vector<int> freed;           // measured across the prune, same hook call
  std::vector<int> pruned;          // candidates aborted
  double free_before = 0;
};

TEST_CASE(
    "blockwise_cd keeps the judge's argmax each block, frees losers at once, "
    "and returns the winning blocks") {
  auto observed = std::make_shared<Observed>();
  BlockwiseCdOptions options;
  options.params = BlockwiseCdParams{kK, kM};
  options.prompt = kPrompt;
  options.observer.before_prune = [observed](const BlockRecord& r, const PolicyContext& ctx) {
    std::set<int32_t> kept;
    std::set<int32_t> losers;
    int pruned = 0;
    for (size_t i = 0; i < r.candidates.size(); ++i) {
      const Sequence* seq = ctx.FindSequence(r.candidates[i]);
      if (seq == nullptr) continue;  // finished: its blocks are free already
      auto& into = i == r.winner ? kept : losers;
      into.insert(seq->block_table().begin(), seq->block_table().end());
      pruned += i == r.winner ? 0 : 1;
    }
    int exclusive = 0;
    for (const int32_t b : losers) exclusive += kept.contains(b) ? 0 : 1;
    observed->expected_freed.push_back(exclusive);
    observed->pruned.push_back(pruned);
    observed->free_before = ctx.free_block_fraction();
  };
  options.observer.after_prune = [observed](const BlockRecord& r, const PolicyContext& ctx) {
    observed->blocks.push_back(r);
    observed->freed.push_back(static_cast<int>(
        std::lround((ctx.free_block_fraction() - observed->free_before) * kNumBlocks)));
    for (size_t i = 0; i < r.candidates.size(); ++i) {
      if (i != r.winner && !r.finished[i]) CHECK(ctx.FindSequence(r.candidates[i]) == nullptr);
    }
  };
  auto policy = BlockwiseCdPolicy::Create(options, Judge());
  REQUIRE(policy.ok());

  auto engine = MakeTestEngine(PolicyTestConfig(kNumBlocks));
  RequestParams params;
  params.sampling = SeededParams(kMaxTokens, kSeed);
  params.policy = *policy;
  REQUIRE(engine->AddRequest(1, TestEncode(kPrompt), params).ok());
  const TestOutcome out = DrainEngine(*engine).at(1);
  REQUIRE(out.finished);
  REQUIRE(out.choices.size() == 1);

  // Blocks: 2 + 2 tokens at boundaries, then 1 token ending every candidate.
  const std::vector<BlockRecord>& blocks = observed->blocks;
  REQUIRE(blocks.size() == 3);
  CHECK(ReportValue(out, "blocks_decoded") == 3);
  CHECK(ReportValue(out, "num_scored") == 3 * kK);
  CHECK(ReportValue(out, "traces_pruned") == 2 * (kK - 1));
  CHECK(ReportValue(out, "tokens_generated") == kK * kMaxTokens);

  // Block 0's candidates are the base distribution's samples: a plain
  // seeded request with n = k draws the same first m tokens.
  {
    auto plain_engine = MakeTestEngine();
    SamplingParams plain = SeededParams(kM, kSeed);
    plain.n = kK;
    REQUIRE(plain_engine->AddRequest(1, TestEncode(kPrompt), plain).ok());
    const TestOutcome samples = DrainEngine(*plain_engine).at(1);
    for (int i = 0; i < kK; ++i) CHECK(blocks[0].responses.at(i) == samples.choices.at(i).text);
  }

  std::string winning_text;
  for (size_t b = 0; b < blocks.size(); ++b) {
    const BlockRecord& r = blocks[b];
    INFO("block " << b);
    REQUIRE(r.candidates.size() == static_cast<size_t>(kK));
    std::vector<double> oracle;
    for (size_t i = 0; i < r.candidates.size(); ++i) {
      INFO("candidate " << i << ": " << r.responses[i]);
      // Every candidate extends the previous winner: blocks concatenate.
      CHECK(r.responses[i].starts_with(winning_text));
      CHECK(r.finished[i] == (b == 2));
      oracle.push_back(OracleReward(r.responses[i]));
      CHECK(std::abs(r.rewards[i] - oracle[i]) <= 1e-3);
    }
    const size_t best = *BestOfN(oracle);
    for (size_t i = 0; i < oracle.size(); ++i) {
      if (i != best) REQUIRE(oracle[best] - oracle[i] > 2e-3);  // a clear winner
    }
    CHECK(r.winner == best);
    winning_text = r.responses[r.winner];
    // Pruned candidates' blocks are free inside the same hook call.
    CHECK(observed->pruned[b] == (b == 2 ? 0 : kK - 1));
    CHECK(observed->freed[b] == observed->expected_freed[b]);
    if (b < 2) CHECK(observed->expected_freed[b] >= kK - 1);
  }
  CHECK(out.choices.at(0).text == winning_text);
  CHECK(out.choices.at(0).tokens.size() == static_cast<size_t>(kMaxTokens));
  for (int i = 0; i < kK; ++i) {
    CHECK(ReportValue(out, "reward_" + std::to_string(i)) == blocks[2].rewards[i]);
  }
  CHECK(ReportValue(out, "chosen_index") == static_cast<double>(blocks[2].winner));
  CHECK(ReportValue(out, "chosen_reward") == blocks[2].rewards[blocks[2].winner]);
}

TEST_CASE("blockwise_cd rejects out-of-range k and m and a missing reward model") {
  BlockwiseCdOptions options;
  options.params = BlockwiseCdParams{0, 2};
  CHECK(BlockwiseCdPolicy::Create(options, Judge()).status().code() ==
        absl::StatusCode::kInvalidArgument);
  options.params = BlockwiseCdParams{2, 0};
  CHECK(BlockwiseCdPolicy::Create(options, Judge()).status().code() ==
        absl::StatusCode::kInvalidArgument);
  options.params = BlockwiseCdParams{2, 2};
  CHECK(BlockwiseCdPolicy::Create(options, nullptr).status().code() ==
        absl::StatusCode::kInvalidArgument);
  auto ok = BlockwiseCdPolicy::Create(options, Judge());
  REQUIRE(ok.ok());
  CHECK((*ok)->Spec().num_sequences == 2);
  CHECK((*ok)->Spec().boundary_every == 2);
}

}  // namespace
}  // namespace alignserve
