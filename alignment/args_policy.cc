#include "alignment/args_policy.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "alignment/policy_report_keys.h"
#include "alignment/reward_selection.h"

namespace alignserve {
namespace {

constexpr double kNoReward = std::numeric_limits<double>::quiet_NaN();

// The k highest raw logits, descending, lower id first on ties.
void TopK(std::span<const float> logits, int32_t k, ArgsStep& step) {
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  const size_t n = std::min(static_cast<size_t>(k), ids.size());
  std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(n), ids.end(),
                    [&logits](int32_t a, int32_t b) {
                      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
                    });
  for (size_t i = 0; i < n; ++i) {
    step.tokens.push_back(ids[i]);
    step.logits.push_back(logits[ids[i]]);
  }
}

}  // namespace

absl::StatusOr<std::shared_ptr<ArgsPolicy>> ArgsPolicy::Create(
    ArgsOptions options, std::shared_ptr<const RewardModel> reward_model) {
  const ArgsParams& p = options.params;
  if (p.k < 1 || p.k > kMaxPolicyN) {
    return absl::InvalidArgumentError(absl::StrCat(
        "alignment policy 'args': parameter 'k' must be in [1, ", kMaxPolicyN, "], got ", p.k));
  }
  if (!(p.w >= 0 && p.w <= 1000)) {
    return absl::InvalidArgumentError(
        absl::StrCat("alignment policy 'args': parameter 'w' must be in [0, 1000], got ", p.w));
  }
  if (p.temperature.has_value() && !(*p.temperature > 0 && *p.temperature <= 100)) {
    return absl::InvalidArgumentError(
        absl::StrCat("alignment policy 'args': parameter 'temperature' must be in (0, 100], got ",
                     *p.temperature));
  }
  if (reward_model == nullptr) {
    return absl::InvalidArgumentError(
        "alignment policy 'args' needs a reward model and the server has none configured");
  }
  return std::shared_ptr<ArgsPolicy>(new ArgsPolicy(std::move(options), std::move(reward_model)));
}

PolicySpec ArgsPolicy::Spec() const {
  PolicySpec spec;
  spec.wants_logits = true;
  // Position 0: the k candidates are the expand group, forced at the
  // request's first sample (LogitsView::expand_tokens).
  spec.num_sequences = options_.params.k;
  return spec;
}

const std::string& ArgsPolicy::PromptText(const PolicyContext& ctx) {
  return RewardPromptText(options_.prompt, options_.tokenizer, ctx, prompt_text_);
}

// The position's candidates come from the first row seen (the k rows of a
// position are one row: the same tokens decoded); a member scheduled in a
// later step is forced from the same list. Position 0 is the prefill's one
// row: the root takes candidate 0 and expand child i candidate i.
void ArgsPolicy::OnLogits(std::span<LogitsView> seqs, PolicyContext& ctx) {
  const int32_t position = static_cast<int32_t>(steps_.size());
  for (LogitsView& view : seqs) {
    if (group_.empty()) {
      if (!steps_.empty() || current_.has_value()) continue;
      current_.emplace();
      current_->position = 0;
      TopK(view.logits, options_.params.k, *current_);
      current_->rewards.assign(current_->tokens.size(), kNoReward);
      view.force_token = current_->tokens[0];
      for (size_t i = 1; i < current_->tokens.size() && i <= view.expand_tokens.size(); ++i) {
        view.expand_tokens[i - 1] = current_->tokens[i];
      }
      continue;
    }
    const auto member = std::find(group_.begin(), group_.end(), view.seq_id);
    if (member == group_.end()) continue;
    const size_t index = static_cast<size_t>(member - group_.begin());
    if (!current_.has_value()) {
      current_.emplace();
      current_->position = position;
      TopK(view.logits, static_cast<int32_t>(group_.size()), *current_);
      // Fewer candidates than members only with a vocabulary under k.
      current_->rewards.assign(current_->tokens.size(), kNoReward);
    }
    if (index < current_->tokens.size()) view.force_token = current_->tokens[index];
  }
}

// Position 0's members: the sequence that got candidate i is member i; a
// sequence with no candidate (only with a vocabulary under k) is pruned.
void ArgsPolicy::BindFirstPosition(std::span<TokenView> seqs) {
  const std::vector<int32_t>& tokens = current_->tokens;
  group_.assign(tokens.size(), -1);
  for (TokenView& view : seqs) {
    const auto it = std::find(tokens.begin(), tokens.end(), view.token);
    const size_t i = static_cast<size_t>(it - tokens.begin());
    if (it == tokens.end() || group_[i] >= 0) {
      if (view.finish_reason == FinishReason::kNone) view.decision = TokenDecision::kAbort;
      continue;
    }
    group_[i] = view.seq_id;
  }
  finished_.assign(group_.size(), false);
  seen_ = 0;
  awaiting_ = false;
  pending_.clear();
}

