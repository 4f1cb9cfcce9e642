#include "alignment/prm_beam_search_policy.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "alignment/policy_report_keys.h"

namespace alignserve {
namespace {

constexpr double kNoReward = std::numeric_limits<double>::quiet_NaN();

absl::Status Invalid(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("alignment policy 'prm_beam_search': ", what));
}

// The ranking order of beams and candidates: reward descending, NaN below
// every number, ties to the smaller seq id.
bool RanksBefore(double reward_a, int64_t id_a, double reward_b, int64_t id_b) {
  const bool a_scored = !std::isnan(reward_a);
  const bool b_scored = !std::isnan(reward_b);
  if (a_scored != b_scored) return a_scored;
  if (a_scored && reward_a != reward_b) return reward_a > reward_b;
  return id_a < id_b;
}

}  // namespace

absl::StatusOr<std::shared_ptr<PrmBeamSearchPolicy>> PrmBeamSearchPolicy::Create(
    PrmBeamSearchOptions options, std::shared_ptr<const RewardModel> reward_model) {
  const PrmBeamSearchParams& p = options.params;
  if (p.n < 1 || p.n > kMaxPolicyN) {
    return Invalid(absl::StrCat("parameter 'n' must be in [1, ", kMaxPolicyN, "], got ", p.n));
  }
  if (p.beam_width < 1 || p.beam_width > p.n || p.n % p.beam_width != 0) {
    return Invalid(absl::StrCat("parameter 'beam_width' must be a divisor of n = ", p.n, ", got ",
                                p.beam_width));
  }
  if (p.delimiter.empty() || p.delimiter.size() > static_cast<size_t>(kMaxDelimiterBytes)) {
    return Invalid(absl::StrCat("parameter 'delimiter' must be a string of 1 to ",
                                kMaxDelimiterBytes, " bytes"));
  }
  if (reward_model == nullptr) {
    return Invalid("needs a reward model and the server has none configured");
  }
  return std::shared_ptr<PrmBeamSearchPolicy>(
      new PrmBeamSearchPolicy(std::move(options), std::move(reward_model)));
}

PolicySpec PrmBeamSearchPolicy::Spec() const {
  PolicySpec spec;
  spec.num_sequences = options_.params.n;
  spec.boundary_delimiter = options_.params.delimiter;
  return spec;
}

PrmBeamSearchPolicy::Beam* PrmBeamSearchPolicy::Find(int64_t seq_id) {
  for (Beam& b : round_) {
    if (b.seq_id == seq_id) return &b;
  }
  return nullptr;
}

const std::string& PrmBeamSearchPolicy::PromptText(const PolicyContext& ctx) {
  return RewardPromptText(options_.prompt, options_.tokenizer, ctx, prompt_text_);
}

void PrmBeamSearchPolicy::Submit(Beam& beam, std::string_view response, PolicyContext& ctx) {
  const absl::StatusOr<int64_t> id = reward_model_->Submit(
      {PromptText(ctx), response, ctx.output_token_ids(beam.seq_id), beam.seq_id}, ctx);
  if (id.ok()) {
    pending_[*id] = beam.seq_id;
  } else {  // e.g. a pair too long for the judge's context: never the winner
    beam.scored = true;
    beam.reward = kNoReward;
  }
}

void PrmBeamSearchPolicy::OnScores(std::span<const ScoreResult> scores, PolicyContext& ctx) {
  for (const ScoreResult& result : scores) {
    const auto it = pending_.find(result.score_id);
    if (it == pending_.end()) continue;
    const double reward = reward_model_->Reward(result);
    num_scored_ += std::isnan(reward) ? 0 : 1;
    if (Beam* b = Find(it->second); b != nullptr && b->state != BeamState::kLost) {
      b->reward = reward;
      b->scored = true;
    }
    pending_.erase(it);
  }
  MaybeDecideRound(ctx);
}

// A round that became decidable inside OnTokens (every submission failed at
// once) is decided here, after the engine applied the tokens' pauses.
void PrmBeamSearchPolicy::OnStep(PolicyContext& ctx) { MaybeDecideRound(ctx); }

// Round 0's beams are the expand sequences, met at their first token; later
// rounds' are registered when Expand forks them.
void PrmBeamSearchPolicy::OnTokens(std::span<TokenView> seqs, PolicyContext& ctx) {
  for (TokenView& view : seqs) {
    ++tokens_generated_;
    Beam* b = Find(view.seq_id);
    if (b == nullptr && rounds_ == 0) {
      round_.push_back(Beam{view.seq_id});
      b = &round_.back();
    }
    // A token that ends the sequence is settled in OnFinished, where its
    // completion (stop strings cut, held-back text released) is final.
    if (b == nullptr || b->state != BeamState::kRunning ||
        view.finish_reason != FinishReason::kNone || !view.boundary) {
      continue;
    }
    view.decision = TokenDecision::kPause;
    b->state = BeamState::kPaused;
    Submit(*b, ctx.text(view.seq_id), ctx);
  }
}

