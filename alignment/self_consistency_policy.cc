#include "alignment/self_consistency_policy.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "alignment/policy_report_keys.h"
#include "alignment/vote.h"
#include "kernels/status_macros.h"

namespace alignserve {

absl::StatusOr<std::shared_ptr<SelfConsistencyPolicy>> SelfConsistencyPolicy::Create(
    const SelfConsistencyParams& params) {
  if (params.n < 1 || params.n > kMaxPolicyN || params.window < 1 || params.window > params.n) {
    return absl::InvalidArgumentError(absl::StrCat("self_consistency needs 1 <= window (",
                                                   params.window, ") <= n (", params.n,
                                                   ") <= ", kMaxPolicyN));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<AnswerExtractor> extractor, MakeAnswerExtractor(params.answer));
  ASSIGN_OR_RETURN(std::unique_ptr<StoppingRule> rule,
                   MakeStoppingRule(SelfConsistencyRuleName(params.rule), params.window));
  return std::shared_ptr<SelfConsistencyPolicy>(
      new SelfConsistencyPolicy(params, std::move(extractor), std::move(rule)));
}

SelfConsistencyPolicy::SelfConsistencyPolicy(const SelfConsistencyParams& params,
                                             std::unique_ptr<AnswerExtractor> extractor,
                                             std::unique_ptr<StoppingRule> rule)
    : params_(params),
      extractor_(std::move(extractor)),
      rule_(std::move(rule)),
      batch_(params.rule == SelfConsistencyRule::kNone ? params.n : params.window),
      released_(batch_) {}

PolicySpec SelfConsistencyPolicy::Spec() const {
  PolicySpec spec;
  spec.num_sequences = params_.n;
  return spec;
}

void SelfConsistencyPolicy::OnTokens(std::span<TokenView> seqs, PolicyContext& ctx) {
  book_.Observe(seqs, ctx);
  for (TokenView& v : seqs) {
    Trace* trace = book_.Find(v.seq_id);
    if (trace == nullptr || v.finish_reason != FinishReason::kNone) continue;
    // Held-back samples wait after their first token (drawn with the rest).
    if (trace->index >= released_ && trace->state == TraceState::kRunning) {
      v.decision = TokenDecision::kPause;
      trace->state = TraceState::kPaused;
    }
  }
}

void SelfConsistencyPolicy::OnFinished(std::span<const SequenceEnd> ended, PolicyContext& ctx) {
  for (const SequenceEnd& end : ended) book_.Ended(end, *extractor_, ctx);
  // A released window may end at once (samples that stopped at their first
  // token), so judge and release until something runs or all is released.
  while (!done_) {
    if (rule_->ShouldStop(book_.JudgedPrefix())) {
      done_ = true;
      StopSampling(ctx);
      return;
    }
    if (released_ >= book_.size() || !book_.AllEnded(0, released_)) return;
    ReleaseNextWindow(ctx);
  }
}

void SelfConsistencyPolicy::StopSampling(PolicyContext& ctx) {
  for (Trace& trace : book_.traces()) {
    if (trace.state != TraceState::kRunning && trace.state != TraceState::kPaused) continue;
    if (book_.Prune(trace, ctx)) stopped_early_ = true;
  }
}

void SelfConsistencyPolicy::ReleaseNextWindow(PolicyContext& ctx) {
  const int32_t end = std::min(released_ + batch_, book_.size());
  for (int32_t i = released_; i < end; ++i) {
    Trace& trace = book_.traces()[static_cast<size_t>(i)];
    if (trace.state == TraceState::kPaused && ctx.Resume(trace.seq_id).ok()) {
      trace.state = TraceState::kRunning;
    }
  }
  released_ = end;
}

PolicyResult SelfConsistencyPolicy::Finalize(std::span<const SequenceResult> seqs) {
  book_.Reconcile(seqs, *extractor_);
  std::vector<const Trace*> voters;
  std::vector<std::optional<std::string>> answers;
  for (const Trace& trace : book_.traces()) {
    if (trace.state != TraceState::kFinished) continue;
    voters.push_back(&trace);
    answers.push_back(trace.answer);
  }
  const VoteResult vote = MajorityVote(answers);
  PolicyResult result;
  const int64_t chosen = ChooseWinnerTrace(vote, voters);
  if (chosen >= 0) result.choices.push_back(chosen);
  result.report = {
      {"samples_used", static_cast<double>(voters.size())},
      {kReportTracesPruned, static_cast<double>(book_.Count(TraceState::kPruned))},
      {"stopped_early", stopped_early_ ? 1.0 : 0.0},
      {kReportTokensGenerated, static_cast<double>(book_.tokens_generated())},
      {kReportTokensSaved, static_cast<double>(book_.tokens_saved())},
      {"winner_share", vote.share},
  };
  AppendVoteFigures(vote, &result.report);
  return result;
}

}  // namespace alignserve
