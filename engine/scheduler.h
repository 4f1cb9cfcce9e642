// Scheduler: continuous batching over a paged KV cache, in the style of
// vLLM v1 and nano-vllm. Each step it picks which sequences run and how many
// tokens each (Schedule -> StepPlan), then folds the sampled tokens back in
// (Update). It never touches device memory or a model, so it is tested with
// hand-built StepOutputs.
//
// Policy, per step, under a token budget and a sequence cap:
//   1. running decodes, one token each, in scheduling order (RunsBefore:
//      priority, then arrival);
//   2. running sequences part-way through a (re)prefill continue, chunked to
//      the remaining budget;
//   3. waiting sequences are admitted in scheduling order, their prompt
//      chunked to the remaining budget (chunked prefill is always on). The
//      head of the queue is never overtaken (strict FCFS within a priority),
//      so a waiting request waits only for those ahead of it, never for later
//      arrivals, with one exception: same-step prefix sharing
//      (SchedulerConfig::shared_prefix_wait_blocks) lets a sequence whose
//      leading blocks an earlier admission of this step is computing wait
//      for the next step, where it is first in line and finds those blocks
//      cached. Nothing is admitted in a step that preempted.
// When blocks run out, the youngest running sequence not yet scheduled this
// step (or, if none is younger, the one asking) is preempted by recompute:
// its blocks are freed, num_computed_tokens drops to 0 and it re-queues with
// its original key, i.e. ahead of every later arrival; its prompt and outputs
// so far are recomputed (its cached prefix blocks usually survive).
// A sequence finishes on a stop decision, at max_tokens outputs, or at
// max_sequence_len tokens; its blocks are freed within the same Update.
// Paused sequences (Pause, for a decoding policy waiting on scores) keep
// their blocks and status but are skipped: never scheduled, never chosen as a
// preemption victim, and a paused waiting sequence never holds up the head
// of the queue, so pausing cannot starve anyone; Resume makes them eligible
// again from the next Schedule.
// Limits: max_num_seqs caps admissions and the sequences of one step; forks
// may push the running set past it (the extra ones wait their turn). A
// higher-priority arrival waits for blocks like any other: priority orders
// the queue and the victims, it does not preempt on arrival.
//
// Thread-safety: owned by the engine thread; not thread-safe. Call order:
// Schedule, (run the plan), Update, repeat; AddRequest, Abort, Fork,
// FinishSequence, Pause and Resume between steps (Abort also while a plan is
// in flight).
#ifndef ALIGNSERVE_ENGINE_SCHEDULER_H_
#define ALIGNSERVE_ENGINE_SCHEDULER_H_

#include <cstdint>
#include <memory>
#include <set>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/kv_cache_manager.h"
#include "engine/scheduler_config.h"
#include "engine/sequence.h"
#include "engine/step_plan.h"

namespace alignserve {

class Scheduler {
 public:
  static absl::StatusOr<std::unique_ptr<Scheduler>> Create(const SchedulerConfig& config);

  // Queues a request with one sequence and returns that sequence's id.
  // InvalidArgument: empty prompt, negative token id, max_tokens <= 0, or
  // prompt + 1 tokens over max_model_len. ResourceExhausted: prompt + 1
  // tokens can never fit in the whole KV pool. AlreadyExists: duplicate id.
  absl::StatusOr<int64_t> AddRequest(int64_t request_id, std::vector<int32_t> prompt,
                                     RequestParams params);

  // The next step. Empty while the previous plan awaits Update.
  StepPlan Schedule();
  // Optional: hands back a plan once its step has run, so that later
  // Schedule calls refill its entries' token and block-table buffers
  // instead of allocating new ones (a decode step copies every running
  // sequence's block table into its plan).
  void Recycle(StepPlan plan);

  // Applies the step's sampled tokens and returns the requests that finished
  // (ownership passes to the caller). InvalidArgument, changing nothing, if
  // the outputs do not match the plan's sampled sequences one to one.
  absl::StatusOr<std::vector<std::unique_ptr<SequenceGroup>>> Update(const StepOutput& output);

  // Finishes every sequence of the request (reason kAbort), frees its blocks
  // at once and returns it. NotFound for an unknown or finished request.
  absl::StatusOr<std::unique_ptr<SequenceGroup>> Abort(int64_t request_id);

  // A child of a live sequence sharing its tokens and blocks (copy-on-write),
  // for policies that expand a request. Returns the child's id.
  // FailedPrecondition while a plan is in flight; NotFound for a bad id.
  absl::StatusOr<int64_t> Fork(int64_t seq_id);

