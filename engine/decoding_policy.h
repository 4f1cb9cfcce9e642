// DecodingPolicy: the per-request hooks through which the alignment layer
// (best-of-N, soft best-of-N, ARGS, blockwise controlled decoding, DeepConf,
// self-consistency, PRM beam search, loop guard) steers generation without
// reworking the engine (DESIGN.md, "The policy hooks contract"). The
// interface lives in engine/ because dependencies point server ->
// alignment -> engine; alignment/ implements it.
//
// A request gets a policy through RequestParams::policy (engine/sequence.h).
// One instance serves exactly one request: the object IS the request's group
// state (thresholds, votes, budgets, per-sequence windows keyed by seq id).
// A request without a policy is plain sampling and never reaches this code.
//
// Hooks, in the order LlmEngine::Step calls them. Each is called at most once
// per step per policy, batched over all of the request's sequences that
// reached that point in the step; a hook with nothing to report is skipped.
//   0. OnScores(scores, ctx): first thing in a step, the results of the
//      policy's ctx.Score calls that arrived since the last call (see
//      "Score"); also while every sequence of the group has finished.
//   1. OnStep(ctx): every step while the request is unfinished, before
//      scheduling, also in steps where none of its sequences runs (so a
//      policy waiting for scores can resume its paused sequences).
//   2. OnLogits(views, ctx) [spec.wants_logits]: after the forward pass, for
//      its sequences that sample this step: read or modify the logits row
//      (mask with -inf, add a guide score) or force the next token.
//   3. The engine samples, runs the stop checker, appends the tokens and
//      applies max_tokens / context length (Scheduler::Update). At a
//      request's first sample it creates the spec.num_sequences - 1 expand
//      children (see "Expand").
//   4. OnTokens(views, ctx): for its sequences that got a token this step:
//      the token, its logprob and top-k (spec.top_logprobs), the last hidden
//      state (spec.wants_hidden), whether it is a boundary; the policy sets
//      each view's decision (continue, stop, abort = prune, pause) and may
//      fork, prune or resume any of its sequences through ctx.
//   5. OnFinished(ended, ctx): its sequences that finished this step,
//      whatever the cause (stop checker, length, its own stop or prune).
//      Ends it causes from inside OnFinished are reported at the next step
//      (or not at all, if they finish the group).
//   6. Finalize(seqs): once, in the step where its last sequence finished:
//      which sequences the request returns and the policy's report.
//
// Expand: spec.num_sequences sequences start from one prompt, prefilled
// once: at the first sample the engine draws num_sequences tokens from the
// one logits row (sequence i with seed + i) and forks children that share
// the prompt's blocks copy-on-write (the same machinery as n > 1). Later
// forks of a running sequence: ctx.Fork(seq_id, k) in OnStep or OnTokens
// returns the k children's ids at once; each child holds the parent's tokens,
// shares its blocks and draws with its own seed from the next step on.
// Seeds: the sequence created i-th in the group (expand children and forks
// alike, from 0) samples with the request's seed + i; an unseeded policy
// request reserves kMaxSequences engine seeds, so no two sequences of any
// requests share one. Expand child i therefore draws exactly what a plain
// n = 1 request seeded seed + i draws.
// Busy waiting: while all of a request's sequences are paused, the engine
// still steps (an empty step runs OnStep only), so a policy waiting on
// asynchronous scores is polled every engine iteration.
//
// Score (DESIGN.md hook 5): ctx.Score(request) asks a model for its
// next-token row after request.prompt_token_ids (a judge prompt: a rubric
// filled with a prompt and a response; or a reward model's chat), at the
// ids in request.token_ids (e.g. "Yes" and "No"; label 0 of a score head),
// as log-probabilities or raw logits. It returns a score id at once and only
// queues: the engine adds an internal scoring request before the next
// Schedule (after that step's OnScores and OnStep, never re-entrantly
// inside a hook; a call from OnStep runs in the same step). It runs as an
// ordinary engine request (a prefill and one sample, max_tokens 1, greedy,
// the owner's priority and cache_salt) batched with everyone's decodes; its
// prompt blocks go through the prefix cache, so a rubric opening computed
// in an earlier step is not computed again, and of scoring requests added
// in one step that share leading blocks only the first is admitted that
// step, the others next (Scheduler "same-step prefix sharing"). Its result
// comes back through OnScores at the start of the step after the one that
// ran it. Scoring requests produce no RequestOutput, take no engine seed,
// and are aborted (blocks freed at once) with their owner. They count in
// Scheduler::num_unfinished_requests.
// Scorers: request.scorer k >= 1 sends it to the k-th engine attached with
// LlmEngine::AttachScorer (another model: a score-head reward model or a
// second judge, with its own KV pool). This engine steps its scorers after
// its own forward pass in every step, so the contract above holds the same
// (results at the start of the next step).
// A policy waiting on a score usually pauses the sequences concerned (and
// resumes them in OnScores). A group whose sequences have all finished is
// finalized only once none of its scores is queued, running or undelivered:
// Finalize runs at the end of the step whose OnScores delivered the last one
// (a Score call made inside that OnScores defers it again), so a policy may
// score its sequences as they finish and choose in Finalize.
//
// Stop, abort, pause: a stop finishes the sequence keeping its tokens
// (reason kStop); an abort prunes it (kAbort). Either frees its KV blocks in
// the same step. A paused sequence keeps its blocks, is not scheduled, is
// never preempted and never blocks other requests, until ctx.Resume.
// Pressure: ctx.free_block_fraction() lets a policy prune its weakest
// sequences before the scheduler has to preempt.
//
// Output: a policy request streams nothing while it runs. When it finishes,
// LlmEngine::Step returns one RequestOutput per sequence Finalize chose
// (index = position in PolicyResult::choices) with the whole completion:
// every token id, the text, per-token logprobs if the request asked; the
// last of them has finished = true and carries PolicyResult::report. If the
// policy chooses nothing, one token-less finished output carries the report.
// A client Abort of the request drops the policy without Finalize (also
// while its finished group awaits scores), with its scoring requests.
//
// Validity: views, the spans in them and ctx.prompt_token_ids() are valid
// only during the hook call.
// Thread-safety: every hook runs on the engine thread; a policy needs no
// locking unless it shares state with other threads itself (e.g. a reward
// model scoring asynchronously, which it then polls from OnStep).
#ifndef ALIGNSERVE_ENGINE_DECODING_POLICY_H_
#define ALIGNSERVE_ENGINE_DECODING_POLICY_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/logprobs.h"
#include "engine/sequence.h"

