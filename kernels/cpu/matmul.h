// Matrix multiplication of float activations by a (possibly quantized)
// weight matrix stored as GGUF rows: the linear layers and the output head.
//
//   y[m, n] = x[m, k] * W[n, k]^T
//
// For quantized W the activation rows are quantized once per call to int8
// blocks matching the weight's block (see quantize_activations.h), and each
// output is a sum of exact integer block dot products times float scales;
// float W (F32/F16/BF16) uses float FMA dot products. The SIMD level is
// chosen at run time (cpu_features.h). Output columns are split across the
// pool's threads; within a thread, tiles of up to 4 rows x 4 columns reuse
// each loaded weight block for several activation rows.
//
// Accuracy: against an exact product with the dequantized weights, a
// quantized W adds at most sum over blocks of (max|x_block| / 254) *
// sum|w_block| (activation rounding) plus float rounding. Float W (BF16
// included) is exact f32 products with f32 accumulation at every ISA level:
// activations are never rounded to a narrower float, because this backend is
// the reference other backends are checked against.
// Thread-safety: MatMul may be called from several threads (each keeps its
// own scratch); calls on one pool are serialized by the pool.
#ifndef ALIGNSERVE_KERNELS_CPU_MATMUL_H_
#define ALIGNSERVE_KERNELS_CPU_MATMUL_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/dtype.h"
#include "kernels/thread_pool.h"

namespace alignserve {

// Whether MatMul accepts weights of this type.
bool MatMulSupports(DType w_type);

// OK when MatMul can take W of this type with rows of k elements (k a
// positive multiple of the type's block). Loaders call this once per tensor
// so that a bad model file is an error, not a crash.
absl::Status ValidateMatMulWeight(DType w_type, int64_t k);

// x: [m, k] f32 row-major. w: n rows of RowBytes(w_type, k) bytes.
// y: [m, n] f32 row-major (row stride n); must not alias x.
// Preconditions (checked, abort if broken): ValidateMatMulWeight(w_type, k)
// is OK, m, n >= 0. Allocates nothing once its per-thread scratch has grown
// to the largest m * k seen.
void MatMul(const float* x, int64_t m, int64_t k, const void* w, DType w_type, int64_t n, float* y,
            ThreadPool& pool);

// The ISA level whose kernel MatMul runs for this type under the active cap
// (lower than ActiveCpuIsa() where a type has no kernel at that level).
CpuIsa MatMulKernelIsa(DType w_type);

}  // namespace alignserve

#endif  // ALIGNSERVE_KERNELS_CPU_MATMUL_H_
