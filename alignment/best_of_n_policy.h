// BestOfNPolicy: the best_of_n and soft_best_of_n decoding policies
// (issue 5). The request expands into n sequences sharing the prompt (the
// engine's expand: sequence i samples with the request's seed + i, so it
// draws what a plain seeded request with seed + i draws). Each sequence is
// scored by the RewardModel as soon as it finishes (OnFinished submits
// (prompt, its completion)), so scoring overlaps the others' generation
// and is batched with it; the engine holds the finished group until the
// last score is delivered (engine/decoding_policy.h, "Score"), then
// Finalize selects one sequence:
//   best_of_n       BestOfN(rewards): the highest reward, lowest index on ties;
//   soft_best_of_n  SoftBestOfN(rewards, lambda, seed): sample i with
//                   probability ~ exp(r_i / lambda), the draw seeded with the
//                   request's resolved sampling seed (PolicyContext::seed), so
//                   a seeded request is reproducible end to end.
// Pruned sequences and failed scores (e.g. a pair too long for the judge's
// context) get a NaN reward and are never selected; if nothing is
// selectable the first sequence not pruned is returned.
// Report (PolicyResult::report), in this order: "reward_<i>" for each
// sequence i in creation order (NaN if unscored), "chosen_index",
// "num_sequences", "num_scored", "tokens_generated", "chosen_reward" (the
// returned sequence's reward, NaN if none). Shared keys:
// alignment/policy_report_keys.h.
//
// Thread-safety: one instance per request, engine thread only (as every
// DecodingPolicy); the RewardModel may be shared.
#ifndef ALIGNSERVE_ALIGNMENT_BEST_OF_N_POLICY_H_
#define ALIGNSERVE_ALIGNMENT_BEST_OF_N_POLICY_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "alignment/reward_model.h"
#include "engine/decoding_policy.h"
#include "models/tokenizer/tokenizer.h"

namespace alignserve {

struct BestOfNOptions {
  int32_t n = 4;  // sequences, [1, PolicySpec::kMaxSequences]
  // Unset: best_of_n. Set: soft_best_of_n with this temperature (>= 0;
  // below kSoftBestOfNArgmaxLambda it selects as best_of_n).
  std::optional<double> lambda;
  // The prompt as the reward model reads it (the user's text, without a
  // chat template). Empty: the request's prompt tokens decoded with
  // `tokenizer` (special tokens skipped), or "" without one.
  std::string prompt;
  const Tokenizer* tokenizer = nullptr;
};

class BestOfNPolicy final : public DecodingPolicy {
 public:
  BestOfNPolicy(BestOfNOptions options, std::shared_ptr<const RewardModel> reward_model);

  PolicySpec Spec() const override;
  void OnFinished(std::span<const SequenceEnd> ended, PolicyContext& ctx) override;
  void OnScores(std::span<const ScoreResult> scores, PolicyContext& ctx) override;
  PolicyResult Finalize(std::span<const SequenceResult> seqs) override;

 private:
  const std::string& PromptText(const PolicyContext& ctx);

  const BestOfNOptions options_;
  const std::shared_ptr<const RewardModel> reward_model_;
  std::optional<std::string> prompt_text_;         // resolved at the first finish
  uint64_t seed_ = 0;                              // the request's, for the soft draw
  absl::flat_hash_map<int64_t, double> rewards_;   // by seq id, once known
  absl::flat_hash_map<int64_t, int64_t> pending_;  // score id -> seq id
  int32_t num_scored_ = 0;                         // results that carried a score
};

}  // namespace alignserve

#endif  // ALIGNSERVE_ALIGNMENT_BEST_OF_N_POLICY_H_
