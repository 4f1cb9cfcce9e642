#include "server/grpc_request.h"

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/struct.pb.h"
#include "kernels/status_macros.h"
#include "models/tokenizer/utf8.h"
#include "server/api_error.h"

namespace alignserve {
namespace {

using nlohmann::json;

template <typename Repeated>
json JsonArray(const Repeated& values) {
  json out = json::array();
  for (const auto& v : values) out.push_back(v);
  return out;
}

// `status` about HTTP's field `from` restated about gRPC's field `to`.
absl::Status RenameParam(absl::Status status, const std::string& from, const std::string& to) {
  if (status.ok() || ParamOf(status) != from) return status;
  std::string message(status.message());
  if (absl::StartsWith(message, from)) message = to + message.substr(from.size());
  return ParamError(status.code(), to, message);
}

absl::Status PutFloat(json& body, const std::string& name, bool has, float value) {
  if (!has) return absl::OkStatus();
  if (!std::isfinite(value)) {
    return InvalidParamError(name, absl::StrCat("must be a finite number, got ", value));
  }
  body[name] = value;
  return absl::OkStatus();
}

json MessagesJson(const v1::ChatMessages& messages) {
  json out = json::array();
  for (const v1::ChatMessage& m : messages.messages()) {
    out.push_back({{"role", m.role()}, {"content", m.content()}});
  }
  return out;
}

absl::Status PutSampling(const v1::SamplingParameters& s, bool chat, json& body) {
  RETURN_IF_ERROR(PutFloat(body, "temperature", s.has_temperature(), s.temperature()));
  RETURN_IF_ERROR(PutFloat(body, "top_p", s.has_top_p(), s.top_p()));
  RETURN_IF_ERROR(PutFloat(body, "min_p", s.has_min_p(), s.min_p()));
  RETURN_IF_ERROR(
      PutFloat(body, "presence_penalty", s.has_presence_penalty(), s.presence_penalty()));
  RETURN_IF_ERROR(
      PutFloat(body, "frequency_penalty", s.has_frequency_penalty(), s.frequency_penalty()));
  RETURN_IF_ERROR(
      PutFloat(body, "repetition_penalty", s.has_repetition_penalty(), s.repetition_penalty()));
  if (s.has_max_tokens()) body["max_tokens"] = s.max_tokens();
  if (s.has_top_k()) body["top_k"] = s.top_k();
  if (s.has_n()) body["n"] = s.n();
  if (s.has_seed()) body["seed"] = s.seed();
  if (s.has_min_tokens()) body["min_tokens"] = s.min_tokens();
  if (s.stop_size() > 0) body["stop"] = JsonArray(s.stop());
  if (s.stop_token_ids_size() > 0) {
    body["stop_token_ids"] = JsonArray(s.stop_token_ids());
  }
  if (!s.logit_bias().empty()) {
    json bias = json::object();
    for (const auto& [id, value] : s.logit_bias()) {
      if (!std::isfinite(value)) {
        return InvalidParamError("logit_bias",
                                 absl::StrCat("value for token ", id, " must be a finite number"));
      }
      bias[std::to_string(id)] = value;
    }
    body["logit_bias"] = std::move(bias);
  }
  if (s.has_logprobs()) {
    if (chat) {
      body["logprobs"] = true;
      body["top_logprobs"] = s.logprobs();
    } else {
      body["logprobs"] = s.logprobs();
    }
  }
  if (s.ignore_eos()) body["ignore_eos"] = true;
  if (s.include_stop_str_in_output()) body["include_stop_str_in_output"] = true;
  return absl::OkStatus();
}

// A Struct value as the JSON the HTTP API would have received. Struct
// numbers are doubles: integral ones become JSON integers, which the
// policies' integer parameters require (policy_params.h). Nesting is bounded
// by the message size limit and protobuf's own recursion limit.
absl::StatusOr<json> JsonOf(const google::protobuf::Value& value) {
  constexpr double kExactIntegers = 9007199254740992.0;  // 2^53
  switch (value.kind_case()) {
    case google::protobuf::Value::kNumberValue: {
      const double v = value.number_value();
      if (!std::isfinite(v)) {
        return InvalidParamError("alignment",
                                 absl::StrCat("params must hold finite numbers, got ", v));
      }
      if (v == std::floor(v) && std::fabs(v) < kExactIntegers) return json(static_cast<int64_t>(v));
      return json(v);
    }
    case google::protobuf::Value::kStringValue:
      return json(value.string_value());
    case google::protobuf::Value::kBoolValue:
      return json(value.bool_value());
    case google::protobuf::Value::kStructValue: {
      json out = json::object();
      for (const auto& [key, field] : value.struct_value().fields()) {
        ASSIGN_OR_RETURN(out[key], JsonOf(field));
      }
      return out;
    }
    case google::protobuf::Value::kListValue: {
      json out = json::array();
      for (const google::protobuf::Value& item : value.list_value().values()) {
        ASSIGN_OR_RETURN(json converted, JsonOf(item));
        out.push_back(std::move(converted));
      }
      return out;
    }
    default:  // null_value, or no kind set
      return json(nullptr);
  }
}

// GenerateRequest.alignment as the HTTP API's "alignment" object, so that
// it is read and built by the same code (server/alignment_spec.h).
absl::Status PutAlignment(const v1::Alignment& alignment, json& body) {
  json object = {{"policy", alignment.policy()}};
  if (alignment.has_params()) {
    google::protobuf::Value params;
    *params.mutable_struct_value() = alignment.params();
    ASSIGN_OR_RETURN(object["params"], JsonOf(params));
  }
  if (!alignment.reward_model().empty()) object["reward_model"] = alignment.reward_model();
  body["alignment"] = std::move(object);
  return absl::OkStatus();
}

std::string ValidUtf8(const std::string& bytes) {
  if (IsValidUtf8(bytes)) return bytes;
  std::string out;
  AppendLossyUtf8(bytes, &out);
  return out;
}

}  // namespace

absl::StatusOr<OpenAiRequest> ParseGrpcGenerate(const v1::GenerateRequest& request,
                                                const ServeContext& ctx) {
  json body = json::object();
  if (!request.model().empty()) body["model"] = request.model();
  const bool chat = request.input_case() == v1::GenerateRequest::kMessages;
  std::string input_name = "text";
  switch (request.input_case()) {
    case v1::GenerateRequest::kText:
      body["prompt"] = request.text();
      break;
    case v1::GenerateRequest::kTokenIds:
      input_name = "token_ids";
      body["prompt"] = JsonArray(request.token_ids().ids());
      break;
    case v1::GenerateRequest::kMessages:
      body["messages"] = MessagesJson(request.messages());
      if (request.messages().has_add_generation_prompt()) {
        body["add_generation_prompt"] = request.messages().add_generation_prompt();
      }
      break;
    default:
      return InvalidParamError("input", "is required: one of text, token_ids or messages");
  }
  RETURN_IF_ERROR(PutSampling(request.sampling(), chat, body));
  if (request.has_skip_special_tokens()) {
    body["skip_special_tokens"] = request.skip_special_tokens();
  }
  if (request.has_alignment()) RETURN_IF_ERROR(PutAlignment(request.alignment(), body));
  const std::string text = body.dump();
  absl::StatusOr<OpenAiRequest> parsed =
      chat ? ParseChatRequest(text, ctx) : ParseCompletionRequest(text, ctx);
  if (!parsed.ok()) {
    absl::Status s = RenameParam(parsed.status(), "prompt", input_name);
    return RenameParam(std::move(s), "top_logprobs", "logprobs");
  }
  return parsed;
}

absl::StatusOr<std::vector<int32_t>> ParseGrpcTokenize(const v1::TokenizeRequest& request,
                                                       const ServeContext& ctx) {
  json body = json::object();
  if (!request.model().empty()) body["model"] = request.model();
  if (request.has_add_special_tokens()) body["add_special_tokens"] = request.add_special_tokens();
  switch (request.input_case()) {
    case v1::TokenizeRequest::kText:
      body["prompt"] = request.text();
      break;
    case v1::TokenizeRequest::kMessages:
      body["messages"] = MessagesJson(request.messages());
      if (request.messages().has_add_generation_prompt()) {
        body["add_generation_prompt"] = request.messages().add_generation_prompt();
      }
      break;
    default:
      return InvalidParamError("input", "is required: one of text or messages");
  }
  absl::StatusOr<std::vector<int32_t>> ids = ParseTokenizeRequest(body.dump(), ctx);
  if (!ids.ok()) return RenameParam(ids.status(), "prompt", "text");
  return ids;
}

absl::StatusOr<std::vector<int32_t>> ParseGrpcDetokenize(const v1::DetokenizeRequest& request,
                                                         const ServeContext& ctx) {
  json body = json::object();
  if (!request.model().empty()) body["model"] = request.model();
  body["tokens"] = JsonArray(request.token_ids());
  absl::StatusOr<std::vector<int32_t>> ids = ParseDetokenizeRequest(body.dump(), ctx);
  if (!ids.ok()) return RenameParam(ids.status(), "tokens", "token_ids");
  return ids;
}

v1::FinishReason ToProtoFinishReason(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return v1::FINISH_REASON_STOP;
    case FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case FinishReason::kAbort:
      return v1::FINISH_REASON_ABORT;
    default:
      return v1::FINISH_REASON_UNSPECIFIED;
  }
}

