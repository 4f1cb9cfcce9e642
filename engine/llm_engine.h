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
// Decoding policies (RequestParams::policy, engine/decoding_policy.h): a
// request with a policy runs its hooks once per step (OnStep before
// Schedule; OnLogits between the forward pass and sampling; OnTokens,
// OnFinished and Finalize after Update). Its expand reuses the n > 1 fork
// at the first sample (spec.num_sequences draws), its stops and prunes free
// blocks in the same step through Scheduler::FinishSequence, its forks go
// through Scheduler::Fork. It streams nothing per step: its chosen
// sequences come back whole when it finishes (see RequestOutput). Requests
// without a policy take none of these paths: a null check per sampled
// sequence, and nothing at all while no policy request is live. The policy
// glue lives in llm_engine_policy.cc. Its Score hook runs internal requests
// (negative ids, each with an internal one-sample policy) through this same
// path; they stream nothing and die with their owner. Scoring requests
// addressed to another model go to a scorer: an LlmEngine of that model,
// attached with AttachScorer and stepped by this one on its thread, whose
// internal requests carry the owner's score ids (SubmitScore).
// A policy group whose sequences all finished while scores it asked for are
// outstanding waits in policy_finished_ (HasUnfinished stays true) and is
// finalized once they are delivered.
// Thread-safety: not thread-safe; one thread (the engine thread) calls
// everything. The Model and ModelText passed to Create must outlive it
// unless it owns them (the LoadedModel overload).
#ifndef ALIGNSERVE_ENGINE_LLM_ENGINE_H_
#define ALIGNSERVE_ENGINE_LLM_ENGINE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/node_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/decoding_policy.h"
#include "engine/device_sampling_rows.h"
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
  // Draw non-greedy tokens on the device where the backend can
  // (Backend::SupportsDeviceSampling): only ids and logprobs reach the host.
  // false: every such row is copied whole and sampled on the host.
  bool device_sampling = true;
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
  // Policy requests only: nothing is output while they run. In the step
  // they finish, one output per chosen sequence (index = its position in
  // PolicyResult::choices) holds the whole completion: all its token ids in
  // new_token_ids, its text, its logprobs if asked; the first also the
  // prompt logprobs. The last has finished = true and this report (the
  // policy's figures); with no choice it is a token-less output (kAbort).
  std::vector<std::pair<std::string, double>> policy_report;
};

struct EngineStats {
  int64_t num_steps = 0;        // non-empty steps run
  int64_t num_preemptions = 0;  // sequences preempted, summed over steps
  // Tokens run through forward passes (prefill chunks and decodes), summed
  // over steps: what the engine computed, cache hits and shared KV excluded.
  int64_t num_computed_tokens = 0;
  int64_t prefix_cache_queried_blocks = 0;
  int64_t prefix_cache_hit_blocks = 0;
  int32_t num_free_blocks = 0;  // allocatable now (free + evictable)
  int32_t num_total_blocks = 0;
  int32_t num_unfinished_requests = 0;
  // Sequences a policy pruned (ctx.Abort / TokenDecision::kAbort), and the
  // KV blocks that became allocatable when they did (blocks still shared
  // with a sibling are not counted).
  int64_t num_pruned_sequences = 0;
  int64_t pruned_blocks_freed = 0;
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
  // Validate or token ids outside the vocabulary, and for a policy whose
  // Spec fails Validate or with sampling.n != 1; the scheduler's errors
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

  // Finishes the request at once and frees its blocks (a policy request's
  // scoring requests' too, also while it awaits scores). NotFound for an
  // unknown or finished request.
  absl::Status Abort(int64_t request_id);

  // Scorers (see decoding_policy.h "Scorers"): attaches an engine of
  // another model that runs the scoring requests policies address to it
  // (ScoreRequest::scorer = the returned index, from 1). This engine owns
  // and steps it; it must serve no requests of its own.
  int AttachScorer(std::unique_ptr<LlmEngine> scorer);
  int num_scorers() const { return static_cast<int>(scorers_.size()); }
  // The scorer of index k >= 1, or null.
  const LlmEngine* scorer(int k) const {
    return k >= 1 && k <= num_scorers() ? scorers_[k - 1].get() : nullptr;
  }

