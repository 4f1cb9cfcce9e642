#include "kernels/cpu/quantize_activations.h"

#include <algorithm>
#include <cmath>

namespace alignserve {
namespace {

// Adding and subtracting 1.5 * 2^23 rounds a float of magnitude < 2^22 to the
// nearest integer, ties to even, in the default rounding mode. Unlike
// std::nearbyint it vectorizes on baseline x86-64 (no SSE4.1 needed). The
// project never builds with -ffast-math, which would fold it away.
inline float RoundToEven(float v) {
  constexpr float kMagic = 12582912.0f;
  return (v + kMagic) - kMagic;
}

}  // namespace

int ActivationBlock(ActivationFormat format) {
  switch (format) {
    case ActivationFormat::kQ8x32:
      return 32;
    case ActivationFormat::kQ8x256:
      return 256;
    default:
      return 1;
  }
}

void QuantizeRowQ8(const float* x, int64_t k, int block, int8_t* qs, float* d) {
  for (int64_t b = 0; b < k / block; ++b) {
    const float* xb = x + b * block;
    float amax = 0.0f;
    for (int i = 0; i < block; ++i) amax = std::max(amax, std::fabs(xb[i]));
    const float scale = amax / 127.0f;
    const float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
    d[b] = scale;
    int8_t* qb = qs + b * block;
    for (int i = 0; i < block; ++i) {
      // |xb[i] * inv| <= 127 up to one rounding, so the clamp only guards
      // against that last ulp.
      const float q = std::clamp(RoundToEven(xb[i] * inv), -127.0f, 127.0f);
      qb[i] = static_cast<int8_t>(q);
    }
  }
}

const PreparedActivations& ActivationBuffer::Prepare(ActivationFormat format, const float* x,
                                                     int64_t m, int64_t k, ThreadPool& pool) {
  view_ = PreparedActivations{};
  view_.format = format;
  view_.m = m;
  view_.k = k;
  x_ = x;
  const size_t elems = static_cast<size_t>(m * k);
  switch (format) {
    case ActivationFormat::kF32:
      view_.f32 = x;
      return view_;
    case ActivationFormat::kQ8x32:
    case ActivationFormat::kQ8x256: {
      const int64_t blocks = m * (k / ActivationBlock(format));
      if (qs_.size() < elems) qs_.resize(elems);
      if (d_.size() < static_cast<size_t>(blocks)) d_.resize(blocks);
      view_.qs = qs_.data();
      view_.d = d_.data();
      if (format == ActivationFormat::kQ8x32) {
        if (block_sum_.size() < static_cast<size_t>(blocks)) block_sum_.resize(blocks);
        view_.block_sum = block_sum_.data();
      } else {
        const size_t groups = static_cast<size_t>(m * (k / 16));
        if (group_sum_.size() < groups) group_sum_.resize(groups);
        view_.group_sum = group_sum_.data();
      }
      break;
    }
  }
  // Quantizing is O(m k) against the matmul's O(m n k): only worth threads
  // for prefill-sized m. The lambda captures one pointer so std::function
  // stores it inline (no allocation).
  ActivationBuffer* self = this;
  if (m >= 8 && pool.num_threads() > 1) {
    pool.ParallelFor(m, 4, [self](int64_t begin, int64_t end) { self->PrepareRows(begin, end); });
  } else {
    PrepareRows(0, m);
  }
  return view_;
}

void ActivationBuffer::PrepareRows(int64_t begin, int64_t end) {
  const int64_t k = view_.k;
  const int block = ActivationBlock(view_.format);
  const int64_t nb = k / block;
  for (int64_t r = begin; r < end; ++r) {
    int8_t* qs = qs_.data() + r * k;
    float* d = d_.data() + r * nb;
    QuantizeRowQ8(x_ + r * k, k, block, qs, d);
    if (view_.format == ActivationFormat::kQ8x32) {
      for (int64_t b = 0; b < nb; ++b) {
        int sum = 0;
        for (int i = 0; i < 32; ++i) sum += qs[b * 32 + i];
        block_sum_[r * nb + b] = d[b] * static_cast<float>(sum);
      }
    } else {
      for (int64_t g = 0; g < k / 16; ++g) {
        int sum = 0;
        for (int i = 0; i < 16; ++i) sum += qs[g * 16 + i];
        group_sum_[r * (k / 16) + g] = static_cast<int16_t>(sum);
      }
    }
  }
}

}  // namespace alignserve
