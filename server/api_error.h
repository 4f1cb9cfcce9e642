// ApiError: an error as an OpenAI-compatible server returns it, and the
// mapping from the absl::Status that the parsers and the engine produce.
//
// The body is OpenAI's error shape:
//   {"error": {"message": "...", "type": "invalid_request_error",
//              "param": "temperature" | null, "code": "model_not_found" | null}}
// The parameter a request error is about travels with the Status as a
// payload (InvalidParamError / ParamOf), so that the HTTP and gRPC front ends
// can fill "param" without parsing messages. Statuses without the payload
// (SamplingParams::Validate, the engine) name the field as the first word of
// their message; ErrorFromStatus recognises the request fields it knows.
// Thread-safety: plain values and pure functions.
#ifndef ALIGNSERVE_SERVER_API_ERROR_H_
#define ALIGNSERVE_SERVER_API_ERROR_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"

namespace alignserve {

struct ApiError {
  int http_status = 500;
  std::string message;
  std::string type;   // invalid_request_error, authentication_error, ...
  std::string param;  // "" -> null
  std::string code;   // "" -> null; "model_not_found" for an unknown model

  nlohmann::json ToJson() const;
};

// InvalidArgument / OutOfRange / Unimplemented / FailedPrecondition -> 400
// invalid_request_error; NotFound -> 404 (code model_not_found when the param
// is "model"); Unauthenticated -> 401 authentication_error; PermissionDenied
// -> 403; ResourceExhausted -> 429 rate_limit_error; Unavailable -> 503;
// DeadlineExceeded -> 504; anything else -> 500 server_error.
ApiError ErrorFromStatus(const absl::Status& status);

// `code` carrying `param` as its payload; the message should name it.
absl::Status ParamError(absl::StatusCode code, const std::string& param,
                        const std::string& message);
// InvalidArgument with the param payload. The message is "<param> <what>".
absl::Status InvalidParamError(const std::string& param, const std::string& what);
// The param payload of `status`, or "" if none.
std::string ParamOf(const absl::Status& status);
// `status` with the param payload set to its message's first word when that
// word is a request field this server knows (temperature, stop, ...); other
// statuses unchanged. For errors from SamplingParams::Validate.
absl::Status WithParamFromMessage(absl::Status status);
// An error the engine reported for one request (its stream's error event),
// as the front ends answer it. The engine has no queue of its own (the
// server's cap is AdmissionCounter), so ResourceExhausted from it means this
// request can never be served as asked (a prompt larger than the whole KV
// cache, ROBUSTNESS.md 19): InvalidArgument, a 400, not a 429 that invites
// retries. The param is taken from the message (WithParamFromMessage).
absl::Status FromEngineError(const absl::Status& status);

}  // namespace alignserve

#endif  // ALIGNSERVE_SERVER_API_ERROR_H_
