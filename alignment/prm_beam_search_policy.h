// PrmBeamSearchPolicy: beam search guided by a process reward
// (`prm_beam_search`, issue 5), as in HuggingFace's search-and-learn (Beeching,
// Tunstall, Rush 2024, "Scaling test-time compute with open models"). A
// response is a chain of steps that end at `delimiter`; N beams each generate
// one step, a process reward scores each beam's last step, the top N / M
// beams survive and each is expanded M ways for the next step. A beam that
// finishes (EOS, a stop string, max_tokens) is a completed candidate and is
// set aside; the request returns the completed candidate with the highest
// reward of its last (final) step.
//
// Engine mapping (engine/decoding_policy.h):
//   - round 0: the request expands into N sequences sharing the prompt
//     (PolicySpec::num_sequences = n; beam i draws with the request's seed
//     + i); PolicySpec::boundary_delimiter = delimiter;
//   - a beam whose text ends with the delimiter (TokenView::boundary) is
//     paused (it keeps its KV blocks) and (prompt, its text so far) is
//     submitted to the RewardModel at once; a beam that finishes is
//     submitted with its completion. Scoring overlaps the round's other beams;
//   - once every beam of the round is paused or finished and every score of
//     the round is in (failed ones are NaN), the round is decided: finished
//     beams join the completed candidates; the paused ones are ranked by
//     reward, the top min(paused, N / M) are kept and the rest are aborted
//     (ctx.Abort: their blocks are freed in that step); each kept beam is
//     forked M - 1 ways (children share its blocks copy-on-write and draw
//     with their own seeds) and resumed. The kept beams and their children
//     are the next round.
//   - end: when a round is decided with at least N completed candidates,
//     its paused beams are aborted and the request ends (search-and-learn's
//     early exit); otherwise it ends when no beam is left. There is no round
//     cap: each round adds at least one token to every beam, so max_tokens
//     bounds the number of rounds.
// Ranking: reward descending; NaN (a failed score) ranks below every
// number, so it is kept only to fill a slot no scored beam wants; ties go
// to the smaller seq id (the beam created first). Finalize applies the same
// order to the completed candidates but never returns a NaN one: with no
// scored candidate it falls back to the first sequence not pruned.
// Differences from search-and-learn: a round keeps at most N / M beams and
// forks exactly M - 1 children each, so a round after some beams completed
// runs fewer than N beams (search-and-learn re-fills N by copying the
// survivors); a step's reward is the RewardModel's score of (prompt, the
// whole response so far), search-and-learn's "last" aggregation. Past
// PolicySpec::kMaxSequences sequences in the group a fork fails and the kept
// beam goes on alone.
// Cost: rounds are synchronous, so beams that reached their boundary wait,
// paused, for the round's longest step; each round then costs a scoring step
// and a delivery step before the kept beams resume (as args_policy.h notes),
// plus one reward-model prefill per beam per round.
//
// Report (PolicyResult::report), in this order: "rounds" (rounds decided),
// "num_completed" (completed candidates), "traces_pruned" (beams this
// policy aborted), "beams_forked" (fork children made), "num_scored" (score
// results that carried a reward), "tokens_generated" (every token any beam
// sampled), "chosen_reward" (the returned candidate's reward, NaN if none);
// the shared keys mean what alignment/policy_report_keys.h says.
//
// Thread-safety: one instance per request, engine thread only (as every
// DecodingPolicy); the RewardModel may be shared across requests.
#ifndef ALIGNSERVE_ALIGNMENT_PRM_BEAM_SEARCH_POLICY_H_
#define ALIGNSERVE_ALIGNMENT_PRM_BEAM_SEARCH_POLICY_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "alignment/policy_params.h"
#include "alignment/reward_model.h"
#include "engine/decoding_policy.h"
#include "models/tokenizer/tokenizer.h"

namespace alignserve {

struct PrmBeamSearchOptions {
  PrmBeamSearchParams params;  // n beams, beam_width M, step delimiter
  // The prompt as the reward model reads it; empty: the request's prompt
  // tokens decoded with `tokenizer` (special tokens skipped), or "".
  std::string prompt;
  const Tokenizer* tokenizer = nullptr;  // not owned
};

class PrmBeamSearchPolicy final : public DecodingPolicy {
 public:
  // InvalidArgument: parameters out of range (policy_params.h), or no
  // reward model.
  static absl::StatusOr<std::shared_ptr<PrmBeamSearchPolicy>> Create(
      PrmBeamSearchOptions options, std::shared_ptr<const RewardModel> reward_model);

  PolicySpec Spec() const override;
  void OnScores(std::span<const ScoreResult> scores, PolicyContext& ctx) override;
  void OnStep(PolicyContext& ctx) override;
  void OnTokens(std::span<TokenView> seqs, PolicyContext& ctx) override;
  void OnFinished(std::span<const SequenceEnd> ended, PolicyContext& ctx) override;
  PolicyResult Finalize(std::span<const SequenceResult> seqs) override;

 private:
  enum class BeamState { kRunning, kPaused, kFinished, kLost };  // kLost: aborted from outside
  struct Beam {
    int64_t seq_id = 0;
    BeamState state = BeamState::kRunning;
    bool scored = false;  // its result (or failure) is in
    double reward = 0;    // NaN: no score
  };
  struct Candidate {
    int64_t seq_id = 0;
    double reward = 0;
  };

  PrmBeamSearchPolicy(PrmBeamSearchOptions options, std::shared_ptr<const RewardModel> reward_model)
      : options_(std::move(options)), reward_model_(std::move(reward_model)) {}

  Beam* Find(int64_t seq_id);
  const std::string& PromptText(const PolicyContext& ctx);
  void Submit(Beam& beam, std::string_view response, PolicyContext& ctx);
  // Decides the round once all its beams are settled and scored.
  void MaybeDecideRound(PolicyContext& ctx);
  void DecideRound(PolicyContext& ctx);
  // The round's paused beams kept for the next one: forked and resumed.
  void Expand(const std::vector<Beam>& kept, PolicyContext& ctx);

  const PrmBeamSearchOptions options_;
  const std::shared_ptr<const RewardModel> reward_model_;
  std::optional<std::string> prompt_text_;
  std::vector<Beam> round_;                        // the current round's beams
  absl::flat_hash_map<int64_t, int64_t> pending_;  // score id -> seq id
  std::vector<Candidate> completed_;               // in the order rounds set them aside
  int32_t rounds_ = 0;
  int32_t traces_pruned_ = 0;
  int32_t beams_forked_ = 0;
  int32_t num_scored_ = 0;
  int64_t tokens_generated_ = 0;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_ALIGNMENT_PRM_BEAM_SEARCH_POLICY_H_
