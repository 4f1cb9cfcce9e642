#include "server/openai_request.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "server/openai_fields.h"

namespace alignserve {
namespace {

using nlohmann::json;

constexpr int64_t kDefaultCompletionMaxTokens = 16;  // OpenAI's default

absl::Status ReadStreamOptions(const json& body, OpenAiRequest* req) {
  const json* options = FindField(body, "stream_options");
  if (options == nullptr) return absl::OkStatus();
  if (!req->stream) {
    return InvalidParamError("stream_options", "is only allowed when stream is true");
  }
  if (!options->is_object()) {
    return InvalidParamError("stream_options",
                             absl::StrCat("must be an object, got ", JsonTypeName(*options)));
  }
  absl::Status status = ReadBool(*options, "include_usage", &req->include_usage);
  if (!status.ok()) {
    return InvalidParamError("stream_options", "include_usage must be a boolean");
  }
  return absl::OkStatus();
}

// The fields both APIs share, read before the prompt is tokenized.
absl::Status ReadCommonFields(const json& body, const ServeContext& ctx, OpenAiRequest* req) {
  ASSIGN_OR_RETURN(req->model, CheckModel(body, ctx));
  RETURN_IF_ERROR(ReadSamplingFields(body, ctx, &req->params));
  RETURN_IF_ERROR(RejectUnsupportedFields(body, req->kind, req->params.n));
  RETURN_IF_ERROR(ReadBool(body, "stream", &req->stream));
  RETURN_IF_ERROR(ReadStreamOptions(body, req));
  RETURN_IF_ERROR(ReadBool(body, "skip_special_tokens", &req->skip_special_tokens));
  req->params.skip_special_tokens = req->skip_special_tokens;
  return ReadString(body, "user", &req->user);
}

absl::StatusOr<std::vector<int32_t>> EncodePromptText(const json& value, const std::string& what,
                                                      const ServeContext& ctx) {
  const std::string& text = value.get_ref<const std::string&>();
  if (text.empty()) return InvalidParamError("prompt", absl::StrCat(what, " must not be empty"));
  const Tokenizer& tokenizer = *ctx.text->tokenizer;
  return tokenizer.Encode(text, tokenizer.add_bos_by_default());
}

// One prompt of the completions API: a string or a list of token ids.
absl::Status AddPrompt(const json& value, const std::string& what, const ServeContext& ctx,
                       OpenAiRequest* req) {
  if (value.is_string()) {
    ASSIGN_OR_RETURN(std::vector<int32_t> ids, EncodePromptText(value, what, ctx));
    req->prompts.push_back(std::move(ids));
    req->prompt_texts.push_back(value.get<std::string>());
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(std::vector<int32_t> ids, TokenIdList(value, "prompt", what, ctx.vocab_size));
  if (ids.empty()) return InvalidParamError("prompt", absl::StrCat(what, " must not be empty"));
  req->prompt_texts.push_back(ctx.text->tokenizer->Decode(ids, /*skip_special=*/false));
  req->prompts.push_back(std::move(ids));
  return absl::OkStatus();
}

// prompt: "text" | ["text", ...] | [id, ...] | [[id, ...], ...].
absl::Status ReadCompletionPrompts(const json& body, const ServeContext& ctx, OpenAiRequest* req) {
  const json* prompt = FindField(body, "prompt");
  if (prompt == nullptr) return InvalidParamError("prompt", "is required");
  if (prompt->is_string()) return AddPrompt(*prompt, "prompt", ctx, req);
  if (!prompt->is_array()) {
    return InvalidParamError("prompt", absl::StrCat("must be a string, a list of strings, a list "
                                                    "of token ids or a list of such lists, got ",
                                                    JsonTypeName(*prompt)));
  }
  if (prompt->empty()) return InvalidParamError("prompt", "must not be empty");
  if ((*prompt)[0].is_number()) return AddPrompt(*prompt, "prompt", ctx, req);
  if (prompt->size() > kMaxPromptsPerRequest) {
    return InvalidParamError("prompt", absl::StrCat("holds ", prompt->size(), " prompts; at most ",
                                                    kMaxPromptsPerRequest, " are allowed"));
  }
  const bool strings = (*prompt)[0].is_string();
  for (size_t i = 0; i < prompt->size(); ++i) {
    const json& item = (*prompt)[i];
    const std::string what = absl::StrCat("prompt[", i, "]");
    if (strings ? !item.is_string() : !item.is_array()) {
      return InvalidParamError(
          "prompt",
          absl::StrCat("must not mix strings and token lists: ", what, " is ", JsonTypeName(item)));
    }
    RETURN_IF_ERROR(AddPrompt(item, what, ctx, req));
  }
  return absl::OkStatus();
}

// ROBUSTNESS.md item 4: every prompt must leave room for one new token.
absl::Status CheckPromptLengths(const OpenAiRequest& req, const ServeContext& ctx,
                                const std::string& param) {
  for (const std::vector<int32_t>& prompt : req.prompts) {
    if (static_cast<int64_t>(prompt.size()) >= ctx.max_model_len) {
      return ParamError(absl::StatusCode::kInvalidArgument, param,
                        absl::StrCat("This model's maximum context length is ", ctx.max_model_len,
                                     " tokens. However, your ", param, " has ", prompt.size(),
                                     " tokens, which leaves no room for a completion. Please "
                                     "reduce the length of the ",
                                     param, "."));
    }
  }
  return absl::OkStatus();
}

// max_tokens: requested (>= 1) or the API's default (nullopt: the room
// left by the prompt), then fitted to the context (see the header).
absl::Status ResolveMaxTokens(std::optional<int64_t> requested, const std::string& param,
                              std::optional<int64_t> default_max_tokens, const ServeContext& ctx,
                              OpenAiRequest* req) {
  if (requested && *requested < 1) {
    return InvalidParamError(param, absl::StrCat("must be at least 1, got ", *requested));
  }
  size_t shortest = std::numeric_limits<size_t>::max(), longest = 0;
  for (const std::vector<int32_t>& prompt : req->prompts) {
    shortest = std::min(shortest, prompt.size());
    longest = std::max(longest, prompt.size());
  }
  const int64_t room = ctx.max_model_len - static_cast<int64_t>(shortest);
  if (requested && ctx.reject_max_tokens_past_context &&
      *requested + static_cast<int64_t>(longest) > ctx.max_model_len) {
    return InvalidParamError(
        param, absl::StrCat("is too large: this model's maximum context length is ",
                            ctx.max_model_len, " tokens and your request has ", longest,
                            " prompt tokens and asks for ", *requested, " completion tokens"));
  }
  const int64_t wanted = requested ? *requested : default_max_tokens.value_or(room);
  req->params.max_tokens = static_cast<int32_t>(std::min(wanted, room));
  return absl::OkStatus();
}

absl::Status ReadChatLogprobs(const json& body, OpenAiRequest* req) {
  RETURN_IF_ERROR(ReadBool(body, "logprobs", &req->logprobs));
  std::optional<int64_t> top;
  RETURN_IF_ERROR(ReadInt(body, "top_logprobs", 0, SamplingParams::kMaxLogprobs, &top));
  if (top && *top > 0 && !req->logprobs) {
    return InvalidParamError("top_logprobs", "requires logprobs to be true");
  }
  req->top_logprobs = static_cast<int>(top.value_or(0));
  if (req->logprobs) req->params.logprobs = req->top_logprobs;
  return absl::OkStatus();
}

absl::Status ReadCompletionLogprobs(const json& body, OpenAiRequest* req) {
  std::optional<int64_t> logprobs;
  RETURN_IF_ERROR(ReadInt(body, "logprobs", 0, SamplingParams::kMaxLogprobs, &logprobs));
  RETURN_IF_ERROR(ReadBool(body, "echo", &req->echo));
  if (!logprobs) return absl::OkStatus();
  req->logprobs = true;
  req->top_logprobs = static_cast<int>(*logprobs);
  req->params.logprobs = req->top_logprobs;
  // Echo with logprobs reports the prompt's tokens too, as OpenAI does.
  if (req->echo) req->params.prompt_logprobs = req->top_logprobs;
  return absl::OkStatus();
}

absl::Status FinishRequest(const ServeContext& ctx, OpenAiRequest* req) {
  return WithParamFromMessage(req->params.Validate(ctx.vocab_size));
}

absl::Status CheckContext(const ServeContext& ctx) {
  if (ctx.text == nullptr || ctx.text->tokenizer == nullptr) {
    return absl::FailedPreconditionError("the served model has no tokenizer");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<OpenAiRequest> ParseCompletionRequest(std::string_view body,
                                                     const ServeContext& ctx) {
  RETURN_IF_ERROR(CheckContext(ctx));
  ASSIGN_OR_RETURN(json parsed, ParseRequestObject(body));
  OpenAiRequest req;
  req.kind = ApiKind::kCompletion;
  RETURN_IF_ERROR(ReadCommonFields(parsed, ctx, &req));
  RETURN_IF_ERROR(ReadCompletionLogprobs(parsed, &req));
  std::optional<int64_t> max_tokens;
  RETURN_IF_ERROR(ReadInt(parsed, "max_tokens", std::numeric_limits<int64_t>::min(),
                          std::numeric_limits<int64_t>::max(), &max_tokens));
  RETURN_IF_ERROR(ReadCompletionPrompts(parsed, ctx, &req));
  RETURN_IF_ERROR(CheckPromptLengths(req, ctx, "prompt"));
  RETURN_IF_ERROR(
      ResolveMaxTokens(max_tokens, "max_tokens", kDefaultCompletionMaxTokens, ctx, &req));
  RETURN_IF_ERROR(ReadPolicyField(parsed, ctx, &req));
  RETURN_IF_ERROR(FinishRequest(ctx, &req));
  return req;
}

absl::StatusOr<OpenAiRequest> ParseChatRequest(std::string_view body, const ServeContext& ctx) {
  RETURN_IF_ERROR(CheckContext(ctx));
  ASSIGN_OR_RETURN(json parsed, ParseRequestObject(body));
  OpenAiRequest req;
  req.kind = ApiKind::kChat;
  RETURN_IF_ERROR(ReadCommonFields(parsed, ctx, &req));
  RETURN_IF_ERROR(ReadChatLogprobs(parsed, &req));
  // max_completion_tokens (OpenAI's current name) wins over max_tokens.
  std::optional<int64_t> max_tokens;
  std::string max_tokens_param = "max_completion_tokens";
  RETURN_IF_ERROR(ReadInt(parsed, max_tokens_param, std::numeric_limits<int64_t>::min(),
                          std::numeric_limits<int64_t>::max(), &max_tokens));
  if (!max_tokens) {
    max_tokens_param = "max_tokens";
    RETURN_IF_ERROR(ReadInt(parsed, max_tokens_param, std::numeric_limits<int64_t>::min(),
                            std::numeric_limits<int64_t>::max(), &max_tokens));
  }
  bool add_generation_prompt = true;
  RETURN_IF_ERROR(ReadBool(parsed, "add_generation_prompt", &add_generation_prompt));
  ASSIGN_OR_RETURN(std::string prompt,
                   RenderChatMessages(FindField(parsed, "messages"), add_generation_prompt, ctx));
  req.prompts.push_back(ctx.text->tokenizer->Encode(prompt, /*add_bos=*/false));
  req.prompt_texts.push_back(std::move(prompt));
  if (req.prompts[0].empty()) return InvalidParamError("messages", "render to an empty prompt");
  RETURN_IF_ERROR(CheckPromptLengths(req, ctx, "messages"));
  RETURN_IF_ERROR(ResolveMaxTokens(max_tokens, max_tokens_param, std::nullopt, ctx, &req));
  RETURN_IF_ERROR(ReadPolicyField(parsed, ctx, &req));
  RETURN_IF_ERROR(FinishRequest(ctx, &req));
  return req;
}

}  // namespace alignserve
