#include "kernels/cpu/vector_ops.h"

#include <immintrin.h>

#include <bit>
#include <cmath>
#include <cstdint>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/exp_approx.h"
#include "kernels/cpu/fp16.h"

// Each kernel is cloned for AVX-512, AVX2+FMA and baseline x86-64; the
// loader picks the best one for the CPU. Reductions keep 16 independent
// partial sums so the compiler vectorizes them without reassociating.
#define ALIGNSERVE_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

namespace alignserve::cpu {
namespace {

constexpr int kLanes = 16;

// exp(x) clamped to ExpInRange's range: exp of less is ~1e-38 instead of
// 0, of more ~2e38 instead of infinity; NaN stays NaN.
inline float ExpF(float x) {
  x = x < -87.3f ? -87.3f : x;  // NaN compares false and passes through
  x = x > 88.3f ? 88.3f : x;
  return ExpInRange(x);
}

inline float SumOfSquares(const float* x, int64_t n) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) acc[j] += x[i + j] * x[i + j];
  }
  float s = 0.0f;
  for (int j = 0; j < kLanes; ++j) s += acc[j];
  for (; i < n; ++i) s += x[i] * x[i];
  return s;
}

inline void ScaleByWeight(const float* x, const float* weight, float scale, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * weight[i];
}

}  // namespace

ALIGNSERVE_CLONES
void RmsNormRow(const float* x, const float* weight, float eps, int64_t n, float* out) {
  const float scale = 1.0f / std::sqrt(SumOfSquares(x, n) / static_cast<float>(n) + eps);
  ScaleByWeight(x, weight, scale, n, out);
}

ALIGNSERVE_CLONES
void AddRmsNormRow(float* residual, const float* x, const float* weight, float eps, int64_t n,
                   float* out) {
  for (int64_t i = 0; i < n; ++i) residual[i] += x[i];
  const float scale = 1.0f / std::sqrt(SumOfSquares(residual, n) / static_cast<float>(n) + eps);
  ScaleByWeight(residual, weight, scale, n, out);
}

ALIGNSERVE_CLONES
void SiluMulRow(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + ExpF(-g)) * up[i];
  }
}

ALIGNSERVE_CLONES
void AddRow(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

ALIGNSERVE_CLONES
void RopeRow(float* x, int num_heads, int head_dim, int rotary_dim, const float* cos,
             const float* sin, bool interleaved) {
  const int half = rotary_dim / 2;
  for (int h = 0; h < num_heads; ++h) {
    float* v = x + static_cast<int64_t>(h) * head_dim;
    if (interleaved) {
      for (int i = 0; i < half; ++i) {
        const float a = v[2 * i], b = v[2 * i + 1];
        v[2 * i] = a * cos[i] - b * sin[i];
        v[2 * i + 1] = a * sin[i] + b * cos[i];
      }
    } else {
      for (int i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * cos[i] - b * sin[i];
        v[i + half] = b * cos[i] + a * sin[i];
      }
    }
  }
}

// vcvtps2ph with round-to-nearest-even: the same bits as F32ToFp16 for
// every input (NaN too: quieted, top payload bits kept).
static __attribute__((target("avx2,f16c"))) void F32ToFp16RowF16c(const float* x, int64_t n,
                                                                  uint16_t* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
  }
  for (; i < n; ++i) out[i] = F32ToFp16(x[i]);
}

void F32ToFp16Row(const float* x, int64_t n, uint16_t* out) {
  static const bool f16c = HostCpuFeatures().f16c && HostCpuFeatures().avx2;
  if (f16c && ActiveCpuIsa() >= CpuIsa::kAvx2) return F32ToFp16RowF16c(x, n, out);
  for (int64_t i = 0; i < n; ++i) out[i] = F32ToFp16(x[i]);
}

}  // namespace alignserve::cpu
