// The sampling fields shared by /v1/completions and /v1/chat/completions,
// and the fields this server refuses (declared in server/openai_fields.h).
#include <cmath>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "server/openai_fields.h"

namespace alignserve {
namespace {

using nlohmann::json;

absl::Status Unsupported(const std::string& param, const std::string& what) {
  return ParamError(absl::StatusCode::kUnimplemented, param, absl::StrCat(param, " ", what));
}

// `stop`: a string or a list of strings; emptiness, length and count are
// SamplingParams::Validate's.
absl::Status ReadStop(const json& body, SamplingParams* params) {
  const json* v = FindField(body, "stop");
  if (v == nullptr) return absl::OkStatus();
  if (v->is_string()) {
    params->stop = {v->get<std::string>()};
    return absl::OkStatus();
  }
  if (!v->is_array()) return InvalidParamError("stop", "must be a string or a list of strings");
  if (v->size() > SamplingParams::kMaxStopStrings) {
    return InvalidParamError("stop", absl::StrCat("has ", v->size(), " strings; at most ",
                                                  SamplingParams::kMaxStopStrings, " are allowed"));
  }
  params->stop.clear();
  for (const json& s : *v) {
    if (!s.is_string()) {
      return InvalidParamError("stop", absl::StrCat("must be a string or a list of strings, got ",
                                                    "a list holding ", JsonTypeName(s)));
    }
    params->stop.push_back(s.get<std::string>());
  }
  return absl::OkStatus();
}

// `logit_bias`: {"<token id>": bias}, as OpenAI spells it (keys are strings).
absl::Status ReadLogitBias(const json& body, int vocab_size, SamplingParams* params) {
  const json* v = FindField(body, "logit_bias");
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_object()) {
    return InvalidParamError("logit_bias", absl::StrCat("must be an object mapping token ids to "
                                                        "biases, got ",
                                                        JsonTypeName(*v)));
  }
  if (v->size() > SamplingParams::kMaxLogitBias) {
    return InvalidParamError("logit_bias", absl::StrCat("has ", v->size(), " entries; at most ",
                                                        SamplingParams::kMaxLogitBias));
  }
  params->logit_bias.clear();
  for (const auto& [key, bias] : v->items()) {
    int64_t id = 0;
    if (!absl::SimpleAtoi(key, &id)) {
      return InvalidParamError("logit_bias",
                               absl::StrCat("key \"", key, "\" is not an integer token id"));
    }
    if (id < 0 || id >= vocab_size) {
      return InvalidParamError(
          "logit_bias",
          absl::StrCat("holds token id ", id, " outside the vocabulary [0, ", vocab_size, ")"));
    }
    if (!bias.is_number() || !std::isfinite(bias.get<double>())) {
      return InvalidParamError(
          "logit_bias", absl::StrCat("value for token ", id, " must be a finite number, got ",
                                     JsonTypeName(bias)));
    }
    const float value = static_cast<float>(bias.get<double>());
    params->logit_bias[static_cast<int32_t>(id)] = value;
  }
  return absl::OkStatus();
}

absl::Status ReadSeed(const json& body, SamplingParams* params) {
  const json* v = FindField(body, "seed");
  if (v == nullptr) return absl::OkStatus();
  if (v->is_number_unsigned()) {  // up to 2^64 - 1
    params->seed = v->get<uint64_t>();
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(int64_t seed, IntValue(*v, "seed", "seed", std::numeric_limits<int64_t>::min(),
                                          std::numeric_limits<int64_t>::max()));
  params->seed = static_cast<uint64_t>(seed);  // negative seeds wrap, as in vLLM's int64 range
  return absl::OkStatus();
}

absl::Status ReadOptionalCount(const json& body, const std::string& name, std::optional<int>* out) {
  std::optional<int64_t> value;
  RETURN_IF_ERROR(ReadInt(body, name, std::numeric_limits<int32_t>::min(),
                          std::numeric_limits<int32_t>::max(), &value));
  if (value) *out = static_cast<int>(*value);
  return absl::OkStatus();
}

}  // namespace

absl::Status ReadSamplingFields(const json& body, const ServeContext& ctx, SamplingParams* params) {
  RETURN_IF_ERROR(ReadNumber(body, "temperature", &params->temperature));
  RETURN_IF_ERROR(ReadNumber(body, "top_p", &params->top_p));
  RETURN_IF_ERROR(ReadInt32(body, "top_k", &params->top_k));
  RETURN_IF_ERROR(ReadNumber(body, "min_p", &params->min_p));
  RETURN_IF_ERROR(ReadInt32(body, "n", &params->n));
  RETURN_IF_ERROR(ReadSeed(body, params));
  RETURN_IF_ERROR(ReadStop(body, params));
  if (const json* ids = FindField(body, "stop_token_ids")) {
    ASSIGN_OR_RETURN(params->stop_token_ids,
                     TokenIdList(*ids, "stop_token_ids", "stop_token_ids", ctx.vocab_size));
  }
  RETURN_IF_ERROR(ReadNumber(body, "presence_penalty", &params->presence_penalty));
  RETURN_IF_ERROR(ReadNumber(body, "frequency_penalty", &params->frequency_penalty));
  RETURN_IF_ERROR(ReadNumber(body, "repetition_penalty", &params->repetition_penalty));
  RETURN_IF_ERROR(ReadLogitBias(body, ctx.vocab_size, params));
  RETURN_IF_ERROR(ReadBool(body, "ignore_eos", &params->ignore_eos));
  RETURN_IF_ERROR(ReadInt32(body, "min_tokens", &params->min_tokens));
  RETURN_IF_ERROR(
      ReadBool(body, "include_stop_str_in_output", &params->include_stop_str_in_output));
  return ReadOptionalCount(body, "prompt_logprobs", &params->prompt_logprobs);
}

absl::Status RejectUnsupportedFields(const json& body, ApiKind kind, int n) {
  if (kind == ApiKind::kCompletion) {
    const json* suffix = FindField(body, "suffix");
    if (suffix != nullptr && !(suffix->is_string() && suffix->get<std::string>().empty())) {
      return Unsupported("suffix",
                         "is not supported by this server (no insertion / "
                         "fill-in-the-middle)");
    }
  }
  for (const char* name : {"tools", "functions"}) {
    const json* v = FindField(body, name);
    if (v != nullptr && !(v->is_array() && v->empty())) {
      return Unsupported(name, "(tool / function calling) is not supported by this server");
    }
  }
  for (const char* name : {"tool_choice", "function_call"}) {
    const json* v = FindField(body, name);
    if (v != nullptr && !(v->is_string() && (*v == "none" || *v == "auto"))) {
      return Unsupported(name, "(tool / function calling) is not supported by this server");
    }
  }
  if (const json* format = FindField(body, "response_format")) {
    const json* type = format->is_object() ? FindField(*format, "type") : nullptr;
    if (type == nullptr || *type != "text") {
      return Unsupported("response_format",
                         "other than {\"type\": \"text\"} (structured output) is not supported");
    }
  }
  for (const char* name : {"guided_json", "guided_regex", "guided_choice", "guided_grammar",
                           "structured_outputs", "prediction", "audio"}) {
    if (FindField(body, name) != nullptr) {
      return Unsupported(name, "is not supported by this server");
    }
  }
  if (const json* beam = FindField(body, "use_beam_search"); beam != nullptr && *beam != false) {
    return Unsupported("use_beam_search", "is not supported by this server");
  }
  if (const json* best_of = FindField(body, "best_of")) {
    ASSIGN_OR_RETURN(int64_t value, IntValue(*best_of, "best_of", "best_of", 1, 1 << 20));
    if (value != n) {
      return Unsupported("best_of", absl::StrCat("must equal n (", n, "), got ", value,
                                                 ": choosing the best of several samples is "
                                                 "not supported"));
    }
  }
  return absl::OkStatus();
}

}  // namespace alignserve
