// LoopGuardPolicy: one sample that is stopped the moment it starts
// repeating itself (alignment/loop_guard.h: an n-gram recurring 3 times in
// a window of tokens), instead of burning tokens up to max_tokens.
//
// The sequence finishes with FinishReason::kStop, keeping its tokens, so the
// client gets the text so far (an abort would return nothing). Report
// figures: loop_detected (0/1), loop_detected_at_token (output tokens when
// it fired; absent when no loop), tokens_generated, tokens_saved (the unused
// max_tokens budget of a stopped loop: an upper-bound estimate).
//
// SequenceLoopGuards is the piece other policies reuse: one LoopGuard per
// sequence id, fed the tokens their OnTokens views carry.
//
// Thread-safety: one instance per request (per policy), engine thread only.
#ifndef ALIGNSERVE_ALIGNMENT_LOOP_GUARD_POLICY_H_
#define ALIGNSERVE_ALIGNMENT_LOOP_GUARD_POLICY_H_

#include <cstdint>
#include <memory>
#include <span>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "alignment/loop_guard.h"
#include "alignment/policy_params.h"
#include "engine/decoding_policy.h"

namespace alignserve {

// One LoopGuard per sequence, created at the sequence's first token.
class SequenceLoopGuards {
 public:
  // InvalidArgument when LoopGuard::Create rejects the config.
  static absl::StatusOr<SequenceLoopGuards> Create(const LoopGuardConfig& config);

  // Feeds the sequence's newest token; true once that sequence loops. A
  // sequence first seen with several output tokens (a fork) is fed them all.
  bool Add(int64_t seq_id, std::span<const int32_t> output_token_ids);
  void Forget(int64_t seq_id) { guards_.erase(seq_id); }
  int32_t loops_detected() const { return loops_detected_; }

 private:
  explicit SequenceLoopGuards(const LoopGuardConfig& config) : config_(config) {}

  LoopGuardConfig config_;
  absl::flat_hash_map<int64_t, LoopGuard> guards_;
  int32_t loops_detected_ = 0;
};

class LoopGuardPolicy : public DecodingPolicy {
 public:
  // LoopGuardConfig from the params (repeats 3); InvalidArgument if invalid.
  static absl::StatusOr<std::shared_ptr<LoopGuardPolicy>> Create(const LoopGuardParams& params);

  void OnTokens(std::span<TokenView> seqs, PolicyContext& ctx) override;
  PolicyResult Finalize(std::span<const SequenceResult> seqs) override;

  bool loop_detected() const { return loop_at_token_ >= 0; }
  // Output tokens when the loop was detected; -1 when none was.
  int64_t loop_detected_at_token() const { return loop_at_token_; }

 private:
  explicit LoopGuardPolicy(SequenceLoopGuards guards) : guards_(std::move(guards)) {}

  SequenceLoopGuards guards_;
  int64_t loop_at_token_ = -1;
  int64_t tokens_generated_ = 0;
  int64_t tokens_saved_ = 0;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_ALIGNMENT_LOOP_GUARD_POLICY_H_
