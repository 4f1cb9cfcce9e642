// Sequence and SequenceGroup: the engine's view of a request. A request (a
// SequenceGroup) owns one or more sequences, one per sample; they start from
// the same prompt and forks share their parent's KV blocks copy-on-write.
//
// A sequence's tokens are its prompt followed by its outputs; the list is
// append-only. num_computed_tokens of them already have K/V in the paged
// cache; the rest (a prefill, a recompute after preemption, or the one newest
// token of a decode) must still run through the model. Token position p lives
// in block block_table[p / block_size].
//
// Who writes what: the Scheduler writes status and tokens; the KvCacheManager
// alone writes the KV state (block table, computed count, prefix-cache keys).
// Thread-safety: owned by the engine thread; not thread-safe.
#ifndef ALIGNSERVE_ENGINE_SEQUENCE_H_
#define ALIGNSERVE_ENGINE_SEQUENCE_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/sampling_params.h"

namespace alignserve {

enum class SequenceStatus {
  kWaiting,    // queued, never admitted
  kRunning,    // admitted: may hold blocks and be scheduled
  kPreempted,  // queued again after preemption; holds no blocks, recomputes
  kFinished,   // holds no blocks; finish_reason says why
};

enum class FinishReason {
  kNone,    // not finished
  kStop,    // stop token or string (decided by the stop checker / policy)
  kLength,  // max_tokens or the context limit reached
  kAbort,   // client abort or a policy pruning the sequence
};

class DecodingPolicy;  // engine/decoding_policy.h

std::string_view ToString(SequenceStatus status);
std::string_view ToString(FinishReason reason);

// What a request asks of the scheduler, fixed at arrival.
struct RequestParams {
  int32_t priority = 0;    // lower runs first; ties go to the earlier arrival
  std::string cache_salt;  // isolates the prefix cache (e.g. a LoRA adapter name)
  // The scheduler reads only sampling.max_tokens (output tokens per
  // sequence, > 0); the rest is for the sampler and stop checker.
  SamplingParams sampling;
  // Null: plain sampling. Else the request's own DecodingPolicy instance
  // (never shared between requests), created per request by the alignment
  // layer; LlmEngine drives it on the engine thread and drops it when the
  // request ends. sampling.n must then be 1: the policy's Spec decides how
  // many sequences run and Finalize how many choices return. shared_ptr so
  // that the caller may keep a handle (e.g. to read figures afterwards).
  std::shared_ptr<DecodingPolicy> policy;
};

// The KV bookkeeping of one sequence, written only by KvCacheManager.
struct SequenceKvState {
  // Block ids, one per block_size tokens. Append-only while the sequence holds
  // blocks, except that copy-on-write swaps the last entry; cleared on free.
  std::vector<int32_t> block_table;
  // Tokens [0, num_computed_tokens) have K/V in the blocks above.
  int32_t num_computed_tokens = 0;
  // Chained content hash of each full block of tokens (BlockPool::HashBlock).
  // Tokens are append-only, so this survives preemption and only grows.
  std::vector<uint64_t> block_hashes;
  // Prefix-cache identity (BlockPool uid) of block_table[i] for the first
  // block_uids.size() blocks: those already matched or registered. Cleared on free.
  std::vector<uint64_t> block_uids;
};

class SequenceGroup;

class Sequence {
 public:
  Sequence(int64_t seq_id, SequenceGroup* group, std::vector<int32_t> prompt);
  // A fork: the parent's tokens and status, no blocks (KvCacheManager::Fork
  // shares them).
  Sequence(int64_t seq_id, const Sequence& parent);

  Sequence(const Sequence&) = delete;
  Sequence& operator=(const Sequence&) = delete;

  int64_t seq_id() const { return seq_id_; }
  SequenceGroup& group() const { return *group_; }
  int64_t request_id() const;
  std::string_view cache_salt() const;

  const std::vector<int32_t>& token_ids() const { return token_ids_; }
  int32_t num_tokens() const { return static_cast<int32_t>(token_ids_.size()); }
  int32_t num_prompt_tokens() const { return num_prompt_tokens_; }
  int32_t num_output_tokens() const { return num_tokens() - num_prompt_tokens_; }
  std::span<const int32_t> output_token_ids() const;

  int32_t num_computed_tokens() const { return kv_.num_computed_tokens; }
  // Tokens still to run before the next token can be sampled: the whole
  // prompt at first, 1 in steady decode, everything after a preemption.
  int32_t num_uncomputed_tokens() const { return num_tokens() - kv_.num_computed_tokens; }
  const std::vector<int32_t>& block_table() const { return kv_.block_table; }

  SequenceStatus status() const { return status_; }
  FinishReason finish_reason() const { return finish_reason_; }
  bool is_finished() const { return status_ == SequenceStatus::kFinished; }
  int32_t num_preemptions() const { return num_preemptions_; }
  // Held by a decoding policy (Scheduler::Pause): not scheduled, not
  // preempted, keeps its blocks; its status is unchanged.
  bool paused() const { return paused_; }

  void AppendToken(int32_t token) { token_ids_.push_back(token); }
  void set_status(SequenceStatus status) { status_ = status; }
  void set_paused(bool paused) { paused_ = paused; }  // Scheduler only
  void MarkPreempted();
  void Finish(FinishReason reason);

  const SequenceKvState& kv() const { return kv_; }
  SequenceKvState& mutable_kv() { return kv_; }  // KvCacheManager only

 private:
  const int64_t seq_id_;
  SequenceGroup* const group_;
  std::vector<int32_t> token_ids_;  // [num_tokens] prompt, then outputs
  const int32_t num_prompt_tokens_;
  SequenceStatus status_ = SequenceStatus::kWaiting;
  FinishReason finish_reason_ = FinishReason::kNone;
  int32_t num_preemptions_ = 0;
  bool paused_ = false;  // a fork starts unpaused
  SequenceKvState kv_;
};

// Scheduling order: lower priority value first, then earlier arrival, then
// lower sequence id (forks of one request keep their creation order).
bool RunsBefore(const Sequence& a, const Sequence& b);

class SequenceGroup {
 public:
  SequenceGroup(int64_t request_id, RequestParams params, int64_t arrival);

  SequenceGroup(const SequenceGroup&) = delete;
  SequenceGroup& operator=(const SequenceGroup&) = delete;

  int64_t request_id() const { return request_id_; }
  const RequestParams& params() const { return params_; }
  // Order of AddRequest calls, from 0; FCFS compares these.
  int64_t arrival() const { return arrival_; }

  Sequence& AddSequence(std::unique_ptr<Sequence> seq);
  // Stable pointers: sequences are never removed before the group dies.
  const std::vector<std::unique_ptr<Sequence>>& sequences() const { return seqs_; }
  // True once every sequence has finished.
  bool is_finished() const;

 private:
  const int64_t request_id_;
  const RequestParams params_;
  const int64_t arrival_;
  std::vector<std::unique_ptr<Sequence>> seqs_;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_ENGINE_SEQUENCE_H_
