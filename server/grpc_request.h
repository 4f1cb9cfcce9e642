// gRPC messages of alignserve.v1 <-> the server's own request and event
// types. Requests go through the very parsers of the HTTP API
// (server/openai_request.h): each message is restated as the OpenAI JSON
// body it means and parsed there, so both front ends share one set of
// defaults (max_tokens 16 for text, the room left for chat), limits, chat
// rendering and SamplingParams::Validate, and an error names the same field.
// The few names that differ are restated in gRPC's terms: the input field
// ("text" / "token_ids" where HTTP says "prompt") and chat "logprobs" (HTTP's
// "top_logprobs"). GenerateRequest.alignment becomes HTTP's "alignment"
// object (params: the Struct as JSON, integral numbers as integers), so it
// is built by the same ApplyAlignment (server/alignment_spec.h), with the
// same default policy, "none", errors (param "alignment") and n check.
//
// Floats are checked here first: JSON has no NaN or Inf, so they would
// otherwise turn into null, which the parsers read as "absent".
// Thread-safety: pure functions (ServeContext is read-only).
#ifndef ALIGNSERVE_SERVER_GRPC_REQUEST_H_
#define ALIGNSERVE_SERVER_GRPC_REQUEST_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "alignserve/v1/alignserve.pb.h"
#include "engine/request_stream.h"
#include "models/tokenizer/tokenizer.h"
#include "server/openai_request.h"

namespace alignserve {

// InvalidArgument / NotFound / Unimplemented as the HTTP parsers give them.
absl::StatusOr<OpenAiRequest> ParseGrpcGenerate(const v1::GenerateRequest& request,
                                                const ServeContext& ctx);
absl::StatusOr<std::vector<int32_t>> ParseGrpcTokenize(const v1::TokenizeRequest& request,
                                                       const ServeContext& ctx);
absl::StatusOr<std::vector<int32_t>> ParseGrpcDetokenize(const v1::DetokenizeRequest& request,
                                                         const ServeContext& ctx);

v1::FinishReason ToProtoFinishReason(FinishReason reason);

// Appends the tokens, text and logprobs of `event` to `out` (which holds the
// same choice's earlier, unsent tokens, or nothing) and sets its finish
// reason once the choice finished. `tokenizer` spells logprob tokens; null:
// ids only. Text is made valid UTF-8 (proto3 strings must be).
void AppendEvent(const StreamEvent& event, const Tokenizer* tokenizer, v1::GenerateResponse* out);

}  // namespace alignserve

#endif  // ALIGNSERVE_SERVER_GRPC_REQUEST_H_
