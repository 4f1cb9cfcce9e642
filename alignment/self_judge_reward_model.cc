#include "alignment/self_judge_reward_model.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "alignment/judge_reward_model.h"
#include "alignment/rubric.h"
#include "kernels/status_macros.h"
#include "nlohmann/json.hpp"

namespace alignserve {
namespace {

// Stands for the response while the template renders a conversation: a
// string no template rewrites and no prompt contains.
constexpr std::string_view kMarker = "\x1f@alignserve-self-judge-response@\x1f";

std::vector<int32_t> EncodeClosing(const Tokenizer& tokenizer, std::string_view text,
                                   bool special) {
  return tokenizer.Encode(text, /*add_bos=*/false, /*parse_special=*/special);
}

}  // namespace

absl::StatusOr<std::shared_ptr<const SelfJudgeRewardModel>> SelfJudgeRewardModel::Create(
    const ModelText& text, std::string question) {
  if (text.tokenizer == nullptr) {
    return absl::InvalidArgumentError("the self_judge reward model needs the served tokenizer");
  }
  const Tokenizer& tokenizer = *text.tokenizer;
  auto make_closing = [&](const std::string& closing_text,
                          bool special) -> absl::StatusOr<Closing> {
    Closing c;
    c.ids = EncodeClosing(tokenizer, closing_text, special);
    c.yes = VerdictToken(tokenizer, closing_text, "Yes", /*add_bos=*/false, special);
    c.no = VerdictToken(tokenizer, closing_text, "No", /*add_bos=*/false, special);
    if (c.ids.empty() || c.yes < 0 || c.no < 0 || c.yes == c.no) {
      return absl::InvalidArgumentError(
          absl::StrCat("self_judge verdict tokens cannot be told apart after the closing (Yes ",
                       c.yes, ", No ", c.no, ")"));
    }
    return c;
  };
  ASSIGN_OR_RETURN(Closing plain, make_closing(absl::StrCat("\n\n", question, "\nAnswer:"), false));
  std::vector<int32_t> generation_prompt;
  Closing chat;
  if (text.chat_template.has_value()) {
    using Json = nlohmann::ordered_json;
    const Json asked = Json::array({Json{{"role", "user"}, {"content", "Hi."}}});
    ASSIGN_OR_RETURN(const std::string with_prompt, text.RenderChat(asked, true));
    ASSIGN_OR_RETURN(const std::string without_prompt, text.RenderChat(asked, false));
    Json judged = asked;
    judged.push_back({{"role", "assistant"}, {"content", std::string(kMarker)}});
    judged.push_back({{"role", "user"}, {"content", question}});
    ASSIGN_OR_RETURN(const std::string rendered, text.RenderChat(judged, true));
    const size_t marker = rendered.find(kMarker);
    const bool usable = with_prompt.size() > without_prompt.size() &&
                        with_prompt.compare(0, without_prompt.size(), without_prompt) == 0 &&
                        marker != std::string::npos;
    if (usable) {
      generation_prompt = EncodeClosing(tokenizer, with_prompt.substr(without_prompt.size()), true);
      ASSIGN_OR_RETURN(chat, make_closing(rendered.substr(marker + kMarker.size()), true));
    }
  }
  return std::shared_ptr<const SelfJudgeRewardModel>(new SelfJudgeRewardModel(
      text, std::move(generation_prompt), std::move(chat), std::move(plain)));
}

bool SelfJudgeRewardModel::IsChatPrompt(std::span<const int32_t> prompt_ids) const {
  const size_t n = generation_prompt_.size();
  return n > 0 && prompt_ids.size() >= n &&
         std::equal(generation_prompt_.begin(), generation_prompt_.end(), prompt_ids.end() - n);
}

std::vector<int32_t> SelfJudgeRewardModel::JudgePrompt(std::span<const int32_t> prompt_ids,
                                                       std::span<const int32_t> response_ids,
                                                       std::string_view response_text) const {
  std::vector<int32_t> ids(prompt_ids.begin(), prompt_ids.end());
  if (response_ids.empty() && !response_text.empty()) {
    const std::vector<int32_t> encoded =
        text_.tokenizer->Encode(response_text, /*add_bos=*/false, /*parse_special=*/false);
    ids.insert(ids.end(), encoded.begin(), encoded.end());
  } else {
    size_t end = response_ids.size();
    while (end > 0 && text_.IsStopToken(response_ids[end - 1])) --end;
    ids.insert(ids.end(), response_ids.begin(), response_ids.begin() + end);
  }
  const Closing& closing = IsChatPrompt(prompt_ids) ? chat_ : plain_;
  ids.insert(ids.end(), closing.ids.begin(), closing.ids.end());
  return ids;
}

absl::StatusOr<int64_t> SelfJudgeRewardModel::Submit(const RewardInput& input,
                                                     PolicyContext& ctx) const {
  const std::span<const int32_t> prompt_ids = ctx.prompt_token_ids();
  if (prompt_ids.empty()) {
    return absl::FailedPreconditionError("self_judge needs the request's prompt token ids");
  }
  const Closing& closing = IsChatPrompt(prompt_ids) ? chat_ : plain_;
  ScoreRequest request;
  request.prompt_token_ids = JudgePrompt(prompt_ids, input.response_token_ids, input.response);
  request.token_ids = {closing.yes, closing.no};
  request.scorer = 0;
  if (!input.response_token_ids.empty()) request.extends_seq_id = input.seq_id;
  return ctx.Score(std::move(request));
}

double SelfJudgeRewardModel::Reward(const ScoreResult& result) const {
  if (!result.status.ok()) return std::numeric_limits<double>::quiet_NaN();
  // The result's row holds [logprob(yes), logprob(no)] of the closing used.
  return JudgeScore(result.values, 0, 1);
}

}  // namespace alignserve
