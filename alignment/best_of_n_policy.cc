#include "alignment/best_of_n_policy.h"

#include <cmath>
#include <limits>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "alignment/policy_report_keys.h"
#include "alignment/reward_selection.h"

namespace alignserve {
namespace {

constexpr double kNoReward = std::numeric_limits<double>::quiet_NaN();

}  // namespace

BestOfNPolicy::BestOfNPolicy(BestOfNOptions options,
                             std::shared_ptr<const RewardModel> reward_model)
    : options_(std::move(options)), reward_model_(std::move(reward_model)) {}

PolicySpec BestOfNPolicy::Spec() const {
  PolicySpec spec;
  spec.num_sequences = options_.n;
  return spec;
}

const std::string& BestOfNPolicy::PromptText(const PolicyContext& ctx) {
  return RewardPromptText(options_.prompt, options_.tokenizer, ctx, prompt_text_);
}

// Scored at once, while its siblings still generate.
void BestOfNPolicy::OnFinished(std::span<const SequenceEnd> ended, PolicyContext& ctx) {
  seed_ = ctx.seed();
  for (const SequenceEnd& end : ended) {
    if (end.reason == FinishReason::kAbort || reward_model_ == nullptr) {
      rewards_[end.seq_id] = kNoReward;
      continue;
    }
    const absl::StatusOr<int64_t> score_id = reward_model_->Submit(
        {PromptText(ctx), ctx.completion(end.seq_id), ctx.output_token_ids(end.seq_id), end.seq_id},
        ctx);
    if (score_id.ok()) {
      pending_[*score_id] = end.seq_id;
    } else {
      rewards_[end.seq_id] = kNoReward;
    }
  }
}

void BestOfNPolicy::OnScores(std::span<const ScoreResult> scores, PolicyContext& ctx) {
  for (const ScoreResult& result : scores) {
    const auto it = pending_.find(result.score_id);
    if (it == pending_.end()) continue;
    const double reward = reward_model_->Reward(result);
    num_scored_ += std::isnan(reward) ? 0 : 1;
    rewards_[it->second] = reward;
    pending_.erase(it);
  }
}

PolicyResult BestOfNPolicy::Finalize(std::span<const SequenceResult> seqs) {
  std::vector<double> rewards;
  double tokens = 0;
  for (const SequenceResult& s : seqs) {
    const auto it = rewards_.find(s.seq_id);
    rewards.push_back(it != rewards_.end() ? it->second : kNoReward);
    tokens += static_cast<double>(s.output_token_ids.size());
  }
  std::optional<size_t> chosen = options_.lambda.has_value()
                                     ? SoftBestOfN(rewards, *options_.lambda, seed_)
                                     : BestOfN(rewards);
  if (!chosen.has_value()) chosen = FirstUnpruned(seqs);
  PolicyResult result;
  for (size_t i = 0; i < rewards.size(); ++i) {
    result.report.emplace_back(absl::StrCat(kReportRewardPrefix, i), rewards[i]);
  }
  result.report.emplace_back(kReportChosenIndex,
                             chosen.has_value() ? static_cast<double>(*chosen) : -1.0);
  result.report.emplace_back("num_sequences", static_cast<double>(seqs.size()));
  result.report.emplace_back(kReportNumScored, static_cast<double>(num_scored_));
  result.report.emplace_back(kReportTokensGenerated, tokens);
  result.report.emplace_back(kReportChosenReward,
                             chosen.has_value() ? rewards[*chosen] : kNoReward);
  if (chosen.has_value()) result.choices.push_back(seqs[*chosen].seq_id);
  return result;
}

}  // namespace alignserve
