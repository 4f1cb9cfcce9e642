// The `alignment` extension object of /v1/completions and
// /v1/chat/completions ({"policy", "params", "reward_model"}), and its
// shorthand `policy` field ("NAME" or {"name", "params"}) (declared in
// server/openai_fields.h, specified in server/openai_request.h), read into
// an AlignmentSpec and built by ApplyAlignment (server/alignment_spec.h),
// as the gRPC front end's alignment is. The policy is built here, at parse
// time, so that every error it can raise is the request's 400 before
// anything reaches the engine.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "server/alignment_spec.h"
#include "server/openai_fields.h"

namespace alignserve {
namespace {

using nlohmann::json;

constexpr char kParam[] = "policy";
constexpr size_t kMaxKeyShown = 64;  // bytes of an unknown key quoted back

// The text of a chat message's content: a string, or its text parts joined.
std::string ContentText(const json& content) {
  if (content.is_string()) return content.get<std::string>();
  std::string text;
  if (!content.is_array()) return text;
  for (const json& part : content) {
    if (!part.is_object()) continue;
    const auto it = part.find("text");
    if (it != part.end() && it->is_string()) text += it->get<std::string>();
  }
  return text;
}

// What the reward model reads as the prompt: the last user message of a
// chat (the rendered template would make the judge read the template's
// markup), the prompt text of a completion. "" falls back to the prompt
// tokens decoded (BestOfNOptions::prompt).
std::string RewardPrompt(const json& body, const OpenAiRequest& req, size_t prompt) {
  if (req.kind == ApiKind::kCompletion) return req.prompt_texts[prompt];
  const json* messages = FindField(body, "messages");
  if (messages == nullptr || !messages->is_array()) return "";
  for (auto it = messages->rbegin(); it != messages->rend(); ++it) {
    if (!it->is_object()) continue;
    const auto role = it->find("role");
    const auto content = it->find("content");
    if (role != it->end() && *role == "user" && content != it->end()) {
      return ContentText(*content);
    }
  }
  return "";
}

// "policy": "NAME" | {"name": "NAME", "params": {...} | null}.
absl::Status ReadPolicySpec(const json& field, AlignmentSpec* spec) {
  if (field.is_string()) {
    spec->policy = field.get<std::string>();
    return absl::OkStatus();
  }
  if (!field.is_object()) {
    return InvalidParamError(kParam, absl::StrCat("must be a policy name or an object {\"name\", "
                                                  "\"params\"}, got ",
                                                  JsonTypeName(field)));
  }
  for (const auto& [key, value] : field.items()) {
    if (key != "name" && key != "params") {
      return InvalidParamError(kParam, absl::StrCat("has an unknown key ",
                                                    json(key.substr(0, kMaxKeyShown))
                                                        .dump(-1, ' ', /*ensure_ascii=*/true,
                                                              json::error_handler_t::replace),
                                                    "; allowed keys: name, params"));
    }
  }
  const json* name_field = FindField(field, "name");
  if (name_field == nullptr || !name_field->is_string()) {
    return InvalidParamError(kParam, "name is required and must be a string");
  }
  spec->policy = name_field->get<std::string>();
  const json* params_field = FindField(field, "params");
  if (params_field != nullptr) spec->params = *params_field;
  return absl::OkStatus();
}

// "alignment": {"policy": "NAME", "params": {...} | null, "reward_model":
// "judge"} (issue 5's shape, sent by OpenAI clients through extra_body).
absl::Status ReadAlignmentObject(const json& field, AlignmentSpec* spec) {
  constexpr char kAlignment[] = "alignment";
  if (!field.is_object()) {
    return InvalidParamError(kAlignment, absl::StrCat("must be an object {\"policy\", \"params\", "
                                                      "\"reward_model\"}, got ",
                                                      JsonTypeName(field)));
  }
  for (const auto& [key, value] : field.items()) {
    if (key != "policy" && key != "params" && key != "reward_model") {
      return InvalidParamError(
          kAlignment,
          absl::StrCat("has an unknown key ",
                       json(key.substr(0, kMaxKeyShown))
                           .dump(-1, ' ', /*ensure_ascii=*/true, json::error_handler_t::replace),
                       "; allowed keys: policy, params, reward_model"));
    }
  }
  const json* policy = FindField(field, "policy");
  if (policy == nullptr || !policy->is_string()) {
    return InvalidParamError(kAlignment, "policy is required and must be a string");
  }
  spec->policy = policy->get<std::string>();
  if (const json* p = FindField(field, "params"); p != nullptr) spec->params = *p;
  if (const json* reward = FindField(field, "reward_model"); reward != nullptr) {
    if (!reward->is_string()) {
      return InvalidParamError(
          kAlignment, absl::StrCat("reward_model must be a string, got ", JsonTypeName(*reward)));
    }
    spec->reward_model = reward->get<std::string>();
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ReadPolicyField(const json& body, const ServeContext& ctx, OpenAiRequest* req) {
  const json* field = FindField(body, kParam);
  const json* alignment = FindField(body, "alignment");
  if (field != nullptr && alignment != nullptr) {
    return InvalidParamError("alignment", "give either alignment or policy, not both");
  }
  std::optional<AlignmentSpec> spec;
  if (alignment != nullptr) {
    RETURN_IF_ERROR(ReadAlignmentObject(*alignment, &spec.emplace()));
  } else if (field != nullptr) {
    RETURN_IF_ERROR(ReadPolicySpec(*field, &spec.emplace()));
  }
  std::vector<std::string> reward_prompts;
  for (size_t i = 0; i < req->prompts.size(); ++i) {
    reward_prompts.push_back(RewardPrompt(body, *req, i));
  }
  return ApplyAlignment(spec, reward_prompts, ctx, field != nullptr ? kParam : "alignment", req);
}

}  // namespace alignserve
