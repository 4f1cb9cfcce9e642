// The gRPC face of the server's errors: absl::Status (from the request
// parsers, SamplingParams::Validate and the engine) -> grpc::Status, the
// analogue of ErrorFromStatus (server/api_error.h) for HTTP.
//
// Codes map one to one where both have them (InvalidArgument ->
// INVALID_ARGUMENT, NotFound -> NOT_FOUND, ResourceExhausted ->
// RESOURCE_EXHAUSTED, Unavailable -> UNAVAILABLE, Unauthenticated ->
// UNAUTHENTICATED, ...). The message keeps the field first ("temperature
// must be ..."); when the status carries a param payload that the message
// does not start with, "<param>: " is prefixed so clients can always find it.
// Thread-safety: pure functions.
#ifndef ALIGNSERVE_SERVER_GRPC_STATUS_H_
#define ALIGNSERVE_SERVER_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace alignserve {

grpc::StatusCode GrpcCodeOf(absl::StatusCode code);
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace alignserve

#endif  // ALIGNSERVE_SERVER_GRPC_STATUS_H_
