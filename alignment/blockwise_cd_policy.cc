#include "alignment/blockwise_cd_policy.h"

#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "alignment/policy_report_keys.h"
#include "alignment/reward_selection.h"

namespace alignserve {
namespace {

constexpr double kNoReward = std::numeric_limits<double>::quiet_NaN();
constexpr int32_t kMaxBlockTokens = 4096;

}  // namespace

absl::StatusOr<std::shared_ptr<BlockwiseCdPolicy>> BlockwiseCdPolicy::Create(
    BlockwiseCdOptions options, std::shared_ptr<const RewardModel> reward_model) {
  const BlockwiseCdParams& p = options.params;
  if (p.k < 1 || p.k > kMaxPolicyN) {
    return absl::InvalidArgumentError(
        absl::StrCat("alignment policy 'blockwise_cd': parameter 'k' must be in [1, ", kMaxPolicyN,
                     "], got ", p.k));
  }
  if (p.m < 1 || p.m > kMaxBlockTokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("alignment policy 'blockwise_cd': parameter 'm' must be in [1, ",
                     kMaxBlockTokens, "], got ", p.m));
  }
  if (reward_model == nullptr) {
    return absl::InvalidArgumentError(
        "alignment policy 'blockwise_cd' needs a reward model and the server has none configured");
  }
  return std::shared_ptr<BlockwiseCdPolicy>(
      new BlockwiseCdPolicy(std::move(options), std::move(reward_model)));
}

PolicySpec BlockwiseCdPolicy::Spec() const {
  PolicySpec spec;
  spec.num_sequences = options_.params.k;
  spec.boundary_every = options_.params.m;
  return spec;
}

BlockwiseCdPolicy::Candidate* BlockwiseCdPolicy::Find(int64_t seq_id) {
  for (Candidate& c : block_) {
    if (c.seq_id == seq_id) return &c;
  }
  return nullptr;
}

const std::string& BlockwiseCdPolicy::PromptText(const PolicyContext& ctx) {
  return RewardPromptText(options_.prompt, options_.tokenizer, ctx, prompt_text_);
}

// Block 0's candidates are the expand sequences, met at their first token
// (root first, then the children in creation order); later blocks' are
// registered when DecideBlock forks them.
void BlockwiseCdPolicy::OnTokens(std::span<TokenView> seqs, PolicyContext& ctx) {
  for (TokenView& view : seqs) {
    ++tokens_generated_;
    Candidate* c = Find(view.seq_id);
    if (c == nullptr && blocks_decoded_ == 0 && !scoring_) {
      block_.push_back(Candidate(view.seq_id));
      c = &block_.back();
    }
    // A token that ends the sequence is settled in OnFinished, where its
    // completion (stop strings cut, held-back text released) is final.
    if (c == nullptr || view.finish_reason != FinishReason::kNone || !view.boundary) continue;
    view.decision = TokenDecision::kPause;
    c->state = CandidateState::kAtBoundary;
    c->response = std::string(ctx.text(view.seq_id));
  }
  MaybeScoreBlock(ctx);
}

void BlockwiseCdPolicy::OnFinished(std::span<const SequenceEnd> ended, PolicyContext& ctx) {
  for (const SequenceEnd& end : ended) {
    Candidate* c = Find(end.seq_id);
    if (c == nullptr || c->state == CandidateState::kFinished) continue;  // pruned by us
    c->state = CandidateState::kFinished;
    c->response = std::string(ctx.completion(end.seq_id));
    if (end.reason == FinishReason::kAbort) {  // pruned from outside: never the answer
      c->scored = true;
      c->reward = kNoReward;
    }
  }
  MaybeScoreBlock(ctx);
}

void BlockwiseCdPolicy::MaybeScoreBlock(PolicyContext& ctx) {
  if (scoring_ || block_.empty()) return;
  for (const Candidate& c : block_) {
    if (c.state == CandidateState::kRunning) return;
  }
  scoring_ = true;
  for (size_t i = 0; i < block_.size(); ++i) {
    Candidate& c = block_[i];
    if (c.scored) continue;
    const absl::StatusOr<int64_t> id = reward_model_->Submit(
        {PromptText(ctx), c.response, ctx.output_token_ids(c.seq_id), c.seq_id}, ctx);
    if (id.ok()) {
      pending_[*id] = i;
    } else {
      c.scored = true;
      c.reward = kNoReward;
    }
  }
  if (pending_.empty()) DecideBlock(ctx);
}

