#include "engine/sampling_params.h"

#include <cmath>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "models/tokenizer/utf8.h"

namespace alignserve {
namespace {

// Every message names the request field, so the front end can put it in the
// OpenAI error's "param".
absl::Status Invalid(const char* field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, " ", what));
}

absl::Status CheckFloat(const char* field, float value, float lo, float hi, bool lo_open = false) {
  const bool above_lo = lo_open ? value > lo : value >= lo;
  if (std::isfinite(value) && above_lo && value <= hi) return absl::OkStatus();
  return Invalid(field, absl::StrCat("must be a finite number in ", lo_open ? "(" : "[", lo, ", ",
                                     hi, "], got ", value));
}

absl::Status CheckTokenId(const char* field, int32_t id, int vocab_size) {
  if (id >= 0 && id < vocab_size) return absl::OkStatus();
  return Invalid(
      field, absl::StrCat("holds token id ", id, " outside the vocabulary [0, ", vocab_size, ")"));
}

absl::Status CheckLogprobCount(const char* field, const std::optional<int>& n) {
  if (!n || (*n >= 0 && *n <= SamplingParams::kMaxLogprobs)) return absl::OkStatus();
  return Invalid(field,
                 absl::StrCat("must be in [0, ", SamplingParams::kMaxLogprobs, "], got ", *n));
}

absl::Status ValidateStops(const SamplingParams& p, int vocab_size) {
  if (p.stop.size() > SamplingParams::kMaxStopStrings) {
    return Invalid("stop", absl::StrCat("has ", p.stop.size(), " strings; at most ",
                                        SamplingParams::kMaxStopStrings, " are allowed"));
  }
  for (const std::string& s : p.stop) {
    if (s.empty()) return Invalid("stop", "must not contain an empty string");
    if (s.size() > SamplingParams::kMaxStopStringBytes) {
      return Invalid("stop",
                     absl::StrCat("strings must be at most ", SamplingParams::kMaxStopStringBytes,
                                  " bytes, got one of ", s.size()));
    }
    if (!IsValidUtf8(s)) return Invalid("stop", "strings must be valid UTF-8");
  }
  if (p.stop_token_ids.size() > SamplingParams::kMaxStopTokenIds) {
    return Invalid("stop_token_ids", absl::StrCat("has ", p.stop_token_ids.size(), " ids; at most ",
                                                  SamplingParams::kMaxStopTokenIds));
  }
  for (int32_t id : p.stop_token_ids)
    RETURN_IF_ERROR(CheckTokenId("stop_token_ids", id, vocab_size));
  return absl::OkStatus();
}

absl::Status ValidateLogitBias(const SamplingParams& p, int vocab_size) {
  if (p.logit_bias.size() > SamplingParams::kMaxLogitBias) {
    return Invalid("logit_bias", absl::StrCat("has ", p.logit_bias.size(), " entries; at most ",
                                              SamplingParams::kMaxLogitBias));
  }
  for (const auto& [id, bias] : p.logit_bias) {
    RETURN_IF_ERROR(CheckTokenId("logit_bias", id, vocab_size));
    RETURN_IF_ERROR(CheckFloat("logit_bias", bias, -100.0f, 100.0f));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SamplingParams::Validate(int vocab_size) const {
  RETURN_IF_ERROR(CheckFloat("temperature", temperature, 0.0f, kMaxTemperature));
  if (top_k < -1 || top_k > vocab_size) {
    return Invalid("top_k", absl::StrCat("must be -1, 0 or in [1, ", vocab_size, "], got ", top_k));
  }
  RETURN_IF_ERROR(CheckFloat("top_p", top_p, 0.0f, 1.0f, /*lo_open=*/true));
  RETURN_IF_ERROR(CheckFloat("min_p", min_p, 0.0f, 1.0f));
  RETURN_IF_ERROR(CheckFloat("repetition_penalty", repetition_penalty, 0.0f, kMaxRepetitionPenalty,
                             /*lo_open=*/true));
  RETURN_IF_ERROR(CheckFloat("presence_penalty", presence_penalty, -2.0f, 2.0f));
  RETURN_IF_ERROR(CheckFloat("frequency_penalty", frequency_penalty, -2.0f, 2.0f));
  if (n < 1 || n > kMaxN) {
    return Invalid("n", absl::StrCat("must be in [1, ", kMaxN, "], got ", n));
  }
  if (max_tokens < 1) {
    return Invalid("max_tokens", absl::StrCat("must be at least 1, got ", max_tokens));
  }
  if (min_tokens < 0 || min_tokens > max_tokens) {
    return Invalid("min_tokens",
                   absl::StrCat("must be in [0, max_tokens = ", max_tokens, "], got ", min_tokens));
  }
  RETURN_IF_ERROR(CheckLogprobCount("logprobs", logprobs));
  RETURN_IF_ERROR(CheckLogprobCount("prompt_logprobs", prompt_logprobs));
  RETURN_IF_ERROR(ValidateLogitBias(*this, vocab_size));
  return ValidateStops(*this, vocab_size);
}

}  // namespace alignserve
