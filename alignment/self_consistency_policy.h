// SelfConsistencyPolicy: self-consistency with early stopping. Up to n
// samples of the same prompt each produce an answer (a pluggable
// AnswerExtractor: last number, \boxed{}, a regex); the request returns the
// sample whose answer won the majority vote. A stopping rule (ESC's
// unanimous window, Adaptive-Consistency's Beta criterion, or none; see
// stopping_rules.h) ends sampling once more samples would not change the
// vote, and the samples not yet needed are pruned.
//
// How samples start. The engine can start prompt-only sequences only at
// admission (PolicySpec::num_sequences; ctx.Fork copies a sequence's output
// tokens, so a fork is not a fresh sample). The policy therefore expands all
// n samples up front, one prefill shared copy-on-write, and holds back every
// sample past the first window: each draws its first token with the others
// (sample i with seed + i, exactly what a plain request seeded seed + i
// draws) and is paused there, keeping only its share of the prompt's blocks.
// With rule "none" all n run at once.
//
// Windows. Samples run `window` at a time, in sample order. When every
// sample of the running window has ended and the rule has not fired, the
// next window is resumed. The rule judges the answers of the longest run of
// finished samples from sample 0 (sample order, so its decision depends on
// the texts only, never on which sample finished first); it is asked after
// every end. When it fires, every sample still running or paused is aborted
// in that step (their KV blocks are freed at once).
//
// Result. The vote counts every finished sample (not the pruned ones), in
// sample order; Finalize returns the first sample whose answer won, else
// the first finished sample. Report figures: samples_used, traces_pruned,
// stopped_early (0/1), tokens_generated, tokens_saved (trace_book.h: an
// upper-bound estimate), winner_share, votes:<answer> per distinct answer.
//
// Thread-safety: one instance per request, driven on the engine thread.
#ifndef ALIGNSERVE_ALIGNMENT_SELF_CONSISTENCY_POLICY_H_
#define ALIGNSERVE_ALIGNMENT_SELF_CONSISTENCY_POLICY_H_

#include <memory>
#include <span>

#include "absl/status/statusor.h"
#include "alignment/answer_extractor.h"
#include "alignment/policy_params.h"
#include "alignment/stopping_rules.h"
#include "alignment/trace_book.h"
#include "engine/decoding_policy.h"

namespace alignserve {

class SelfConsistencyPolicy : public DecodingPolicy {
 public:
  // InvalidArgument for parameters ParsePolicySpec would reject.
  static absl::StatusOr<std::shared_ptr<SelfConsistencyPolicy>> Create(
      const SelfConsistencyParams& params);

  PolicySpec Spec() const override;
  void OnTokens(std::span<TokenView> seqs, PolicyContext& ctx) override;
  void OnFinished(std::span<const SequenceEnd> ended, PolicyContext& ctx) override;
  PolicyResult Finalize(std::span<const SequenceResult> seqs) override;

  // For tests and metrics, valid once the request ended.
  const TraceBook& book() const { return book_; }
  bool stopped_early() const { return stopped_early_; }

 private:
  SelfConsistencyPolicy(const SelfConsistencyParams& params,
                        std::unique_ptr<AnswerExtractor> extractor,
                        std::unique_ptr<StoppingRule> rule);

  // Aborts every sample still running or paused.
  void StopSampling(PolicyContext& ctx);
  // Resumes the next window's paused samples.
  void ReleaseNextWindow(PolicyContext& ctx);

  const SelfConsistencyParams params_;
  const std::unique_ptr<AnswerExtractor> extractor_;
  const std::unique_ptr<StoppingRule> rule_;
  const int32_t batch_;  // samples released at a time: window, or n for rule "none"
  int32_t released_;     // samples [0, released_) are not held back
  bool done_ = false;    // the rule fired: nothing more is released
  bool stopped_early_ = false;
  TraceBook book_;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_ALIGNMENT_SELF_CONSISTENCY_POLICY_H_
