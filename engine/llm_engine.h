// LlmEngine: the synchronous engine step, nano-vllm style. It owns the
// scheduler, the paged KV cache, the model runner and each live sequence's
// sampling, stop and detokenizer state; Step() runs one iteration of
// continuous batching: Schedule -> ModelRunner::Execute -> BatchSampler ->
// StopChecker -> Scheduler::Update, and returns what each request produced.
//
// Per sequence: the sampler seed is params.seed when set, else a per-engine
// counter (EngineConfig::seed + k for the k-th unseeded request), so a run
// is reproducible and a sequence draws the same tokens whatever shares its
// batch (the sampler is counter-based; preemption replays the same draws).
// The StopChecker decides stop / length and the text to stream; the
// scheduler also enforces max_tokens and the context limit.
// Parallel sampling (SamplingParams::n > 1): the request starts as one
// sequence, so the prompt is prefilled once. At its first sampled step the
// engine draws n tokens from that one logits row (choice i with seed + i),
// keeps the first and hands the other n - 1 to the scheduler as fork_tokens:
// each becomes a child sharing the prompt's blocks copy-on-write. From then
// on each choice is an ordinary sequence with its own seed, StopChecker and
// detokenizer, so choice i draws exactly what an n = 1 request seeded with
// seed + i draws (unseeded requests reserve n consecutive counter seeds).
// Forking at the sample, not before the first step, is what the scheduler
// makes clean: a Fork() of a waiting sequence has no blocks to share, so
// each child would prefill the prompt again. The one cost: a fork token
// carries no finish decision, so a choice whose first token stops it is
// reported finished at once but closed in the scheduler (kAbort, its token
// dropped) at its next scheduled step.
// Thread-safety: not thread-safe; one thread (the engine thread) calls
// everything. The Model and ModelText passed to Create must outlive it
// unless it owns them (the LoadedModel overload).
#ifndef ALIGNSERVE_ENGINE_LLM_ENGINE_H_
#define ALIGNSERVE_ENGINE_LLM_ENGINE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/model_runner.h"
#include "engine/sampler.h"
#include "engine/scheduler.h"
#include "engine/scheduler_config.h"
#include "engine/stop_checker.h"
#include "kernels/backend.h"
#include "models/model.h"
#include "models/model_loader.h"
#include "models/model_text.h"
#include "models/tokenizer/incremental_detokenizer.h"

namespace alignserve {

struct EngineConfig {
  // num_blocks and block_size size the KV cache; max_model_len is capped at
  // the model's own limit.
  SchedulerConfig scheduler;
  uint64_t seed = 0;  // base of the seeds of requests that set none
  // Drop special tokens from streamed text (as vLLM's skip_special_tokens).
  bool skip_special_tokens = true;
};

// What one choice of a request produced in one step. A step yields at most
// one output per choice; outputs of one request keep choice creation order.
struct RequestOutput {
  int64_t request_id = 0;
  // The choice (OpenAI choices[index]): 0 .. SamplingParams::n - 1; 0 for n = 1.
  int index = 0;
  std::vector<int32_t> new_token_ids;  // sampled this step (a stop token included)
  // With SamplingParams::logprobs: one entry per new token (its logprob,
  // rank and the top alternatives); empty otherwise.
  std::vector<PositionLogprobs> logprobs;
  // With SamplingParams::prompt_logprobs, on the request's first output:
  // one entry per prompt token after the first (the first has none).
  std::vector<PositionLogprobs> prompt_logprobs;
  std::string text;  // text delta safe to stream now
  // The whole request is done (every choice finished). Set only on the
  // request's LAST output of the step, so a consumer may close the stream on
  // it. If a request ends in a step where none of its choices sampled (a
  // choice stopped at its first token is closed a step later), that closing
  // output has no tokens and no text.
  bool finished = false;
  // This choice's reason once it has finished (kNone while it runs); set on
  // every output of a finished choice. For n = 1 it is the request's reason.
  FinishReason finish_reason = FinishReason::kNone;
};

struct EngineStats {
  int64_t num_steps = 0;        // non-empty steps run
  int64_t num_preemptions = 0;  // sequences preempted, summed over steps
  int64_t prefix_cache_queried_blocks = 0;
  int64_t prefix_cache_hit_blocks = 0;
  int32_t num_free_blocks = 0;  // allocatable now (free + evictable)
  int32_t num_total_blocks = 0;
  int32_t num_unfinished_requests = 0;
};

class LlmEngine {
 public:
  // Borrows model and text (tokenizer, stop tokens); both must outlive the
  // engine. A null text.tokenizer gives a token-ids-only engine (vLLM's
  // skip_tokenizer_init): outputs carry ids and no text, and requests with
  // stop strings are refused. InvalidArgument for a bad scheduler config; errors allocating the
  // KV cache pass through.
  static absl::StatusOr<std::unique_ptr<LlmEngine>> Create(Model& model, const ModelText& text,
                                                           const EngineConfig& config);
  // Owns the loaded model (and the backend it runs on, which may be null if
  // the caller keeps it alive otherwise).
  static absl::StatusOr<std::unique_ptr<LlmEngine>> Create(std::unique_ptr<Backend> backend,
                                                           std::unique_ptr<LoadedModel> loaded,
                                                           const EngineConfig& config);
  ~LlmEngine();

