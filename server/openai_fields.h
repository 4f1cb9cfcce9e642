// Building blocks of the OpenAI request parsers (server/openai_request.h):
// typed reads of optional JSON fields with OpenAI's leniency (null is
// absent, integral floats are integers), the sampling fields shared by
// completions and chat, the fields this server refuses, and chat messages
// rendered through the model's template. Internal to server/openai_*.cc.
//
// Every error is InvalidArgument (or Unimplemented for refused features)
// carrying the field as its param (server/api_error.h) and naming it first
// in the message: "temperature must be a number, got string".
// Thread-safety: pure functions.
#ifndef ALIGNSERVE_SERVER_OPENAI_FIELDS_H_
#define ALIGNSERVE_SERVER_OPENAI_FIELDS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/sampling_params.h"
#include "nlohmann/json.hpp"
#include "server/openai_request.h"

namespace alignserve {

// The field `name` of `obj`, or nullptr when it is absent or null.
const nlohmann::json* FindField(const nlohmann::json& obj, const std::string& name);

// Each Read* leaves *out untouched when the field is absent or null.
absl::Status ReadBool(const nlohmann::json& obj, const std::string& name, bool* out);
absl::Status ReadString(const nlohmann::json& obj, const std::string& name, std::string* out);
// Finite numbers only (a JSON literal like 1e999 parses to inf).
absl::Status ReadNumber(const nlohmann::json& obj, const std::string& name, float* out);
// Integers in [lo, hi]; an integral float counts.
absl::Status ReadInt(const nlohmann::json& obj, const std::string& name, int64_t lo, int64_t hi,
                     std::optional<int64_t>* out);
absl::Status ReadInt32(const nlohmann::json& obj, const std::string& name, int32_t* out);

// `value` as an integer in [lo, hi], `what` naming it in errors
// ("prompt[3]"); `param` is the error's param.
absl::StatusOr<int64_t> IntValue(const nlohmann::json& value, const std::string& param,
                                 const std::string& what, int64_t lo, int64_t hi);
// A JSON array of token ids, each in [0, vocab_size); `what` names it.
absl::StatusOr<std::vector<int32_t>> TokenIdList(const nlohmann::json& value,
                                                 const std::string& param, const std::string& what,
                                                 int vocab_size);

// The body as a JSON object: InvalidArgument for anything else.
absl::StatusOr<nlohmann::json> ParseRequestObject(std::string_view body);
// The served model's name when `model` is absent or matches; NotFound with
// OpenAI's "The model `x` does not exist." otherwise.
absl::StatusOr<std::string> CheckModel(const nlohmann::json& body, const ServeContext& ctx);

// Unimplemented (400) for features a client would expect to change the
// output: suffix, tools / functions, response_format other than text,
// guided decoding, beam search, best_of != n. Call after n is known.
absl::Status RejectUnsupportedFields(const nlohmann::json& body, ApiKind kind, int n);

// temperature, top_p, top_k, min_p, n, seed, stop, stop_token_ids, the three
// penalties, logit_bias, ignore_eos, min_tokens, include_stop_str_in_output,
// prompt_logprobs into *params. max_tokens and logprobs are per API and
// read by the parsers; Validate runs at the end of parsing.
absl::Status ReadSamplingFields(const nlohmann::json& body, const ServeContext& ctx,
                                SamplingParams* params);

// `messages` (system / user / assistant, content a string or text parts)
// rendered by the model's chat template. Errors have param "messages": bad
// shapes and roles, a model without a template, and template failures
// (including its step and time limits: ROBUSTNESS.md item 11).
absl::StatusOr<std::string> RenderChatMessages(const nlohmann::json* messages,
                                               bool add_generation_prompt, const ServeContext& ctx);

// The `alignment` object or its `policy` shorthand (server/openai_request.h):
// builds req->policies, one per prompt, through ApplyAlignment
// (server/alignment_spec.h), so call it once the prompts are read. Both
// absent or null: the server's default policy (none unless configured).
absl::Status ReadPolicyField(const nlohmann::json& body, const ServeContext& ctx,
                             OpenAiRequest* req);

// The JSON type of `value` as OpenAI error messages spell it.
const char* JsonTypeName(const nlohmann::json& value);

}  // namespace alignserve

#endif  // ALIGNSERVE_SERVER_OPENAI_FIELDS_H_
