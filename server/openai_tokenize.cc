// vLLM's /tokenize and /detokenize (declared in server/openai_request.h).
#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "server/openai_fields.h"
#include "server/openai_request.h"

namespace alignserve {

using nlohmann::json;

absl::StatusOr<std::vector<int32_t>> ParseTokenizeRequest(std::string_view body,
                                                          const ServeContext& ctx) {
  if (ctx.text == nullptr || ctx.text->tokenizer == nullptr) {
    return absl::FailedPreconditionError("the served model has no tokenizer");
  }
  ASSIGN_OR_RETURN(json parsed, ParseRequestObject(body));
  RETURN_IF_ERROR(CheckModel(parsed, ctx).status());
  const Tokenizer& tokenizer = *ctx.text->tokenizer;
  const json* prompt = FindField(parsed, "prompt");
  const json* messages = FindField(parsed, "messages");
  if ((prompt == nullptr) == (messages == nullptr)) {
    return InvalidParamError("prompt", "or messages is required (exactly one of them)");
  }
  if (prompt != nullptr) {
    // As vLLM: add_special_tokens defaults to true for a prompt...
    bool add_special_tokens = true;
    RETURN_IF_ERROR(ReadBool(parsed, "add_special_tokens", &add_special_tokens));
    if (!prompt->is_string()) {
      return InvalidParamError("prompt",
                               absl::StrCat("must be a string, got ", JsonTypeName(*prompt)));
    }
    return tokenizer.Encode(prompt->get<std::string>(),
                            add_special_tokens && tokenizer.add_bos_by_default());
  }
  // ...and to false for messages, whose template spells its own specials.
  bool add_special_tokens = false;
  bool add_generation_prompt = true;
  RETURN_IF_ERROR(ReadBool(parsed, "add_special_tokens", &add_special_tokens));
  RETURN_IF_ERROR(ReadBool(parsed, "add_generation_prompt", &add_generation_prompt));
  ASSIGN_OR_RETURN(std::string text, RenderChatMessages(messages, add_generation_prompt, ctx));
  return tokenizer.Encode(text, add_special_tokens && tokenizer.add_bos_by_default());
}

json TokenizeResponse(const std::vector<int32_t>& ids, const ServeContext& ctx) {
  return {{"count", ids.size()}, {"max_model_len", ctx.max_model_len}, {"tokens", ids}};
}

absl::StatusOr<std::vector<int32_t>> ParseDetokenizeRequest(std::string_view body,
                                                            const ServeContext& ctx) {
  ASSIGN_OR_RETURN(json parsed, ParseRequestObject(body));
  RETURN_IF_ERROR(CheckModel(parsed, ctx).status());
  const json* tokens = FindField(parsed, "tokens");
  if (tokens == nullptr) return InvalidParamError("tokens", "is required");
  return TokenIdList(*tokens, "tokens", "tokens", ctx.vocab_size);
}

json DetokenizeResponse(const std::vector<int32_t>& ids, const ServeContext& ctx) {
  std::string text;
  if (ctx.text != nullptr && ctx.text->tokenizer != nullptr) {
    text = ctx.text->tokenizer->Decode(ids, /*skip_special=*/false);
  }
  return {{"prompt", std::move(text)}};
}

}  // namespace alignserve