void PrmBeamSearchPolicy::OnFinished(std::span<const SequenceEnd> ended, PolicyContext& ctx) {
  for (const SequenceEnd& end : ended) {
    Beam* b = Find(end.seq_id);  // null: pruned by this policy
    if (b == nullptr || b->state == BeamState::kFinished || b->state == BeamState::kLost) continue;
    if (end.reason == FinishReason::kAbort) {  // pruned from outside: never the answer
      b->state = BeamState::kLost;
      b->scored = true;
      b->reward = kNoReward;
      continue;
    }
    b->state = BeamState::kFinished;
    Submit(*b, ctx.completion(end.seq_id), ctx);
  }
  MaybeDecideRound(ctx);
}

void PrmBeamSearchPolicy::MaybeDecideRound(PolicyContext& ctx) {
  if (round_.empty()) return;
  for (const Beam& b : round_) {
    if (b.state == BeamState::kRunning || !b.scored) return;
  }
  DecideRound(ctx);
}

// Sets the finished beams aside, keeps the best N / M paused ones (none once
// N candidates completed) and aborts the others in this same step.
void PrmBeamSearchPolicy::DecideRound(PolicyContext& ctx) {
  ++rounds_;
  std::vector<Beam> paused;
  for (const Beam& b : round_) {
    if (b.state == BeamState::kFinished) completed_.push_back(Candidate{b.seq_id, b.reward});
    if (b.state == BeamState::kPaused) paused.push_back(b);
  }
  round_.clear();
  std::sort(paused.begin(), paused.end(), [](const Beam& a, const Beam& b) {
    return RanksBefore(a.reward, a.seq_id, b.reward, b.seq_id);
  });
  const PrmBeamSearchParams& p = options_.params;
  const size_t keep = completed_.size() >= static_cast<size_t>(p.n)
                          ? 0
                          : std::min(paused.size(), static_cast<size_t>(p.n / p.beam_width));
  for (size_t i = keep; i < paused.size(); ++i) {
    if (ctx.Abort(paused[i].seq_id).ok()) ++traces_pruned_;
  }
  paused.resize(keep);
  Expand(paused, ctx);
}

void PrmBeamSearchPolicy::Expand(const std::vector<Beam>& kept, PolicyContext& ctx) {
  const int32_t width = options_.params.beam_width;
  for (const Beam& beam : kept) {
    round_.push_back(Beam{beam.seq_id});
    if (width > 1) {
      // On failure (e.g. the group's sequence cap) the beam goes on alone.
      const absl::StatusOr<std::vector<int64_t>> children = ctx.Fork(beam.seq_id, width - 1);
      if (children.ok()) {
        for (const int64_t id : *children) round_.push_back(Beam{id});
        beams_forked_ += static_cast<int32_t>(children->size());
      }
    }
    (void)ctx.Resume(beam.seq_id);  // fork children start unpaused
  }
}

PolicyResult PrmBeamSearchPolicy::Finalize(std::span<const SequenceResult> seqs) {
  // A round the group ended without deciding (not expected: the engine
  // delivers every score first) still offers its scored finished beams.
  for (const Beam& b : round_) {
    if (b.state == BeamState::kFinished && b.scored) {
      completed_.push_back(Candidate{b.seq_id, b.reward});
    }
  }
  round_.clear();
  const Candidate* best = nullptr;
  for (const Candidate& c : completed_) {
    if (std::isnan(c.reward)) continue;
    if (best == nullptr || RanksBefore(c.reward, c.seq_id, best->reward, best->seq_id)) best = &c;
  }
  PolicyResult result;
  if (best != nullptr) {
    result.choices.push_back(best->seq_id);
  } else if (const std::optional<size_t> first = FirstUnpruned(seqs); first.has_value()) {
    result.choices.push_back(seqs[*first].seq_id);
  }
  result.report.emplace_back("rounds", rounds_);
  result.report.emplace_back("num_completed", static_cast<double>(completed_.size()));
  result.report.emplace_back(kReportTracesPruned, traces_pruned_);
  result.report.emplace_back("beams_forked", beams_forked_);
  result.report.emplace_back(kReportNumScored, num_scored_);
  result.report.emplace_back(kReportTokensGenerated, static_cast<double>(tokens_generated_));
  result.report.emplace_back(kReportChosenReward, best != nullptr ? best->reward : kNoReward);
  return result;
}

}  // namespace alignserve