void BlockwiseCdPolicy::OnScores(std::span<const ScoreResult> scores, PolicyContext& ctx) {
  for (const ScoreResult& result : scores) {
    const auto it = pending_.find(result.score_id);
    if (it == pending_.end()) continue;
    Candidate& c = block_[it->second];
    c.reward = reward_model_->Reward(result);
    c.scored = true;
    candidates_scored_ += std::isnan(c.reward) ? 0 : 1;
    pending_.erase(it);
  }
  if (scoring_ && pending_.empty()) DecideBlock(ctx);
}

BlockRecord BlockwiseCdPolicy::Record(size_t winner) const {
  BlockRecord r;
  r.block = blocks_decoded_;
  r.winner = winner;
  for (const Candidate& c : block_) {
    r.candidates.push_back(c.seq_id);
    r.responses.push_back(c.response);
    r.finished.push_back(c.state == CandidateState::kFinished);
    r.rewards.push_back(c.reward);
  }
  return r;
}

// Keep the argmax, prune the rest at once, and either end (a finished
// winner) or fork the winner into the next block's K candidates.
void BlockwiseCdPolicy::DecideBlock(PolicyContext& ctx) {
  std::vector<double> rewards;
  for (const Candidate& c : block_) rewards.push_back(c.reward);
  const size_t winner = BestOfN(rewards).value_or(0);
  const BlockRecord record = Record(winner);
  if (options_.observer.before_prune) options_.observer.before_prune(record, ctx);
  for (size_t i = 0; i < block_.size(); ++i) {
    if (i == winner || block_[i].state == CandidateState::kFinished) continue;
    if (ctx.Abort(block_[i].seq_id).ok()) ++candidates_pruned_;
  }
  ++blocks_decoded_;
  last_rewards_ = std::move(rewards);
  last_winner_ = winner;
  if (options_.observer.after_prune) options_.observer.after_prune(record, ctx);

  Candidate kept = block_[winner];
  block_.clear();
  scoring_ = false;
  if (kept.state == CandidateState::kFinished) {
    winner_ = kept.seq_id;
    return;
  }
  block_.push_back(Candidate(kept.seq_id));
  if (options_.params.k > 1) {
    // On failure (e.g. the group's sequence cap) the winner goes on alone.
    const absl::StatusOr<std::vector<int64_t>> children =
        ctx.Fork(kept.seq_id, options_.params.k - 1);
    if (children.ok()) {
      for (const int64_t id : *children) block_.push_back(Candidate(id));
    }
  }
  (void)ctx.Resume(kept.seq_id);  // the children start unpaused
}

PolicyResult BlockwiseCdPolicy::Finalize(std::span<const SequenceResult> seqs) {
  PolicyResult result;
  int64_t chosen = winner_;
  if (const std::optional<size_t> first = FirstUnpruned(seqs); chosen < 0 && first) {
    chosen = seqs[*first].seq_id;
  }
  if (chosen >= 0) result.choices.push_back(chosen);
  result.report.emplace_back("blocks_decoded", blocks_decoded_);
  result.report.emplace_back(kReportNumScored, candidates_scored_);
  result.report.emplace_back(kReportTracesPruned, candidates_pruned_);
  result.report.emplace_back(kReportTokensGenerated, static_cast<double>(tokens_generated_));
  for (size_t i = 0; i < last_rewards_.size(); ++i) {
    result.report.emplace_back(absl::StrCat(kReportRewardPrefix, i), last_rewards_[i]);
  }
  result.report.emplace_back(kReportChosenIndex, static_cast<double>(last_winner_));
  result.report.emplace_back(kReportChosenReward, last_winner_ < last_rewards_.size()
                                                      ? last_rewards_[last_winner_]
                                                      : std::numeric_limits<double>::quiet_NaN());
  return result;
}

}  // namespace alignserve
