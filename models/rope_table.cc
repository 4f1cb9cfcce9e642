#include "models/rope_table.h"

#include <cmath>
#include <numbers>

#include "kernels/status_macros.h"

namespace alignserve {
namespace {

// transformers' llama3 rule: keep high frequencies, divide low ones by
// `factor`, and blend smoothly in between.
float Llama3Scale(float inv_freq, const RopeConfig& rope) {
  const double old_len = rope.original_max_positions;
  const double low_freq_wavelen = old_len / rope.low_freq_factor;
  const double high_freq_wavelen = old_len / rope.high_freq_factor;
  const double wavelen = 2.0 * std::numbers::pi / inv_freq;
  if (wavelen < high_freq_wavelen) return inv_freq;
  if (wavelen > low_freq_wavelen) return static_cast<float>(inv_freq / rope.factor);
  const double smooth =
      (old_len / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor);
  return static_cast<float>((1.0 - smooth) * inv_freq / rope.factor + smooth * inv_freq);
}

}  // namespace

std::vector<float> RopeInverseFrequencies(const RopeConfig& rope,
                                          std::span<const float> freq_divisors) {
  const int half = rope.rotary_dim / 2;
  std::vector<float> inv(half);
  for (int i = 0; i < half; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(rope.rotary_dim);
    inv[i] = 1.0f / std::pow(static_cast<float>(rope.theta), exponent);
    if (rope.scaling == RopeConfig::Scaling::kLlama3) inv[i] = Llama3Scale(inv[i], rope);
    if (i < static_cast<int>(freq_divisors.size())) inv[i] /= freq_divisors[i];
  }
  return inv;
}

absl::StatusOr<std::unique_ptr<RopeTableStorage>> RopeTableStorage::Build(
    Backend& backend, const RopeConfig& rope, int64_t max_positions,
    std::span<const float> freq_divisors) {
  const std::vector<float> inv = RopeInverseFrequencies(rope, freq_divisors);
  const int64_t half = static_cast<int64_t>(inv.size());
  std::vector<float> cos(max_positions * half), sin(max_positions * half);
  const float position_scale =
      rope.scaling == RopeConfig::Scaling::kLinear ? static_cast<float>(1.0 / rope.factor) : 1.0f;
  for (int64_t p = 0; p < max_positions; ++p) {
    const float pos = static_cast<float>(p) * position_scale;
    for (int64_t i = 0; i < half; ++i) {
      const float angle = pos * inv[i];  // float32 product, as transformers computes it
      cos[p * half + i] = std::cos(angle);
      sin[p * half + i] = std::sin(angle);
    }
  }
  auto storage = std::unique_ptr<RopeTableStorage>(new RopeTableStorage());
  const size_t bytes = cos.size() * sizeof(float);
  ASSIGN_OR_RETURN(storage->cos_, backend.Allocate(bytes));
  ASSIGN_OR_RETURN(storage->sin_, backend.Allocate(bytes));
  RETURN_IF_ERROR(backend.CopyToDevice(storage->cos_->data(), cos.data(), bytes));
  RETURN_IF_ERROR(backend.CopyToDevice(storage->sin_->data(), sin.data(), bytes));
  storage->table_ = RopeTable{static_cast<const float*>(storage->cos_->data()),
                              static_cast<const float*>(storage->sin_->data()), max_positions,
                              rope.rotary_dim, rope.interleaved};
  return storage;
}

}  // namespace alignserve
