#include "kernels/cpu/vector_ops.h"

#include <cmath>

// Each kernel is cloned for AVX-512, AVX2+FMA and baseline x86-64; the
// loader picks the best one for the CPU. Reductions keep 16 independent
// partial sums so the compiler vectorizes them without reassociating.
#define ALIGNSERVE_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

namespace alignserve::cpu {
namespace {

constexpr int kLanes = 16;

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

inline void ScaleByWeight(const float* x, const float* weight, float scale, int64_t n,
                          float* out) {
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
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
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

}  // namespace alignserve::cpu
