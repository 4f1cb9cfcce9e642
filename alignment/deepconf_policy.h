// DeepConfPolicy: online DeepConf (Fu, Wang, Tian, Zhao 2025), the policy
// that drives traces with the arithmetic of alignment/deepconf.h.
//
//   1. Warm-up: traces 0 .. n_init - 1 run to completion. Each token's
//      confidence is TokenConfidence of its top_k logprobs (the engine
//      sends them through PolicySpec::top_logprobs) and goes into the
//      trace's GroupConfidenceWindow.
//   2. Threshold: once every warm-up trace has ended, s =
//      DeepConfThreshold(their lowest group confidences, percentile).
//   3. Later traces n_init .. n - 1 run; each is aborted at the first token
//      whose window is full and whose mean is below s
//      (GroupConfidenceWindow::ShouldStop), in the step that produced it,
//      so its KV blocks are freed at once.
//   4. Vote: every trace that was not pruned and whose lowest group
//      confidence is >= s votes for its extracted answer, weighted by that
//      lowest group confidence (WeightedMajorityVote). This filter is what
//      online pruning does to long traces, applied as the reference code
//      does to traces shorter than the window (which cannot be stopped
//      early) and to the warm-up traces, so percentile 90 keeps about the
//      top 10% of them. Finalize returns the first voting trace whose answer
//      won, else the first finished trace.
//
// How later traces start: as in self_consistency_policy.h, the engine starts
// prompt-only sequences only at admission, so all n are expanded up front;
// the later ones draw their first token with the warm-up (its confidence is
// recorded), are paused there (TokenDecision::kPause) and resumed when the
// threshold is set. A resumed trace whose window is already full and below
// s (window 1) is aborted right then.
//
//   5. Consensus (params.consensus = tau, optional; the paper's early
//      stop): after the warm-up, whenever traces finish, the vote of the
//      finished traces that vote (step 4's filter, warm-up traces
//      included) is taken; once the winning answer holds at least tau of
//      the weight, every trace still running or paused is stopped (aborted:
//      its blocks free at once; it does not vote).
//
// Report figures: threshold, warmup_traces, traces_pruned (all aborted),
// traces_voting, tokens_generated, tokens_saved (trace_book.h: an
// upper-bound estimate), winner_share, votes:<answer> (the answer's total
// weight), and with consensus set: consensus_reached (0 or 1) and
// traces_stopped_at_consensus.
//
// Thread-safety: one instance per request, driven on the engine thread.
#ifndef ALIGNSERVE_ALIGNMENT_DEEPCONF_POLICY_H_
#define ALIGNSERVE_ALIGNMENT_DEEPCONF_POLICY_H_

#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "alignment/answer_extractor.h"
#include "alignment/deepconf.h"
#include "alignment/policy_params.h"
#include "alignment/trace_book.h"
#include "engine/decoding_policy.h"

namespace alignserve {

class DeepConfPolicy : public DecodingPolicy {
 public:
  // InvalidArgument for parameters ParsePolicySpec would reject.
  static absl::StatusOr<std::shared_ptr<DeepConfPolicy>> Create(const DeepConfParams& params);

  PolicySpec Spec() const override;
  void OnTokens(std::span<TokenView> seqs, PolicyContext& ctx) override;
  void OnFinished(std::span<const SequenceEnd> ended, PolicyContext& ctx) override;
  PolicyResult Finalize(std::span<const SequenceResult> seqs) override;

  // For tests and metrics.
  std::optional<double> threshold() const { return threshold_; }
  const TraceBook& book() const { return book_; }
  // Window of trace `index` (sample order); index < book().size().
  const GroupConfidenceWindow& window(int32_t index) const {
    return windows_[static_cast<size_t>(index)];
  }

 private:
  DeepConfPolicy(const DeepConfParams& params, std::unique_ptr<AnswerExtractor> extractor);

  bool IsWarmup(const Trace& trace) const { return trace.index < params_.n_init; }
  // Sets the threshold once every warm-up trace ended, then resumes the rest.
  void MaybeEndWarmup(PolicyContext& ctx);
  // Whether a trace ending (or ended) now may vote.
  bool Votes(const Trace& trace) const;
  // The weighted vote of the voting traces (and them, in book order).
  VoteResult Vote(std::vector<const Trace*>* voters) const;
  // Step 5: stops the unfinished traces once the vote reaches consensus.
  void MaybeStopAtConsensus(PolicyContext& ctx);

  const DeepConfParams params_;
  const std::unique_ptr<AnswerExtractor> extractor_;
  TraceBook book_;
  std::vector<GroupConfidenceWindow> windows_;  // [book_.size()] by trace index
  std::optional<double> threshold_;
  bool consensus_reached_ = false;
  int32_t stopped_at_consensus_ = 0;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_ALIGNMENT_DEEPCONF_POLICY_H_
