// RewardModel: how a decoding policy scores a (prompt, response) pair. A
// reward model turns the pair into one engine scoring request (the Score
// hook, engine/decoding_policy.h), submitted through the policy's
// PolicyContext, and later turns the ScoreResult that OnScores delivers into
// a reward. Scoring is therefore asynchronous and batched by the engine with
// everything else that runs in the step; the policy keeps the map from
// score id to whatever it scored.
//
// Kinds: `judge` (alignment/judge_reward_model.h): a causal LM reads a
// rubric filled with the pair; reward = logprob("Yes") - logprob("No") of
// its verdict token. With no reward-model flags the served model itself is
// the judge (scorer 0, the engine the policy runs on). `score_head`
// (alignment/score_head_reward_model.h): a sequence classifier (HF
// LlamaForSequenceClassification) reads the pair as a chat; reward = its
// label logit at the last token. `self_judge` (alignment/
// self_judge_reward_model.h): the served model is asked, in the same
// conversation right after its response, whether that response was helpful
// and harmless; the prompt and response are already in its KV cache, so
// only the short question is computed. Reward models with weights of their own
// run on scorer engines (ScoreRequest::scorer), each with its own KV pool;
// server/reward_models.h declares them from flags.
//
// Thread-safety: implementations are immutable after construction; Submit
// and Reward are const and may be called from the engine thread of any
// number of requests sharing one instance.
#ifndef ALIGNSERVE_ALIGNMENT_REWARD_MODEL_H_
#define ALIGNSERVE_ALIGNMENT_REWARD_MODEL_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/decoding_policy.h"
#include "models/tokenizer/tokenizer.h"

namespace alignserve {

// One (prompt, response) pair to score.
struct RewardInput {
  std::string_view prompt;    // text, as the user and the client see it
  std::string_view response;  // text, the completion so far or whole
  // The response as the served model generated it (a sequence's output
  // ids: PolicyContext::output_token_ids), or empty when the response is
  // not one sequence's output. A self_judge reads them after the request's
  // prompt ids, so their KV blocks are prefix-cache hits; the others read
  // the text.
  std::span<const int32_t> response_token_ids;
  // The sequence those ids are the output of (-1: none). A self_judge's
  // scoring prompt extends it (ScoreRequest::extends_seq_id), so even its
  // last partial KV block is shared rather than computed again.
  int64_t seq_id = -1;
};

class RewardModel {
 public:
  virtual ~RewardModel() = default;

  // Queues the scoring of the pair; returns the score id that OnScores will
  // report. Errors from ctx.Score pass through (e.g. InvalidArgument for a
  // pair too long for the context).
  virtual absl::StatusOr<int64_t> Submit(const RewardInput& input, PolicyContext& ctx) const = 0;

  // The reward carried by a delivered result of one of this model's
  // submissions; NaN when the result failed, so it never wins a selection.
  virtual double Reward(const ScoreResult& result) const = 0;
};

// The prompt text a reward model reads for one request, made once into
// `cache`: `given` when set (the user's text, without a chat template) or
// when there is no tokenizer, else the request's prompt tokens decoded with
// special tokens skipped. Shared by the reward-guided policies.
inline const std::string& RewardPromptText(const std::string& given, const Tokenizer* tokenizer,
                                           const PolicyContext& ctx,
                                           std::optional<std::string>& cache) {
  if (!cache.has_value()) {
    cache = !given.empty() || tokenizer == nullptr
                ? given
                : tokenizer->Decode(ctx.prompt_token_ids(), /*skip_special=*/true);
  }
  return *cache;
}

}  // namespace alignserve

#endif  // ALIGNSERVE_ALIGNMENT_REWARD_MODEL_H_