namespace alignserve {

// What a policy asks of the engine, read once when its request is added.
struct PolicySpec {
  // Caps enforced by Validate (ROBUSTNESS.md 13).
  static constexpr int kMaxSequences = 1024;  // per group, expand and forks together
  static constexpr int kMaxDelimiterBytes = 64;

  // Expand: sequences started at admission, sharing the prompt. [1, 1024].
  int num_sequences = 1;
  // Call OnLogits; the logits rows of its sequences come to the host.
  bool wants_logits = false;
  // -1: no logprobs in TokenView; k in [0, 20]: the token's logprob and the
  // top k alternatives (its rows come to the host).
  int top_logprobs = -1;
  // TokenView::hidden holds the final hidden state of the sampled position.
  bool wants_hidden = false;
  // Boundaries: every `boundary_every` output tokens (0: off), and/or when
  // the sequence's decoded text ends with `boundary_delimiter` ("" : off).
  int32_t boundary_every = 0;
  std::string boundary_delimiter;

  absl::Status Validate() const;
};

// One sequence about to be sampled (OnLogits).
struct LogitsView {
  int64_t seq_id = 0;
  std::span<const int32_t> prompt_token_ids;
  std::span<const int32_t> output_token_ids;  // generated so far
  // [vocab_size] the model's raw logits for the next token, writable. The
  // sampler (SamplingParams: bias, penalties, temperature, truncation) and
  // every logprob reported for this token read the row as left here.
  std::span<float> logits;
  // Set to a token id in [0, vocab_size) to append it without sampling
  // (the stop checker still sees it). -1: sample.
  int32_t force_token = -1;
  // At a request's first sample only (else empty): [spec.num_sequences - 1]
  // the tokens of the expand children, child i at [i - 1]; each -1 (the
  // default) draws from the row with its own seed, an id forces it (ARGS
  // scores its first position's top k this way).
  std::span<int32_t> expand_tokens;
};

enum class TokenDecision {
  kContinue,
  kStop,   // finish now, keeping its tokens (FinishReason::kStop)
  kAbort,  // prune: finish now as kAbort; its blocks are freed this step
  kPause,  // keep its blocks, skip it in scheduling until ctx.Resume
};

// One sequence that got a token this step (OnTokens).
struct TokenView {
  int64_t seq_id = 0;
  // The sequence it was forked from, on the first token of an expand child
  // (created this step at the request's first sample); -1 otherwise.
  int64_t parent_seq_id = -1;
  int32_t token = 0;
  std::span<const int32_t> output_token_ids;  // all generated, `token` last
  // This token's decoded text (before stop strings are cut; may be empty
  // while a UTF-8 character is incomplete).
  std::string_view text_delta;
  // spec.top_logprobs >= 0: log-probability of `token` and the top k
  // alternatives (descending), from the row OnLogits left.
  float logprob = 0.0f;
  std::span<const TokenLogprob> top_logprobs;
  // spec.wants_hidden: [hidden_size] final hidden state that predicted `token`.
  std::span<const float> hidden;
  // The output length is a multiple of boundary_every, or the text now ends
  // with boundary_delimiter (and this token added text).
  bool boundary = false;
  // kNone unless the stop checker or the scheduler (max_tokens, context
  // length) finished the sequence with this token; its decision is ignored.
  FinishReason finish_reason = FinishReason::kNone;
  TokenDecision decision = TokenDecision::kContinue;  // set by the policy
};

// A sequence that finished this step (OnFinished).
struct SequenceEnd {
  int64_t seq_id = 0;
  FinishReason reason = FinishReason::kNone;
};

// A finished sequence offered to Finalize.
struct SequenceResult {
  int64_t seq_id = 0;
  std::span<const int32_t> output_token_ids;
  std::string_view text;  // the completion, stop strings cut as for a plain request
  FinishReason finish_reason = FinishReason::kNone;
};

// The index of the first of `seqs` that was not pruned (kAbort), or
// nullopt: what a policy returns when its own choice is missing.
std::optional<size_t> FirstUnpruned(std::span<const SequenceResult> seqs);

// Score hook: one request for the next-token row after a prompt (see "Score").
struct ScoreRequest {
  static constexpr int kMaxTokenIds = 64;
  // What ScoreResult::values holds at each of token_ids.
  enum class Output {
    kLogprobs,  // log-softmax of the row (a judge: logprob("Yes"), logprob("No"))
    kLogits,    // the raw row (a score head: its label logits are the rewards)
  };
  // The whole scoring prompt (e.g. a filled judge rubric), token ids in the
  // scoring model's vocabulary; with one token to sample it must fit that
  // model's max_model_len.
  std::vector<int32_t> prompt_token_ids;
  // [1, kMaxTokenIds] indices into the row (token ids for a judge; label
  // indices for a score head) whose values to return.
  std::vector<int32_t> token_ids;
  Output output = Output::kLogprobs;
  // The engine that scores: 0 = the one the policy runs on (the served
  // model); k >= 1 = the k-th scorer attached to it (LlmEngine::
  // AttachScorer: a reward model with its own weights and KV pool).
  int scorer = 0;
  // A sequence of the owner request (live, or finished in this step) whose
  // computed K/V the prompt extends: when prompt_token_ids start with that
  // sequence's computed tokens, the scoring request shares those blocks
  // (copy-on-write) and computes only the rest, partial last block
  // included, where the prefix cache would give back only full blocks.
  // Ignored otherwise, and on scorers k >= 1. -1: none.
  int64_t extends_seq_id = -1;
};

struct ScoreResult {
  int64_t score_id = 0;  // as ctx.Score returned it
  // OK, or why no score came (the scoring request could not be admitted, or
  // was aborted, e.g. by a failed forward pass).
  absl::Status status;
  // [token_ids.size()] when OK, in request order: per ScoreRequest::output,
  // the log-softmax of the raw logits row that follows the prompt
  // (logprobs.h: before bias, penalties, temperature) or that raw row.
  std::vector<float> values;
  int64_t step = -1;  // the scoring engine's step whose forward pass computed it
};

struct PolicyResult {
  // Seq ids the request returns, in choice order (ids not in the group are
  // dropped). Empty: the request returns no choice, only the report.
  std::vector<int64_t> choices;
  // The policy's figures: rewards, traces pruned, tokens generated / saved.
  std::vector<std::pair<std::string, double>> report;
};

// The engine as one policy's hooks see it: scoped to the policy's request
// (ids of other requests are NotFound). Commands take effect at once.
// Implemented by LlmEngine; tests of policies may supply a fake.
class PolicyContext {
 public:
  virtual ~PolicyContext() = default;

