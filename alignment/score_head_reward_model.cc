#include "alignment/score_head_reward_model.h"

#include <limits>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "nlohmann/json.hpp"

namespace alignserve {

absl::StatusOr<std::shared_ptr<const ScoreHeadRewardModel>> ScoreHeadRewardModel::Create(
    const ModelText& text, int num_labels, int scorer, int label) {
  if (text.tokenizer == nullptr) {
    return absl::InvalidArgumentError(
        "the score_head reward model needs its tokenizer (tokenizer.json in its folder)");
  }
  if (scorer < 1) {
    return absl::InvalidArgumentError(
        "a score_head reward model runs on a scorer engine of its own (index >= 1)");
  }
  if (label < 0 || label >= num_labels) {
    return absl::InvalidArgumentError(absl::StrCat(
        "score_head label ", label, " outside the model's labels [0, ", num_labels, ")"));
  }
  return std::shared_ptr<const ScoreHeadRewardModel>(new ScoreHeadRewardModel(text, scorer, label));
}

absl::StatusOr<std::vector<int32_t>> ScoreHeadRewardModel::ScorePrompt(
    std::string_view prompt, std::string_view response) const {
  const Tokenizer& tokenizer = *text_.tokenizer;
  if (!text_.chat_template.has_value()) {
    const std::string joined = absl::StrCat(std::string(prompt), "\n\n", std::string(response));
    return tokenizer.Encode(joined, tokenizer.add_bos_by_default(), /*parse_special=*/false);
  }
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  messages.push_back({{"role", "user"}, {"content", std::string(prompt)}});
  messages.push_back({{"role", "assistant"}, {"content", std::string(response)}});
  ASSIGN_OR_RETURN(const std::string rendered,
                   text_.RenderChat(messages, /*add_generation_prompt=*/false));
  return tokenizer.Encode(rendered, /*add_bos=*/false, /*parse_special=*/true);
}

absl::StatusOr<int64_t> ScoreHeadRewardModel::Submit(const RewardInput& input,
                                                     PolicyContext& ctx) const {
  ScoreRequest request;
  ASSIGN_OR_RETURN(request.prompt_token_ids, ScorePrompt(input.prompt, input.response));
  request.token_ids = {label_};
  request.output = ScoreRequest::Output::kLogits;
  request.scorer = scorer_;
  return ctx.Score(std::move(request));
}

double ScoreHeadRewardModel::Reward(const ScoreResult& result) const {
  if (!result.status.ok() || result.values.size() != 1) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  return result.values[0];
}

}  // namespace alignserve