  // The scorer side, driven by the engine it is attached to. SubmitScore
  // runs one scoring request as internal request `ticket` (a negative id,
  // the owner's score id) with the owner's priority and cache salt; the
  // request's checks fail as InvalidArgument (see PolicyContext::Score).
  // TakeScoreResults: those that finished (or failed) since the last call,
  // score_id = ticket. AbortScore drops one (NotFound if unknown); its
  // failure result may still be taken.
  absl::Status SubmitScore(int64_t ticket, ScoreRequest request, int priority,
                           const std::string& cache_salt);
  std::vector<ScoreResult> TakeScoreResults() { return std::move(remote_results_); }
  absl::Status AbortScore(int64_t ticket);
  // PolicyContext::Score's checks of a request against this engine's model.
  absl::Status ValidateScore(const ScoreRequest& request) const;

  int vocab_size() const { return model_.config().vocab_size; }
  const ModelConfig& model_config() const { return model_.config(); }
  // Also true while a finished policy request awaits its Finalize (after a
  // failed step, or while scores it asked for are outstanding).
  bool HasUnfinished() const {
    return scheduler_->num_unfinished_requests() > 0 || !policy_finished_.empty();
  }
  EngineStats stats() const;
  const Scheduler& scheduler() const { return *scheduler_; }
  const EngineConfig& config() const { return config_; }
  const ModelText& text() const { return text_; }

