// Rotary embedding frequencies and the cos/sin tables built from them.
//
// Frequencies follow Hugging Face's rope initializers ("default", "linear",
// "llama3"), computed in float32 in the same order as transformers so that
// tables agree with the reference to the last bits; a GGUF file's
// rope_freqs.weight (llama.cpp's form of Llama-3 scaling) divides them.
// Thread-safety: pure functions; RopeTableStorage is immutable once built.
#ifndef ALIGNSERVE_MODELS_ROPE_TABLE_H_
#define ALIGNSERVE_MODELS_ROPE_TABLE_H_

#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "models/model_config.h"

namespace alignserve {

// inv_freq[i] for i < rotary_dim / 2, scaled per rope.scaling, then divided
// by freq_divisors[i] when given (same length).
std::vector<float> RopeInverseFrequencies(const RopeConfig& rope,
                                          std::span<const float> freq_divisors = {});

// The device tables of a model: cos and sin of position * inv_freq for
// positions [0, max_positions). Linear scaling divides positions by factor.
class RopeTableStorage {
 public:
  static absl::StatusOr<std::unique_ptr<RopeTableStorage>> Build(
      Backend& backend, const RopeConfig& rope, int64_t max_positions,
      std::span<const float> freq_divisors = {});
  const RopeTable& table() const { return table_; }

 private:
  RopeTable table_;
  std::unique_ptr<DeviceBuffer> cos_;
  std::unique_ptr<DeviceBuffer> sin_;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_MODELS_ROPE_TABLE_H_
