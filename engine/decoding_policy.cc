#include "engine/decoding_policy.h"

#include "absl/strings/str_cat.h"
#include "engine/sampling_params.h"

namespace alignserve {

absl::Status PolicySpec::Validate() const {
  if (num_sequences < 1 || num_sequences > kMaxSequences) {
    return absl::InvalidArgumentError(absl::StrCat("policy num_sequences must be in [1, ",
                                                   kMaxSequences, "], got ", num_sequences));
  }
  if (top_logprobs < -1 || top_logprobs > SamplingParams::kMaxLogprobs) {
    return absl::InvalidArgumentError(absl::StrCat("policy top_logprobs must be in [-1, ",
                                                   SamplingParams::kMaxLogprobs, "], got ",
                                                   top_logprobs));
  }
  if (boundary_every < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("policy boundary_every must be >= 0, got ", boundary_every));
  }
  if (boundary_delimiter.size() > static_cast<size_t>(kMaxDelimiterBytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("policy boundary_delimiter is longer than ", kMaxDelimiterBytes, " bytes"));
  }
  return absl::OkStatus();
}

PolicyResult DecodingPolicy::Finalize(std::span<const SequenceResult> seqs) {
  PolicyResult result;
  for (const SequenceResult& s : seqs) {
    if (s.finish_reason != FinishReason::kAbort) result.choices.push_back(s.seq_id);
  }
  return result;
}

std::string_view ToString(TokenDecision decision) {
  switch (decision) {
    case TokenDecision::kContinue:
      return "continue";
    case TokenDecision::kStop:
      return "stop";
    case TokenDecision::kAbort:
      return "abort";
    case TokenDecision::kPause:
      return "pause";
  }
  return "unknown";
}

std::optional<size_t> FirstUnpruned(std::span<const SequenceResult> seqs) {
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (seqs[i].finish_reason != FinishReason::kAbort) return i;
  }
  return std::nullopt;
}

}  // namespace alignserve