  virtual int64_t request_id() const = 0;
  // Engine steps run so far (LlmEngine::stats().num_steps).
  virtual int64_t step() const = 0;
  // Pressure: fraction of KV blocks allocatable now, in [0, 1].
  virtual double free_block_fraction() const = 0;
  // The request's unfinished sequence, or null.
  virtual const Sequence* FindSequence(int64_t seq_id) const = 0;
  // Decoded text generated so far by a sequence of the request (finished
  // ones too); empty for unknown ids.
  virtual std::string_view text(int64_t seq_id) const = 0;
  // The completion as the request would return it (stop strings cut, the
  // held-back tail released once the sequence finished); empty for unknown
  // ids. Default: text(seq_id).
  virtual std::string_view completion(int64_t seq_id) const { return text(seq_id); }
  // The request's prompt token ids (empty in fakes that do not set them).
  virtual std::span<const int32_t> prompt_token_ids() const { return {}; }
  // Token ids generated so far by a sequence of the request (finished ones
  // too; an expand child's include its forced first token); empty for
  // unknown ids and in fakes that do not set them.
  virtual std::span<const int32_t> output_token_ids(int64_t seq_id) const { return {}; }
  // The request's resolved sampling seed (the sequence created i-th samples
  // with seed() + i); the base of a policy's own reproducible draws.
  virtual uint64_t seed() const { return 0; }
  // Queues a scoring request (see "Score"); allowed in every hook, also
  // OnLogits, and while the group has finished. Returns the id OnScores
  // reports. InvalidArgument: no such scorer, an empty prompt, a
  // prompt id outside the scorer's vocabulary or a token id outside its
  // logits row, token_ids empty or over kMaxTokenIds, a prompt too long for
  // the scorer's context. Unimplemented in contexts without an engine.
  virtual absl::StatusOr<int64_t> Score(ScoreRequest request) {
    return absl::UnimplementedError("this PolicyContext cannot score");
  }