  // Finishes one live sequence now (a policy's stop or prune) and frees its
  // blocks (a stop keeps them until ReleaseRetained, below). Returns its request if that was the
  // request's last unfinished sequence (ownership passes to the caller, as from Update), else null.
  // FailedPrecondition while a plan is in flight; NotFound for a bad id;
  // InvalidArgument for reason kNone.
  absl::StatusOr<std::unique_ptr<SequenceGroup>> FinishSequence(int64_t seq_id,
                                                                FinishReason reason);
  // A finished sequence of a policy request (reason other than kAbort)
  // keeps its blocks until ReleaseRetained, so that a scoring prompt the
  // policy queues as it learns of the finish may take them over
  // (ShareComputedKv): the engine releases them once the step's scoring
  // requests are added, and before it drops the request.
  void ReleaseRetained();
  void ReleaseRetainedOf(int64_t request_id);
  // If the live sequence `child_seq_id` (waiting, holding no blocks)
  // repeats the computed tokens of `source` (live, or finished and
  // retained) and has more, it takes source's blocks for them
  // (KvCacheManager::ShareComputed). Returns the tokens shared; 0 when the
  // conditions do not hold (nothing changes).
  int32_t ShareComputedKv(const Sequence& source, int64_t child_seq_id);

  // Holds / releases a live sequence (see the header comment). Idempotent.
  // FailedPrecondition while a plan is in flight; NotFound for a bad id.
  absl::Status Pause(int64_t seq_id);
  absl::Status Resume(int64_t seq_id);

  // Introspection (tests, metrics, policies).
  const Sequence* FindSequence(int64_t seq_id) const;  // live sequences only
  std::vector<const Sequence*> running() const;        // in scheduling order
  std::vector<const Sequence*> waiting() const;        // in admission order
  int32_t num_running() const { return static_cast<int32_t>(running_.size()); }
  int32_t num_waiting() const { return static_cast<int32_t>(waiting_.size()); }
  int32_t num_unfinished_requests() const { return static_cast<int32_t>(groups_.size()); }
  const KvCacheManager& kv_cache() const { return kv_; }
  double FreeBlockFraction() const { return kv_.FreeFraction(); }
  const SchedulerConfig& config() const { return config_; }

 private:
  struct ByRunsBefore {
    bool operator()(const Sequence* a, const Sequence* b) const { return RunsBefore(*a, *b); }
  };
  // A step under construction.
  struct StepBuilder {
    StepPlan plan;
    int32_t budget = 0;  // tokens left in this step
    absl::flat_hash_set<const Sequence*> scheduled;
    // Content hashes of full blocks the sequences admitted this step compute.
    absl::flat_hash_set<uint64_t> computing;
  };
  // What Update needs to remember of the plan in flight.
  struct InFlight {
    int64_t seq_id;
    int32_t num_tokens;
    bool sample;
  };

  explicit Scheduler(const SchedulerConfig& config);

  bool HasRoom(const StepBuilder& step) const;
  void ScheduleRunning(StepBuilder& step, bool decodes);
  bool AllocateOrPreempt(Sequence& seq, int32_t num_tokens, StepBuilder& step);
  Sequence* YoungestUnscheduledAfter(const Sequence& seq, const StepBuilder& step) const;
  void Preempt(Sequence& seq, StepBuilder& step);
  void AdmitWaiting(StepBuilder& step);
  void Emit(Sequence& seq, int32_t num_tokens, StepBuilder& step);

  absl::StatusOr<absl::flat_hash_map<int64_t, const SequenceOutput*>> MatchOutputs(
      const StepOutput& output) const;
  void ApplyOutput(Sequence& seq, const SequenceOutput& out);
  void FinishIfDone(Sequence& seq, FinishReason requested);
  void FinishSequence(Sequence& seq, FinishReason reason);
  Sequence& ForkSequence(Sequence& parent);
  std::vector<std::unique_ptr<SequenceGroup>> TakeFinishedGroups();
  // Same-step prefix sharing: seq (holding no blocks, `cached` tokens
  // cached) would compute at least shared_prefix_wait_blocks full blocks in
  // a row that an admission of this step computes already.
  bool WaitsForSharedPrefix(const Sequence& seq, int32_t cached, const StepBuilder& step) const;

  void InsertRunning(Sequence* seq);
  void RemoveRunning(Sequence* seq);

  const SchedulerConfig config_;
  KvCacheManager kv_;
  absl::flat_hash_map<int64_t, std::unique_ptr<SequenceGroup>> groups_;  // unfinished requests
  absl::flat_hash_map<int64_t, Sequence*> live_;  // unfinished sequences by id
  std::vector<Sequence*> running_;                // sorted by RunsBefore
  std::set<Sequence*, ByRunsBefore> waiting_;     // waiting and preempted
  std::vector<InFlight> in_flight_;               // the plan awaiting Update
  std::vector<ScheduledSequence> spare_;          // from Recycle: buffers to refill
  absl::flat_hash_set<int64_t> touched_groups_;   // requests with a sequence finished this step
  std::vector<Sequence*> retained_;               // finished, blocks kept (ReleaseRetained)
  int64_t next_seq_id_ = 0;
  int64_t next_arrival_ = 0;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_ENGINE_SCHEDULER_H_