void ArgsPolicy::OnTokens(std::span<TokenView> seqs, PolicyContext& ctx) {
  tokens_generated_ += static_cast<int64_t>(seqs.size());
  if (group_.empty()) {
    if (!current_.has_value()) return;
    BindFirstPosition(seqs);
  }
  for (TokenView& view : seqs) {
    const auto member = std::find(group_.begin(), group_.end(), view.seq_id);
    if (member == group_.end()) continue;
    const size_t i = static_cast<size_t>(member - group_.begin());
    finished_[i] = view.finish_reason != FinishReason::kNone;
    if (!finished_[i]) view.decision = TokenDecision::kPause;
    ++seen_;
  }
  if (awaiting_ || seen_ < group_.size() || !current_.has_value()) return;
  awaiting_ = true;
  for (size_t i = 0; i < current_->tokens.size(); ++i) {
    const absl::StatusOr<int64_t> id = reward_model_->Submit(
        {PromptText(ctx), ctx.text(group_[i]), ctx.output_token_ids(group_[i]), group_[i]}, ctx);
    if (id.ok()) {
      pending_[*id] = i;
      ++judge_calls_;
    }
  }
  if (pending_.empty()) Decide(ctx);
}

void ArgsPolicy::OnScores(std::span<const ScoreResult> scores, PolicyContext& ctx) {
  if (!current_.has_value()) return;
  for (const ScoreResult& result : scores) {
    const auto it = pending_.find(result.score_id);
    if (it == pending_.end()) continue;
    const double reward = reward_model_->Reward(result);
    current_->rewards[it->second] = reward;
    candidates_scored_ += std::isnan(reward) ? 0 : 1;
    pending_.erase(it);
  }
  if (awaiting_ && pending_.empty()) Decide(ctx);
}

size_t ArgsPolicy::Choose(const ArgsStep& step, uint64_t seed) const {
  std::vector<double> combined;
  for (size_t i = 0; i < step.tokens.size(); ++i) {
    combined.push_back(static_cast<double>(step.logits[i]) + options_.params.w * step.rewards[i]);
  }
  const std::optional<double>& t = options_.params.temperature;
  const std::optional<size_t> chosen =
      t.has_value() ? SoftBestOfN(combined, *t, seed) : BestOfN(combined);
  return chosen.value_or(0);
}

// Keep the chosen candidate, prune the others at once, go on from it.
void ArgsPolicy::Decide(PolicyContext& ctx) {
  ArgsStep step = std::move(*current_);
  current_.reset();
  step.chosen = Choose(step, ctx.seed() + static_cast<uint64_t>(step.position));
  for (size_t i = 0; i < group_.size(); ++i) {
    if (i != step.chosen && !finished_[i]) (void)ctx.Abort(group_[i]);
  }
  const int64_t kept = group_[step.chosen];
  const bool done = finished_[step.chosen];
  steps_.push_back(std::move(step));
  group_.clear();
  if (done) {
    winner_ = kept;
    return;
  }
  StartPosition(kept, ctx);
}

void ArgsPolicy::StartPosition(int64_t leader, PolicyContext& ctx) {
  group_ = {leader};
  if (options_.params.k > 1) {
    // On failure (e.g. the group's sequence cap) the leader goes on alone.
    const absl::StatusOr<std::vector<int64_t>> children = ctx.Fork(leader, options_.params.k - 1);
    if (children.ok()) group_.insert(group_.end(), children->begin(), children->end());
  }
  finished_.assign(group_.size(), false);
  seen_ = 0;
  awaiting_ = false;
  pending_.clear();
  (void)ctx.Resume(leader);  // forks start unpaused
}

PolicyResult ArgsPolicy::Finalize(std::span<const SequenceResult> seqs) {
  PolicyResult result;
  int64_t chosen = winner_;
  if (const std::optional<size_t> first = FirstUnpruned(seqs); chosen < 0 && first) {
    chosen = seqs[*first].seq_id;
  }
  if (chosen >= 0) result.choices.push_back(chosen);
  double reward_sum = 0;
  int64_t rewarded = 0;
  for (const ArgsStep& s : steps_) {
    if (s.rewards.empty() || std::isnan(s.rewards[s.chosen])) continue;
    reward_sum += s.rewards[s.chosen];
    ++rewarded;
  }
  result.report.emplace_back("args_steps", static_cast<double>(steps_.size()));
  result.report.emplace_back(kReportTokensGenerated, static_cast<double>(tokens_generated_));
  result.report.emplace_back("judge_calls", static_cast<double>(judge_calls_));
  result.report.emplace_back(kReportNumScored, static_cast<double>(candidates_scored_));
  result.report.emplace_back("chosen_reward_mean",
                             rewarded > 0 ? reward_sum / static_cast<double>(rewarded) : kNoReward);
  return result;
}

}  // namespace alignserve
