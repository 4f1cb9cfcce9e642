#include "server/api_error.h"

#include <array>
#include <optional>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace alignserve {
namespace {

constexpr char kParamPayloadUrl[] = "type.alignserve/openai.param";

// Request fields whose name may open a message from SamplingParams::Validate
// or from the parsers; the first word of such a message is the param.
constexpr std::array<std::string_view, 30> kKnownParams = {
    "model",
    "prompt",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "n",
    "seed",
    "stop",
    "stop_token_ids",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "prompt_logprobs",
    "ignore_eos",
    "min_tokens",
    "skip_special_tokens",
    "user",
    "stream",
    "stream_options",
    "echo",
    "suffix",
    "best_of",
    "tokens",
};

nlohmann::json StringOrNull(const std::string& s) {
  return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s);
}

ApiError Make(int http_status, std::string type, const absl::Status& status) {
  ApiError e;
  e.http_status = http_status;
  e.type = std::move(type);
  e.message = std::string(status.message());
  e.param = ParamOf(status);
  return e;
}

}  // namespace

nlohmann::json ApiError::ToJson() const {
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", StringOrNull(param)},
            {"code", StringOrNull(code)}}}};
}

ApiError ErrorFromStatus(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kFailedPrecondition:
      return Make(400, "invalid_request_error", status);
    case absl::StatusCode::kNotFound: {
      ApiError e = Make(404, "invalid_request_error", status);
      if (e.param == "model") e.code = "model_not_found";
      return e;
    }
    case absl::StatusCode::kUnauthenticated:
      return Make(401, "authentication_error", status);
    case absl::StatusCode::kPermissionDenied:
      return Make(403, "permission_error", status);
    case absl::StatusCode::kResourceExhausted: {
      ApiError e = Make(429, "rate_limit_error", status);
      e.code = "rate_limit_exceeded";
      return e;
    }
    case absl::StatusCode::kUnavailable:
      return Make(503, "service_unavailable_error", status);
    case absl::StatusCode::kDeadlineExceeded:
      return Make(504, "timeout_error", status);
    default:
      return Make(500, "server_error", status);
  }
}

absl::Status ParamError(absl::StatusCode code, const std::string& param,
                        const std::string& message) {
  absl::Status status(code, message);
  status.SetPayload(kParamPayloadUrl, absl::Cord(param));
  return status;
}

absl::Status InvalidParamError(const std::string& param, const std::string& what) {
  return ParamError(absl::StatusCode::kInvalidArgument, param, absl::StrCat(param, " ", what));
}

std::string ParamOf(const absl::Status& status) {
  auto payload = status.GetPayload(kParamPayloadUrl);
  return payload ? std::string(*payload) : std::string();
}

absl::Status FromEngineError(const absl::Status& status) {
  if (status.code() != absl::StatusCode::kResourceExhausted) return WithParamFromMessage(status);
  return WithParamFromMessage(absl::InvalidArgumentError(status.message()));
}

absl::Status WithParamFromMessage(absl::Status status) {
  if (status.ok() || status.GetPayload(kParamPayloadUrl)) return status;
  const std::string message(status.message());
  const std::string first = message.substr(0, message.find(' '));
  for (std::string_view known : kKnownParams) {
    if (first == known) {
      status.SetPayload(kParamPayloadUrl, absl::Cord(std::string(known)));
      break;
    }
  }
  return status;
}

}  // namespace alignserve
