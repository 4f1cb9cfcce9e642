// Row-wise float kernels of the CPU backend: normalization, activation,
// residual add, rotary embedding. Each processes whole rows and is
// parallelized by the caller over rows; the inner loops are compiled for
// several ISA levels and chosen at load time (target_clones).
// Thread-safety: pure functions over disjoint rows.
#ifndef ALIGNSERVE_KERNELS_CPU_VECTOR_OPS_H_
#define ALIGNSERVE_KERNELS_CPU_VECTOR_OPS_H_

#include <cstdint>

namespace alignserve::cpu {

// out = x / sqrt(mean(x^2) + eps) * weight, over n elements.
void RmsNormRow(const float* x, const float* weight, float eps, int64_t n, float* out);
// residual += x; out = RmsNormRow(residual).
void AddRmsNormRow(float* residual, const float* x, const float* weight, float eps, int64_t n,
                   float* out);
// out[i] = gate[i] * sigmoid(gate[i]) * up[i] (a vectorized exp within 2
// ulp of std::exp; sigmoid of |gate| > 87 saturates to 0 or 1).
void SiluMulRow(const float* gate, const float* up, int64_t n, float* out);
// x[i] += y[i].
void AddRow(float* x, const float* y, int64_t n);
// Rotates num_heads heads of head_dim at x by the angles whose cos/sin are
// given for rotary_dim / 2 frequencies. Only the first rotary_dim elements
// of each head rotate.
void RopeRow(float* x, int num_heads, int head_dim, int rotary_dim, const float* cos,
             const float* sin, bool interleaved);

// out[i] = F32ToFp16(x[i]) (fp16.h: round to nearest even, overflow to
// infinity, NaN kept quiet), by F16C where the CPU has it.
void F32ToFp16Row(const float* x, int64_t n, uint16_t* out);

}  // namespace alignserve::cpu

#endif  // ALIGNSERVE_KERNELS_CPU_VECTOR_OPS_H_
