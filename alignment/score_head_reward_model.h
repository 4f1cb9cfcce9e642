// ScoreHeadRewardModel: the `score_head` reward model (issue 5). A Llama-
// family backbone with a linear head on the last token, loaded from HF
// `LlamaForSequenceClassification` safetensors (Skywork-Reward and similar;
// models/llama_model.h: its logits row is the head's num_labels scores).
// reward = the head's logit at `label` (0 for one-label reward models)
// after the conversation [user: prompt, assistant: response].
//
// Input: the reward model's own chat template rendered with
// add_generation_prompt = false, as transformers' apply_chat_template gives
// it, then tokenized without adding BOS (the template writes it), special
// tokens parsed (as vLLM tokenizes a rendered chat). A model without a
// template reads "prompt\n\nresponse" with BOS as its tokenizer adds it.
// The scoring runs on scorer engine `scorer` (LlmEngine::AttachScorer): the
// classifier has its own weights and KV pool, batched among its requests.
//
// Thread-safety: immutable after Create; every method is const. The
// ModelText must outlive the model.
#ifndef ALIGNSERVE_ALIGNMENT_SCORE_HEAD_REWARD_MODEL_H_
#define ALIGNSERVE_ALIGNMENT_SCORE_HEAD_REWARD_MODEL_H_

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "alignment/reward_model.h"
#include "models/model_text.h"

namespace alignserve {

class ScoreHeadRewardModel final : public RewardModel {
 public:
  // InvalidArgument: no tokenizer, a scorer index below 1, a label outside
  // [0, num_labels).
  static absl::StatusOr<std::shared_ptr<const ScoreHeadRewardModel>> Create(const ModelText& text,
                                                                            int num_labels,
                                                                            int scorer,
                                                                            int label = 0);

  // The classifier's input for one pair; errors of the chat template pass
  // through.
  absl::StatusOr<std::vector<int32_t>> ScorePrompt(std::string_view prompt,
                                                   std::string_view response) const;

  absl::StatusOr<int64_t> Submit(const RewardInput& input, PolicyContext& ctx) const override;
  // The label's logit; NaN for a failed result.
  double Reward(const ScoreResult& result) const override;

 private:
  ScoreHeadRewardModel(const ModelText& text, int scorer, int label)
      : text_(text), scorer_(scorer), label_(label) {}

  const ModelText& text_;
  const int scorer_;
  const int label_;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_ALIGNMENT_SCORE_HEAD_REWARD_MODEL_H_
