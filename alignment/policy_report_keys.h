// The report keys every decoding policy shares (PolicyResult::report,
// engine/decoding_policy.h). A policy that has one of these figures reports
// it under this key and no other, so that the front ends can read the same
// figure from every policy: the per-policy Prometheus series
// (server/serving_metrics.h) count them, and clients compare them across
// policies in the response's "alignment" report. A key a policy leaves out
// means it does nothing of that kind (read as 0; a missing chosen_reward
// means the policy has no reward to report). Policies add their own keys
// beside these (votes:<answer>, args_steps, ...); those must not reuse
// these names for another meaning.
//
// Thread-safety: constants only.
#ifndef ALIGNSERVE_ALIGNMENT_POLICY_REPORT_KEYS_H_
#define ALIGNSERVE_ALIGNMENT_POLICY_REPORT_KEYS_H_

namespace alignserve {

// Every token any of the policy's sequences sampled (chosen or not).
inline constexpr char kReportTokensGenerated[] = "tokens_generated";
// Tokens the policy did not generate because it stopped or pruned sequences
// early, against running each to its max_tokens (an upper-bound estimate).
inline constexpr char kReportTokensSaved[] = "tokens_saved";
// Sequences (traces, samples, candidates, beams) the policy aborted before
// they finished.
inline constexpr char kReportTracesPruned[] = "traces_pruned";
// Reward-model scoring calls that returned a reward (a failed or unscorable
// call is not counted).
inline constexpr char kReportNumScored[] = "num_scored";
// The reward of the returned completion as the policy scored it; NaN when
// it was not scored.
inline constexpr char kReportChosenReward[] = "chosen_reward";
// Among the sequences whose rewards are reported as reward_<i>, the
// position of the returned one (-1: none).
inline constexpr char kReportChosenIndex[] = "chosen_index";
// reward_<i>: the reward of sequence i, in the policy's own order.
inline constexpr char kReportRewardPrefix[] = "reward_";

}  // namespace alignserve

#endif  // ALIGNSERVE_ALIGNMENT_POLICY_REPORT_KEYS_H_
