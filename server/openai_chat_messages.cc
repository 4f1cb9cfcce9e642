// Chat messages -> the model's prompt text (declared in
// server/openai_fields.h).
//
// Content parts are joined with "\n" into one string, as vLLM does for
// templates that expect string content (SmolLM2's, Llama's, Qwen's): the
// template then sees the same text whether the client sent a string or
// parts. "developer" (OpenAI's newer name for the system role) is passed
// as "system", since model templates know only the latter.
#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "server/openai_fields.h"

namespace alignserve {
namespace {

using nlohmann::json;

absl::Status MessageError(absl::StatusCode code, const std::string& what) {
  return ParamError(code, "messages", what);
}

absl::StatusOr<std::string> ContentText(const json& message, size_t i, const std::string& role) {
  const std::string where = absl::StrCat("messages[", i, "].content");
  const json* content = FindField(message, "content");
  if (content == nullptr) {
    // An assistant turn may have no content (OpenAI: when it made tool calls).
    if (role == "assistant") return std::string();
    return MessageError(absl::StatusCode::kInvalidArgument, absl::StrCat(where, " is required"));
  }
  if (content->is_string()) return content->get<std::string>();
  if (!content->is_array()) {
    return MessageError(absl::StatusCode::kInvalidArgument,
                        absl::StrCat(where, " must be a string or a list of content parts, got ",
                                     JsonTypeName(*content)));
  }
  std::string text;
  for (size_t p = 0; p < content->size(); ++p) {
    const json& part = (*content)[p];
    const std::string part_where = absl::StrCat(where, "[", p, "]");
    const json* type = part.is_object() ? FindField(part, "type") : nullptr;
    if (type == nullptr || !type->is_string()) {
      return MessageError(absl::StatusCode::kInvalidArgument,
                          absl::StrCat(part_where, " must be an object with a string \"type\""));
    }
    if (*type != "text") {
      return MessageError(absl::StatusCode::kUnimplemented,
                          absl::StrCat(part_where, " has type \"", type->get<std::string>(),
                                       "\"; only \"text\" parts are supported"));
    }
    const json* part_text = FindField(part, "text");
    if (part_text == nullptr || !part_text->is_string()) {
      return MessageError(absl::StatusCode::kInvalidArgument,
                          absl::StrCat(part_where, ".text must be a string"));
    }
    if (p > 0) text += '\n';
    text += part_text->get<std::string>();
  }
  return text;
}

absl::StatusOr<nlohmann::ordered_json> ConvertMessage(const json& message, size_t i) {
  if (!message.is_object()) {
    return MessageError(
        absl::StatusCode::kInvalidArgument,
        absl::StrCat("messages[", i, "] must be an object, got ", JsonTypeName(message)));
  }
  const json* role_field = FindField(message, "role");
  if (role_field == nullptr || !role_field->is_string()) {
    return MessageError(absl::StatusCode::kInvalidArgument,
                        absl::StrCat("messages[", i, "].role must be a string"));
  }
  std::string role = role_field->get<std::string>();
  if (role == "developer") role = "system";
  if (role == "tool" || role == "function") {
    return MessageError(
        absl::StatusCode::kUnimplemented,
        absl::StrCat("messages[", i, "].role \"", role, "\" is not supported (no tool calling)"));
  }
  if (role != "system" && role != "user" && role != "assistant") {
    return MessageError(absl::StatusCode::kInvalidArgument,
                        absl::StrCat("messages[", i,
                                     "].role must be one of system, user, "
                                     "assistant, got \"",
                                     role, "\""));
  }
  if (const json* calls = FindField(message, "tool_calls");
      calls != nullptr && !(calls->is_array() && calls->empty())) {
    return MessageError(absl::StatusCode::kUnimplemented,
                        absl::StrCat("messages[", i, "].tool_calls is not supported"));
  }
  ASSIGN_OR_RETURN(std::string content, ContentText(message, i, role));
  return nlohmann::ordered_json{{"role", role}, {"content", std::move(content)}};
}

// The server's --chat-template when given, else the model's own.
absl::StatusOr<std::string> RenderWith(const ServeContext& ctx,
                                       const nlohmann::ordered_json& messages,
                                       bool add_generation_prompt) {
  if (ctx.chat_template == nullptr) return ctx.text->RenderChat(messages, add_generation_prompt);
  ChatTemplateInputs inputs;
  inputs.messages = messages;
  inputs.add_generation_prompt = add_generation_prompt;
  inputs.bos_token = ctx.text->bos_token;
  inputs.eos_token = ctx.text->eos_token;
  return ctx.chat_template->Render(inputs);
}

}  // namespace

absl::StatusOr<std::string> RenderChatMessages(const json* messages, bool add_generation_prompt,
                                               const ServeContext& ctx) {
  if (messages == nullptr) {
    return MessageError(absl::StatusCode::kInvalidArgument, "messages is required");
  }
  if (!messages->is_array()) {
    return MessageError(
        absl::StatusCode::kInvalidArgument,
        absl::StrCat("messages must be a list of messages, got ", JsonTypeName(*messages)));
  }
  if (messages->empty()) {
    return MessageError(absl::StatusCode::kInvalidArgument, "messages must not be empty");
  }
  if (messages->size() > kMaxChatMessages) {
    return MessageError(absl::StatusCode::kInvalidArgument,
                        absl::StrCat("messages has ", messages->size(), " entries; at most ",
                                     kMaxChatMessages, " are allowed"));
  }
  if (ctx.text == nullptr || (!ctx.text->chat_template && ctx.chat_template == nullptr)) {
    return MessageError(absl::StatusCode::kInvalidArgument,
                        "messages cannot be rendered: this model has no chat template; use "
                        "/v1/completions with a prompt instead");
  }
  nlohmann::ordered_json converted = nlohmann::ordered_json::array();
  for (size_t i = 0; i < messages->size(); ++i) {
    ASSIGN_OR_RETURN(nlohmann::ordered_json message, ConvertMessage((*messages)[i], i));
    converted.push_back(std::move(message));
  }
  absl::StatusOr<std::string> rendered = RenderWith(ctx, converted, add_generation_prompt);
  if (!rendered.ok()) {
    // Template errors (raise_exception, e.g. roles that do not alternate) and
    // its step / time limits are the request's fault: 400, not 429 or 500.
    return MessageError(absl::StatusCode::kInvalidArgument,
                        absl::StrCat("messages could not be rendered by the model's chat "
                                     "template: ",
                                     rendered.status().message()));
  }
  return rendered;
}

}  // namespace alignserve