  // The commands below are refused (FailedPrecondition) inside OnLogits,
  // where the step's plan is in flight. NotFound: not an unfinished
  // sequence of this request.
  // k children of a sequence that has at least one output token, sharing
  // its blocks; returns their ids. ResourceExhausted past kMaxSequences.
  virtual absl::StatusOr<std::vector<int64_t>> Fork(int64_t seq_id, int count) = 0;
  virtual absl::Status Stop(int64_t seq_id) = 0;   // as TokenDecision::kStop
  virtual absl::Status Abort(int64_t seq_id) = 0;  // prune, as TokenDecision::kAbort
  virtual absl::Status Pause(int64_t seq_id) = 0;
  virtual absl::Status Resume(int64_t seq_id) = 0;  // OK if it was not paused
};

// Every hook has a default that does nothing, so a policy overrides only
// what it uses; the default Finalize returns every sequence not pruned.
class DecodingPolicy {
 public:
  virtual ~DecodingPolicy() = default;

  // Read once at LlmEngine::AddRequest (InvalidArgument if it fails Validate).
  virtual PolicySpec Spec() const { return PolicySpec(); }

  virtual void OnScores(std::span<const ScoreResult> scores, PolicyContext& ctx) {}
  virtual void OnStep(PolicyContext& ctx) {}
  virtual void OnLogits(std::span<LogitsView> seqs, PolicyContext& ctx) {}
  virtual void OnTokens(std::span<TokenView> seqs, PolicyContext& ctx) {}
  virtual void OnFinished(std::span<const SequenceEnd> ended, PolicyContext& ctx) {}
  // seqs: every sequence of the group, in creation order.
  virtual PolicyResult Finalize(std::span<const SequenceResult> seqs);
};

std::string_view ToString(TokenDecision decision);

}  // namespace alignserve

#endif  // ALIGNSERVE_ENGINE_DECODING_POLICY_H_
