// BlockwiseCdPolicy: blockwise controlled decoding (`blockwise_cd`, issue 5;
// Mudgal et al. 2024, "Controlled Decoding from Language Models"). From the
// current prefix, K candidate blocks of M tokens are drawn from the base
// distribution; the RewardModel scores (prompt, prefix + block) for each; the
// highest-reward candidate becomes the new prefix and the others are pruned.
// Repeat until the winner stops (EOS, a stop string, max_tokens).
//
// Engine mapping (engine/decoding_policy.h):
//   - block 0: the request expands into K sequences (PolicySpec::
//     num_sequences), candidate i seeded with the request's seed + i;
//   - block boundary: PolicySpec::boundary_every = M. A candidate reaching it
//     is paused (keeps its blocks); a candidate that finishes inside the
//     block is a complete answer and is settled as it is;
//   - once every candidate of the block is settled, each is scored with
//     (prompt, its whole text so far) in one batch of K Score requests;
//   - OnScores: the argmax (lowest index on ties; NaN, i.e. failed, scores
//     never win unless all failed, then the first candidate) is kept, the
//     other unfinished candidates are aborted (their KV blocks are freed in
//     that same step), and, unless the winner has finished, the winner is
//     forked K - 1 ways (the children share its blocks copy-on-write) and all
//     K resume: the winner is candidate 0 of the next block.
//   - a finished winner ends the request: Finalize returns it.
// So the returned completion is the concatenation of the winning blocks.
//
// Report (PolicyResult::report), in this order: "blocks_decoded",
// "num_scored" (results that carried a reward), "traces_pruned" (candidates
// aborted), "tokens_generated" (every token any candidate sampled), then
// "reward_<i>" for candidate i of the last block, "chosen_index" (its
// winner's position among them) and "chosen_reward" (that winner's reward).
// Shared keys: alignment/policy_report_keys.h.
//
// Test hook: BlockwiseCdOptions::observer sees each block's decision just
// before and just after the losers are pruned, with the context.
//
// Thread-safety: one instance per request, engine thread only (as every
// DecodingPolicy); the RewardModel may be shared across requests.
#ifndef ALIGNSERVE_ALIGNMENT_BLOCKWISE_CD_POLICY_H_
#define ALIGNSERVE_ALIGNMENT_BLOCKWISE_CD_POLICY_H_

#include <cstdint>
#include <functional>
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

// One block's decision, as the observer sees it.
struct BlockRecord {
  int32_t block = 0;                   // 0-based
  std::vector<int64_t> candidates;     // seq ids, candidate order (the previous winner first)
  std::vector<std::string> responses;  // what was scored: the whole text of each
  std::vector<bool> finished;          // the candidate ended inside the block
  std::vector<double> rewards;         // NaN: no score
  size_t winner = 0;                   // index into candidates
};

struct BlockwiseCdObserver {
  // Called with the losers still alive, then again once they are aborted.
  std::function<void(const BlockRecord&, const PolicyContext&)> before_prune;
  std::function<void(const BlockRecord&, const PolicyContext&)> after_prune;
};

struct BlockwiseCdOptions {
  BlockwiseCdParams params;  // k candidates, m tokens per block
  // The prompt as the reward model reads it; empty: the request's prompt
  // tokens decoded with `tokenizer` (special tokens skipped), or "".
  std::string prompt;
  const Tokenizer* tokenizer = nullptr;  // not owned
  BlockwiseCdObserver observer;          // tests only
};

class BlockwiseCdPolicy final : public DecodingPolicy {
 public:
  // InvalidArgument: k or m out of range (policy_params.h), or no reward model.
  static absl::StatusOr<std::shared_ptr<BlockwiseCdPolicy>> Create(
      BlockwiseCdOptions options, std::shared_ptr<const RewardModel> reward_model);

  PolicySpec Spec() const override;
  void OnTokens(std::span<TokenView> seqs, PolicyContext& ctx) override;
  void OnFinished(std::span<const SequenceEnd> ended, PolicyContext& ctx) override;
  void OnScores(std::span<const ScoreResult> scores, PolicyContext& ctx) override;
  PolicyResult Finalize(std::span<const SequenceResult> seqs) override;

 private:
  enum class CandidateState { kRunning, kAtBoundary, kFinished };
  struct Candidate {
    explicit Candidate(int64_t id) : seq_id(id) {}
    int64_t seq_id = 0;
    CandidateState state = CandidateState::kRunning;
    std::string response;
    double reward = 0;
    bool scored = false;  // its result (or failure) is in
  };

  BlockwiseCdPolicy(BlockwiseCdOptions options, std::shared_ptr<const RewardModel> reward_model)
      : options_(std::move(options)), reward_model_(std::move(reward_model)) {}

  Candidate* Find(int64_t seq_id);
  const std::string& PromptText(const PolicyContext& ctx);
  // Submits the block's scores once every candidate has settled.
  void MaybeScoreBlock(PolicyContext& ctx);
  void DecideBlock(PolicyContext& ctx);
  BlockRecord Record(size_t winner) const;

  const BlockwiseCdOptions options_;
  const std::shared_ptr<const RewardModel> reward_model_;
  std::optional<std::string> prompt_text_;
  std::vector<Candidate> block_;                  // the current block's candidates
  absl::flat_hash_map<int64_t, size_t> pending_;  // score id -> index in block_
  bool scoring_ = false;                          // the block's scores are out
  int64_t winner_ = -1;                           // final winner's seq id, once known
  int32_t blocks_decoded_ = 0;
  int32_t candidates_scored_ = 0;
  int32_t candidates_pruned_ = 0;
  int64_t tokens_generated_ = 0;
  std::vector<double> last_rewards_;
  size_t last_winner_ = 0;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_ALIGNMENT_BLOCKWISE_CD_POLICY_H_
