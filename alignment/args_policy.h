// ArgsPolicy: ARGS, reward-guided search at decoding time (`args`, issue 5;
// Khanov, Burapacheep, Li, ICLR 2024). At each output position the top k
// tokens of the model's raw logits are the candidates; the RewardModel scores
// (prompt, prefix + candidate) for each, and the token taken is
//   greedy (no temperature):  argmax_i  logit_i + w * reward_i
//                             (lowest logit rank on ties; a failed score
//                             never wins unless all failed: then the top logit)
//   sampled (temperature T):  i ~ softmax((logit_i + w * reward_i) / T),
//                             drawn with the request's seed + the position
//                             (SoftBestOfN), so a seeded request reproduces.
//
// Engine mapping (engine/decoding_policy.h). A hook cannot wait for scores
// and the token read from a logits row is appended in that same step, so the
// k candidates are k sequences run in lockstep:
//   - the current winner is forked k - 1 ways (children share its blocks);
//     all k decode the same last token in one batched step, so their logits
//     rows are the same row; OnLogits reads the top k from the winner's row
//     and forces candidate i on sequence i;
//   - OnTokens pauses the k sequences and submits k Score requests, one per
//     (prompt, prefix + candidate) text;
//   - OnScores picks the winner as above, aborts the other k - 1 (their KV
//     blocks free in that step), forks the winner again and resumes it. A
//     winner that finished (EOS, stop string, max_tokens) ends the request.
// First position: the k candidates are the request's expand group
// (spec.num_sequences = k, sharing the prompt's blocks): at the first sample
// OnLogits forces candidate 0 on the root and candidate i on expand child i
// (LogitsView::expand_tokens), and from there the position is decided as
// every later one.
//
// Cost: per output token, k decode rows (batched, sharing the prefix's
// blocks) plus k judge prefills of rubric + prompt + prefix; with the prefix
// cache on, the rubric's opening and (for the next position) most of the
// previous judge prompts are hits, so a judge prefill computes roughly the
// tail after the shared blocks. Correct, not fast: a token waits one engine
// step for its decode, one for its k judge requests, and one for delivery.
//
// Report: "args_steps" (scored positions), "tokens_generated",
// "judge_calls" (scores asked for), "num_scored" (scores that carried a
// reward), "chosen_reward_mean" (over the scored positions, the chosen
// token's reward; shared keys: alignment/policy_report_keys.h). Per-position
// detail (candidates, logits, rewards, choice) via steps() (test hook).
//
// Thread-safety: one instance per request, engine thread only (as every
// DecodingPolicy); the RewardModel may be shared across requests.
#ifndef ALIGNSERVE_ALIGNMENT_ARGS_POLICY_H_
#define ALIGNSERVE_ALIGNMENT_ARGS_POLICY_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "alignment/policy_params.h"
#include "alignment/reward_model.h"
#include "engine/decoding_policy.h"
#include "models/tokenizer/tokenizer.h"

namespace alignserve {

// One output position's decision.
struct ArgsStep {
  int32_t position = 0;         // 0-based output index
  std::vector<int32_t> tokens;  // [k'] candidates, descending raw logit (ties: lower id)
  std::vector<float> logits;    // [k'] their raw logits
  std::vector<double> rewards;  // [k'] NaN: no score
  size_t chosen = 0;            // index into tokens
};

struct ArgsOptions {
  ArgsParams params;  // k, w, temperature
  // The prompt as the reward model reads it; empty: the request's prompt
  // tokens decoded with `tokenizer` (special tokens skipped), or "".
  std::string prompt;
  const Tokenizer* tokenizer = nullptr;  // not owned
};

class ArgsPolicy final : public DecodingPolicy {
 public:
  // InvalidArgument: k, w or temperature out of range (policy_params.h), or
  // no reward model.
  static absl::StatusOr<std::shared_ptr<ArgsPolicy>> Create(
      ArgsOptions options, std::shared_ptr<const RewardModel> reward_model);

  PolicySpec Spec() const override;
  void OnLogits(std::span<LogitsView> seqs, PolicyContext& ctx) override;
  void OnTokens(std::span<TokenView> seqs, PolicyContext& ctx) override;
  void OnScores(std::span<const ScoreResult> scores, PolicyContext& ctx) override;
  PolicyResult Finalize(std::span<const SequenceResult> seqs) override;

  // Every decided position so far, in order (test hook; engine thread).
  const std::vector<ArgsStep>& steps() const { return steps_; }

 private:
  ArgsPolicy(ArgsOptions options, std::shared_ptr<const RewardModel> reward_model)
      : options_(std::move(options)), reward_model_(std::move(reward_model)) {}

  const std::string& PromptText(const PolicyContext& ctx);
  // Forks `leader` into the next position's k candidates and resumes it.
  void StartPosition(int64_t leader, PolicyContext& ctx);
  // Position 0: maps the expand group's first tokens to candidates.
  void BindFirstPosition(std::span<TokenView> seqs);
  size_t Choose(const ArgsStep& step, uint64_t seed) const;
  void Decide(PolicyContext& ctx);

  const ArgsOptions options_;
  const std::shared_ptr<const RewardModel> reward_model_;
  std::optional<std::string> prompt_text_;
  std::vector<int64_t> group_;                    // this position's sequences, winner's line first
  std::vector<bool> finished_;                    // [group_.size()] ended with its candidate
  absl::flat_hash_map<int64_t, size_t> pending_;  // score id -> candidate index
  std::vector<ArgsStep> steps_;
  std::optional<ArgsStep> current_;  // the position being decided
  size_t seen_ = 0;                  // members whose token came this position
  bool awaiting_ = false;            // this position's scores are out
  int64_t winner_ = -1;              // the final sequence, once it finished
  int64_t tokens_generated_ = 0;
  int64_t judge_calls_ = 0;
  int64_t candidates_scored_ = 0;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_ALIGNMENT_ARGS_POLICY_H_
