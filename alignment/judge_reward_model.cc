#include "alignment/judge_reward_model.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"

namespace alignserve {
namespace {

std::vector<int32_t> EncodeJudgeText(const Tokenizer& tokenizer, std::string_view text) {
  return tokenizer.Encode(text, tokenizer.add_bos_by_default(), /*parse_special=*/false);
}

}  // namespace

int32_t VerdictToken(const Tokenizer& tokenizer, const std::string& text, std::string_view word,
                     bool add_bos, bool parse_special) {
  const bool after_space =
      !text.empty() && std::isspace(static_cast<unsigned char>(text.back())) != 0;
  const std::vector<int32_t> base = tokenizer.Encode(text, add_bos, parse_special);
  std::string text_with_word = text;
  if (!after_space) text_with_word += ' ';
  text_with_word += word;
  const std::vector<int32_t> with = tokenizer.Encode(text_with_word, add_bos, parse_special);
  const auto diverge = std::mismatch(base.begin(), base.end(), with.begin(), with.end());
  return diverge.second == with.end() ? -1 : *diverge.second;
}

absl::StatusOr<std::shared_ptr<const JudgeRewardModel>> JudgeRewardModel::Create(
    const Tokenizer* tokenizer, Rubric rubric, int scorer) {
  if (tokenizer == nullptr) {
    return absl::InvalidArgumentError("the judge reward model needs the judge model's tokenizer");
  }
  // The verdict follows the rubric's closing text, whatever fills it.
  const std::string probe = rubric.Fill("", "");
  const bool bos = tokenizer->add_bos_by_default();
  const int32_t yes = VerdictToken(*tokenizer, probe, "Yes", bos, /*parse_special=*/false);
  const int32_t no = VerdictToken(*tokenizer, probe, "No", bos, /*parse_special=*/false);
  if (yes < 0 || no < 0 || yes == no) {
    return absl::InvalidArgumentError(absl::StrCat(
        "judge verdict tokens cannot be told apart after the rubric (Yes ", yes, ", No ", no, ")"));
  }
  return std::shared_ptr<const JudgeRewardModel>(
      new JudgeRewardModel(*tokenizer, std::move(rubric), yes, no, scorer));
}

absl::StatusOr<std::shared_ptr<const JudgeRewardModel>> JudgeRewardModel::CreateFromFile(
    const Tokenizer* tokenizer, const std::string& rubric_path, int scorer) {
  ASSIGN_OR_RETURN(Rubric rubric, Rubric::Load(rubric_path));
  return Create(tokenizer, std::move(rubric), scorer);
}

std::vector<int32_t> JudgeRewardModel::JudgePrompt(std::string_view prompt,
                                                   std::string_view response) const {
  return EncodeJudgeText(tokenizer_, rubric_.Fill(prompt, response));
}

absl::StatusOr<int64_t> JudgeRewardModel::Submit(const RewardInput& input,
                                                 PolicyContext& ctx) const {
  ScoreRequest request;
  request.prompt_token_ids = JudgePrompt(input.prompt, input.response);
  request.token_ids = {yes_token_, no_token_};
  request.scorer = scorer_;
  return ctx.Score(std::move(request));
}

double JudgeRewardModel::Reward(const ScoreResult& result) const {
  if (!result.status.ok()) return std::numeric_limits<double>::quiet_NaN();
  // The result's row holds [logprob(yes), logprob(no)].
  return JudgeScore(result.values, 0, 1);
}

}  // namespace alignserve