void AppendEvent(const StreamEvent& event, const Tokenizer* tokenizer, v1::GenerateResponse* out) {
  out->set_index(event.index);
  for (int32_t id : event.token_ids) out->add_token_ids(id);
  out->mutable_text()->append(ValidUtf8(event.text));
  for (size_t i = 0; i < event.logprobs.size(); ++i) {
    const PositionLogprobs& p = event.logprobs[i];
    v1::TokenLogprob* lp = out->add_logprobs();
    const int32_t id = i < event.token_ids.size() ? event.token_ids[i] : -1;
    lp->set_token_id(id);
    if (tokenizer != nullptr && id >= 0) lp->set_token(ValidUtf8(tokenizer->TokenBytes(id)));
    lp->set_logprob(p.logprob);
    lp->set_rank(p.rank);
    for (const TokenLogprob& alt : p.top) {
      v1::TopLogprob* top = lp->add_top_logprobs();
      top->set_token_id(alt.token);
      if (tokenizer != nullptr) top->set_token(ValidUtf8(tokenizer->TokenBytes(alt.token)));
      top->set_logprob(alt.logprob);
    }
  }
  if (event.finish_reason != FinishReason::kNone) {
    out->set_finish_reason(ToProtoFinishReason(event.finish_reason));
  }
}

}  // namespace alignserve