 private:
  struct PolicyEntry;
  // What a policy request's sequence keeps besides the plain state.
  struct PolicySeqState {
    std::string text;                        // the completion so far, as it would have streamed
    std::string raw_text;                    // all detokenizer deltas: delimiters, ctx.text
    std::string delta;                       // the detokenizer delta of this step's token
    std::vector<PositionLogprobs> logprobs;  // per token, when the request asked
    PositionLogprobs hook_logprobs;          // this step's, for TokenView
    int32_t force_token = -1;                // from OnLogits, for this step
    int row = -1;                            // logits row of this step's token
    int64_t parent = -1;                     // expand parent, on its first token
    // At the first sample: the expand children's tokens forced by OnLogits
    // (LogitsView::expand_tokens; -1 draws).
    std::vector<int32_t> expand_tokens;
  };
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
    PolicyEntry* entry = nullptr;            // the request's policy; null: plain
    std::unique_ptr<PolicySeqState> policy;  // set iff entry
    // Device sampling with penalties: the sorted history, kept across steps.
    PenaltyHistory penalty_history;
  };
  // A live policy request: its policy, spec and per-step hook scratch
  // (cleared each step, kept allocated).
  struct PolicyEntry {
    std::shared_ptr<DecodingPolicy> policy;
    PolicySpec spec;
    const SequenceGroup* group = nullptr;
    uint64_t seed = 0;  // the sequence created i-th samples with seed + i
    std::vector<LogitsView> logits_views;
    std::vector<TokenView> token_views;
    std::vector<SequenceEnd> ended;  // finished this step, for OnFinished
    // Score hook: requests queued by ctx.Score (added at the next step),
    // running (internal request ids = score ids), arrived (for OnScores).
    std::vector<std::pair<int64_t, ScoreRequest>> score_queue;
    absl::flat_hash_set<int64_t> scores_running;
    std::vector<ScoreResult> scores_ready;
    // An internal scoring request: the id of the request it scores for
    // (kRemoteOwner: the engine this one is a scorer of).
    std::optional<int64_t> score_owner;
    bool NeedsRow() const { return spec.wants_logits || spec.top_logprobs >= 0; }
    bool AwaitsScores() const {
      return !score_queue.empty() || !scores_running.empty() || !scores_ready.empty();
    }
  };
  class EnginePolicyContext;

  LlmEngine(Model& model, const ModelText& text, const EngineConfig& config,
            std::unique_ptr<Scheduler> scheduler, std::unique_ptr<KvCache> cache);

  // Children of one parent's fork step, bound to their sequence ids after
  // Scheduler::Update creates them (group->sequences()[1..n-1]).
  struct ForkRecord {
    const SequenceGroup* group = nullptr;
    std::vector<SeqState> children;   // choice 1..n-1
    std::vector<size_t> output_rows;  // their entries in the step's outputs (plain)
    bool policy = false;              // a policy's expand: nothing is output
  };
  // Bookkeeping of one step between sampling and Update.
  struct StepRecord {
    std::vector<const Sequence*> output_seqs;  // per output; null for fork children
    std::vector<ForkRecord> forks;
    std::vector<const Sequence*> closed;  // deferred finishes sent this step
    // Policy sequences that got a token (expand children added after Update).
    std::vector<const Sequence*> policy_sampled;
    // Expand children the stop checker finished at their first token.
    std::vector<std::pair<int64_t, FinishReason>> policy_closes;
  };

  SeqState& StateFor(const Sequence& seq);
  SeqState NewState(const Sequence& seq, int index, uint64_t seed);
  // Runs the plan (forward, hooks, sampling, Update) and fills outputs.
  absl::Status RunPlan(const StepPlan& plan, std::vector<RequestOutput>& outputs);
  // Draws at a sequence's fork step: n, or the policy's num_sequences.
  static int ExpandCount(const SeqState& state, const Sequence& seq);
  // Samples every sampled sequence of the plan from out's logits rows and
  // fills the StepOutput and per-choice outputs (in plan order).
  void SampleAndCheck(const StepPlan& plan, const ForwardOutput& out, StepOutput& step_out,
                      std::vector<RequestOutput>& outputs, StepRecord& record);
  // The n - 1 (or num_sequences - 1) children of a fork step, drawn from
  // results[r..] (r advances): their tokens go to so.fork_tokens.
  ForkRecord EmitForks(const Sequence& seq, const SeqState& parent, int row,
                       const std::vector<SampleResult>& results, size_t& r, SequenceOutput& so,
                       std::vector<RequestOutput>& outputs, StepRecord& record);
  static bool Forced(const SeqState& s) {
    return s.policy != nullptr && s.policy->force_token >= 0;
  }
  // Expand child i (>= 1) of a fork step has a forced token.
  static bool ExpandForced(const SeqState& s, int i) {
    return i >= 1 && s.policy != nullptr &&
           static_cast<size_t>(i - 1) < s.policy->expand_tokens.size() &&
           s.policy->expand_tokens[i - 1] >= 0;
  }
  // Sets ScheduledSequence::all_logits on the prefill chunks of requests
  // that asked for prompt logprobs.
  void MarkPromptLogprobs(StepPlan& plan);
  // Appends the prompt logprobs of an all_logits chunk (rows from first_row).
  void CollectPromptLogprobs(const ScheduledSequence& s, const ForwardOutput& out, int first_row);
  // Where each sampled logits row of the plan is drawn: scratch_.host_rows
  // (1: the host needs the whole row; 0: the device's argmax is the token,
  // BatchSampler::ArgmaxSuffices, or the device draws it), and for rows the
  // device draws (config_.device_sampling on a backend that samples), their
  // draws in scratch_.device_rows / device_adjustments, the first of each
  // row in scratch_.device_first (-1: none).
  void PlanLogitsRows(const StepPlan& plan);
  // Feeds one sampled token to a choice's detokenizer and StopChecker;
  // raw_delta (optional) receives the detokenizer's delta.
  StopDecision Advance(SeqState& state, int32_t token, std::string* raw_delta);
  RequestOutput Emit(SeqState& state, int32_t token, FinishReason& decision);
  // The token of one sampled policy sequence: stop checker, text, logprobs
  // for the request (drawn, or computed from row) and for the TokenView.
  void EmitPolicyToken(SeqState& state, int32_t token, int row, const SampleResult* drawn,
                       FinishReason& decision);

  // Policy glue (llm_engine_policy.cc).
  void AddPolicy(int64_t request_id, int64_t seq_id, std::shared_ptr<DecodingPolicy> policy,
                 const PolicySpec& spec, uint64_t seed);
  bool PolicyWantsHidden(const StepPlan& plan);
  void RunStepHooks();
  void RunLogitsHooks(const StepPlan& plan);
  void BindPolicyForks(ForkRecord& fork, StepRecord& record);
  void RunTokenHooks(StepRecord& record);
  TokenView MakeTokenView(const Sequence& seq, SeqState& state);
  void ApplyDecision(PolicyEntry& entry, const TokenView& view);
  // OnFinished for this step's ends, then Finalize of finished groups.
  void EndPolicyStep(std::vector<RequestOutput>& outputs);
  void FinalizeGroup(const SequenceGroup& group, std::vector<RequestOutput>& outputs);
  absl::Status FinishPolicySequence(PolicyEntry& entry, int64_t seq_id, FinishReason reason);
  absl::StatusOr<std::vector<int64_t>> ForkPolicySequence(PolicyEntry& entry, int64_t seq_id,
                                                          int count);
  SeqState CloneState(const SeqState& parent) const;
  // Score hook (llm_engine_policy.cc): OnScores with what arrived; the
  // queued scoring requests become internal engine requests; a finished
  // scoring request hands its result to its owner.
  void DeliverScores();
  void AddQueuedScores();
  void AddScoreRequest(int64_t owner, int64_t score_id, ScoreRequest request);
  absl::Status AddScoringRequest(int64_t score_id, ScoreRequest request, int priority,
                                 const std::string& cache_salt, int64_t owner);
  void HarvestScore(PolicyEntry& scorer);
  // Steps every scorer with work and hands its results to their owners.
  void StepScorers();
  // Drops a request's policy: an owner's scoring requests are aborted, a
  // scoring request that ends without a result reports a failure.
  void ForgetPolicy(int64_t request_id);
  // Abort of a policy request whose sequences all finished while it awaits
  // scores (it is no longer in the scheduler). False if there is none.
  bool AbortAwaitingPolicy(int64_t request_id);
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
  bool device_sampling_;       // config_.device_sampling and the backend samples
  ForwardOutput forward_out_;  // reused across steps
  // Per-step scratch of RunPlan and SampleAndCheck, cleared and refilled
  // each step so that its buffers are kept.
  struct StepScratch {
    std::vector<uint8_t> host_rows;                   // ForwardOptions::host_logits_rows
    std::vector<DeviceSamplingRow> device_rows;       // ForwardOptions::device_rows
    std::vector<LogitAdjustment> device_adjustments;  // ForwardOptions::device_adjustments
    std::vector<int> device_first;           // per logits row: its first device draw, or -1
    std::vector<int> draw_source;            // per draw: device draw index, or -1 - host row index
    std::vector<const Sequence*> sampled;    // per sampled plan entry
    std::vector<int> sample_rows;            // its logits row
    std::vector<SamplingRow> rows;           // rows drawn on the host
    std::vector<SampleResult> host_results;  // their draws
    std::vector<SampleResult> results;       // every draw of the step, host and device
  };
  StepScratch scratch_;
  absl::flat_hash_map<int64_t, SeqState> seqs_;           // live sequences by seq id
  absl::flat_hash_map<int64_t, uint64_t> request_seeds_;  // unfinished requests
  // Live policy requests by request id; node map: SeqState::entry points in.
  absl::node_hash_map<int64_t, PolicyEntry> policies_;
  // Policy requests whose last sequence finished this step, to finalize.
  std::vector<std::unique_ptr<SequenceGroup>> policy_finished_;
  std::vector<PolicyEntry*> active_entries_;  // scratch: entries with views this step
  int64_t next_score_id_ = -1;                // internal scoring requests take ids -1, -2, ...
  static constexpr int64_t kRemoteOwner = INT64_MIN;
  std::vector<std::unique_ptr<LlmEngine>> scorers_;
  // Score ids running on a scorer: their owner request and scorer index.
  absl::flat_hash_map<int64_t, std::pair<int64_t, int>> remote_scores_;
  std::vector<ScoreResult> remote_results_;  // as a scorer: results not yet taken
  int64_t num_pruned_sequences_ = 0;
  int64_t pruned_blocks_freed_ = 0;
  uint64_t next_seed_;
  int64_t num_steps_ = 0;
  int64_t num_preemptions_ = 0;
  int64_t num_computed_tokens_ = 0;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_ENGINE_LLM_ENGINE_H_