  LlmEngine(const LlmEngine&) = delete;
  LlmEngine& operator=(const LlmEngine&) = delete;

  // Queues a request (params.n choices). InvalidArgument for sampling params that fail
  // Validate or token ids outside the vocabulary; the scheduler's errors
  // (empty prompt, too long, duplicate id, ...) pass through.
  absl::Status AddRequest(int64_t request_id, std::vector<int32_t> prompt,
                          const SamplingParams& params);
  absl::Status AddRequest(int64_t request_id, std::vector<int32_t> prompt, RequestParams params);

  // One engine iteration. Returns one entry per choice that sampled a token
  // this step, n entries at a request's first sample (requests only part-way
  // through a chunked prefill produce nothing; see RequestOutput for the
  // token-less closing entry). Empty when nothing is runnable. If the forward pass fails, its
  // error is returned and every request of that step is aborted (blocks
  // freed, no output) so that the engine stays usable for the others.
  absl::StatusOr<std::vector<RequestOutput>> Step();

  // Finishes the request at once and frees its blocks. NotFound for an
  // unknown or finished request.
  absl::Status Abort(int64_t request_id);

  int vocab_size() const { return model_.config().vocab_size; }
  bool HasUnfinished() const { return scheduler_->num_unfinished_requests() > 0; }
  EngineStats stats() const;
  const Scheduler& scheduler() const { return *scheduler_; }
  const EngineConfig& config() const { return config_; }
  const ModelText& text() const { return text_; }

 private:
  // Sampler, stop and detokenizer state of one live sequence.
  struct SeqState {
    int64_t request_id = 0;
    int index = 0;  // choice index
    uint64_t seed = 0;
    // n > 1 parent before its first sample: that sample creates the forks.
    bool fork_pending = false;
    // The StopChecker finished this choice at a fork token, which the
    // scheduler cannot be told at once: the next sample closes it (kAbort).
    FinishReason deferred_finish = FinishReason::kNone;
    std::unique_ptr<StopChecker> stop;
    std::unique_ptr<IncrementalDetokenizer> detok;
    // Prompt logprobs collected over the prefill chunks, until the first
    // output carries them.
    std::vector<PositionLogprobs> prompt_logprobs;
    bool prompt_logprobs_sent = false;
  };

  LlmEngine(Model& model, const ModelText& text, const EngineConfig& config,
            std::unique_ptr<Scheduler> scheduler, std::unique_ptr<KvCache> cache);

  // Children of one parent's fork step, bound to their sequence ids after
  // Scheduler::Update creates them (group->sequences()[1..n-1]).
  struct ForkRecord {
    const SequenceGroup* group = nullptr;
    std::vector<SeqState> children;   // choice 1..n-1
    std::vector<size_t> output_rows;  // their entries in the step's outputs
  };
  // Bookkeeping of one step between sampling and Update.
  struct StepRecord {
    std::vector<const Sequence*> output_seqs;  // per output; null for fork children
    std::vector<ForkRecord> forks;
    std::vector<const Sequence*> closed;  // deferred finishes sent this step
  };

  SeqState& StateFor(const Sequence& seq);
  SeqState NewState(const Sequence& seq, int index, uint64_t seed) const;
  // Samples every sampled sequence of the plan from out's logits rows and
  // fills the StepOutput and per-choice outputs (in plan order).
  void SampleAndCheck(const StepPlan& plan, const ForwardOutput& out, StepOutput& step_out,
                      std::vector<RequestOutput>& outputs, StepRecord& record);
  // Sets ScheduledSequence::all_logits on the prefill chunks of requests
  // that asked for prompt logprobs.
  void MarkPromptLogprobs(StepPlan& plan);
  // Appends the prompt logprobs of an all_logits chunk (rows from first_row).
  void CollectPromptLogprobs(const ScheduledSequence& s, const ForwardOutput& out, int first_row);
  // Per logits row of the plan: 1 if the host needs the whole logits row,
  // 0 if the device's argmax is the token (BatchSampler::ArgmaxSuffices).
  std::vector<uint8_t> HostLogitsRows(const StepPlan& plan);
  // Feeds one sampled token to a choice's detokenizer and StopChecker.
  RequestOutput Emit(SeqState& state, int32_t token, FinishReason& decision);
  // After Update: registers fork children and fills each output's finish
  // reason and the request-level finished flag.
  void FinishOutputs(StepRecord& record,
                     const std::vector<std::unique_ptr<SequenceGroup>>& finished,
                     std::vector<RequestOutput>& outputs);
  void ForgetGroup(const SequenceGroup& group);

  std::unique_ptr<Backend> owned_backend_;  // destroyed last
  std::unique_ptr<LoadedModel> owned_model_;
  Model& model_;
  const ModelText& text_;
  EngineConfig config_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<KvCache> cache_;
  ModelRunner runner_;
  BatchSampler sampler_;
  ForwardOutput forward_out_;                             // reused across steps
  absl::flat_hash_map<int64_t, SeqState> seqs_;           // live sequences by seq id
  absl::flat_hash_map<int64_t, uint64_t> request_seeds_;  // unfinished requests
  uint64_t next_seed_;
  int64_t num_steps_ = 0;
  int64_t num_preemptions_ = 0;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_ENGINE_LLM_ENGINE_H_
