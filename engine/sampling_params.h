// SamplingParams: how one sequence turns logits into its next token.
// Validated once when a request arrives (Validate), then read-only.
// Thread-safety: a plain value.
#ifndef ALIGNSERVE_ENGINE_SAMPLING_PARAMS_H_
#define ALIGNSERVE_ENGINE_SAMPLING_PARAMS_H_

#include <cstdint>
#include <optional>

#include "absl/status/status.h"

namespace alignserve {

struct SamplingParams {
  float temperature = 1.0f;  // 0: greedy
  int top_k = 0;             // 0 or -1: off
  float top_p = 1.0f;        // (0, 1]
  float min_p = 0.0f;        // [0, 1]
  std::optional<uint64_t> seed;  // per-sequence RNG seed; none: drawn at random

  bool greedy() const { return temperature == 0.0f; }
  // InvalidArgument naming the field for NaN, Inf or out-of-range values.
  absl::Status Validate(int vocab_size) const;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_ENGINE_SAMPLING_PARAMS_H_
