// SelfJudgeRewardModel: the `self_judge` reward model. The served model is
// asked, in the same context and right after its own response, whether
// that response was helpful and harmless; reward = logprob("Yes") -
// logprob("No") of its answer, as for `judge` (alignment/
// judge_reward_model.h). The scoring prompt is
//
//   the request's prompt ids + the response's own token ids + closing ids,
//
// so every full KV block of the prompt and the response is a prefix-cache
// hit (the engine registers blocks as they fill, decode blocks included):
// a score computes the response's last partial block and the closing
// question (~20 tokens on SmolLM2) where `judge` prefills the whole filled
// rubric's unshared part (response + closing). The price: the judgment
// reads the conversation as the model saw it, not an impartial rubric.
//
// The closing. For a chat prompt (its ids end with the chat template's
// generation prompt, e.g. "<|im_start|>assistant\n"): the template's own
// end of the assistant turn, a user turn asking the question and the
// generation prompt, taken from the template rendered around a marker
// response. For any other prompt (a plain completion, a model without a
// template): "\n\n" + question + "\nAnswer:". The verdict tokens
// are the first tokens of "Yes" / "No" after the closing (" Yes" / " No"
// after "Answer:"), found by encoding with and without them.
//
// The sequence itself: its scoring request extends it (ScoreRequest::
// extends_seq_id), so when it is scored as it finishes (best_of_n) or
// while it runs (ARGS), its last partial block is shared too and a score
// computes the closing and at most the last sampled token.
//
// Response ids: RewardInput::response_token_ids, with trailing stop tokens
// (EOS, end of turn) dropped since the closing ends the turn itself; when
// a policy gives none (a response that is no sequence's output) the
// response text is tokenized. Scorer 0 only: the KV cache it reuses is the
// served model's.
//
// Thread-safety: immutable after Create; every method is const. `text`
// must outlive the model.
#ifndef ALIGNSERVE_ALIGNMENT_SELF_JUDGE_REWARD_MODEL_H_
#define ALIGNSERVE_ALIGNMENT_SELF_JUDGE_REWARD_MODEL_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "alignment/reward_model.h"
#include "models/model_text.h"

namespace alignserve {

class SelfJudgeRewardModel final : public RewardModel {
 public:
  // Short on purpose: every score computes it after its response.
  static constexpr std::string_view kDefaultQuestion = "Helpful, correct and harmless? Yes or No.";

  // InvalidArgument: no tokenizer, or verdict tokens that cannot be told
  // apart after a closing.
  static absl::StatusOr<std::shared_ptr<const SelfJudgeRewardModel>> Create(
      const ModelText& text, std::string question = std::string(kDefaultQuestion));

  // The scoring prompt for a response to the request whose prompt ids are
  // `prompt_ids` (exposed for tests).
  std::vector<int32_t> JudgePrompt(std::span<const int32_t> prompt_ids,
                                   std::span<const int32_t> response_ids,
                                   std::string_view response_text) const;
  // Whether prompt_ids end with the chat template's generation prompt.
  bool IsChatPrompt(std::span<const int32_t> prompt_ids) const;

  absl::StatusOr<int64_t> Submit(const RewardInput& input, PolicyContext& ctx) const override;
  // logprob(yes) - logprob(no) from the result's two logprobs.
  double Reward(const ScoreResult& result) const override;

 private:
  // A closing and the verdict tokens that follow it.
  struct Closing {
    std::vector<int32_t> ids;
    int32_t yes = -1;
    int32_t no = -1;
  };

  SelfJudgeRewardModel(const ModelText& text, std::vector<int32_t> generation_prompt, Closing chat,
                       Closing plain)
      : text_(text),
        generation_prompt_(std::move(generation_prompt)),
        chat_(std::move(chat)),
        plain_(std::move(plain)) {}

  const ModelText& text_;
  const std::vector<int32_t> generation_prompt_;  // empty: no chat template
  const Closing chat_;
  const Closing plain_;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_ALIGNMENT_SELF_JUDGE_REWARD_MODEL_H_
