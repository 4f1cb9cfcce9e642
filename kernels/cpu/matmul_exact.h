// Exact matrix multiplication of float activations by a GGUF weight matrix:
//
//   y[m, n] = x[m, k] * dequant(W)[n, k]^T        in f32 arithmetic,
//
// where dequant(W) is bit for bit what DequantizeRow (dequantize.h) returns
// (NaN weights stay NaN but may differ in the quiet bit).
// Unlike MatMul (matmul.h), activations are never rounded to int8, so the
// only difference from "dequantize W to f32, then an f32 GEMM" is the order
// of the float additions: |y - y_exact| <= (k + 2) * 2^-24 * sum_i |x_i w_i|.
//
// Batch invariance: within one ISA level, y[r, :] depends only on x[r, :]
// and W, never on m, on r, on the other rows of x or on the thread count:
// the same activation row gives the same bits alone (m = 1, decode) or in a
// batch of any size at any position (prefill), as a serving engine needs for
// results that do not depend on what else is batched. Each level fixes one
// canonical order of the float operations for every output, and both paths
// below follow it exactly (results still differ between levels):
//  * scalar: s = 0; s += x_i * w_i for i = 0 .. k-1 (one running f32 sum;
//    both paths call the same Dot function).
//  * AVX2: one 8-lane accumulator; acc = fma(x[i, i+8), w[i, i+8), acc) for
//    i = 0, 8, 16, ... in increasing k, never split, the last step on x and w
//    lanes zero-filled past k; then the halving tree: lane j += lane j + 4,
//    then j + 2, then j + 1.
//  * AVX-512: the same with one 16-lane accumulator, 16 elements per FMA and
//    the tree j + 8, j + 4, j + 2, j + 1 (what _mm512_reduce_add_ps does).
// The accumulator starts at +0; a decoded block enters it in increasing k.
// Prefill may cut k into chunks for the caches, but it parks and reloads
// the vector accumulators between chunks, so the order stays the same.
// (Checked by tests/kernels/matmul_exact_test.cc, "batch invariance".)
//
// Two paths, both chosen per call:
//  * m <= kMaxDecodeRows (decode, memory bound): each weight block is decoded
//    straight from its bytes into SIMD registers (nibble unpack, int->float,
//    one fused multiply-add that reproduces DequantizeRow's rounding) and
//    multiplied into all m activation rows; no weight is written to memory.
//  * m > kMaxDecodeRows (prefill, compute bound): each thread dequantizes a
//    tile of kTileCols weight rows into a thread-local f32 buffer (L1/L2
//    resident) and runs a register-blocked f32 micro-kernel over all m rows.
// Work is split over output columns (n) across the pool; products too small
// to repay waking a worker run on the calling thread. The SIMD level comes
// from ActiveCpuIsa() (scalar, AVX2, AVX-512), checked once per call.
//
// Thread-safety: MatMulExact may be called from several threads (scratch is
// thread-local); calls sharing one pool are serialized by the pool.
#ifndef ALIGNSERVE_KERNELS_CPU_MATMUL_EXACT_H_
#define ALIGNSERVE_KERNELS_CPU_MATMUL_EXACT_H_

#include <cstddef>
#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/matmul_part.h"
#include "kernels/dtype.h"
#include "kernels/thread_pool.h"

namespace alignserve {

// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, F16, BF16, F32.
bool MatMulExactSupports(DType w_type);

// OK when MatMulExact takes W of this type with rows of k elements (k a
// positive multiple of the type's block); InvalidArgument otherwise.
absl::Status ValidateMatMulExactWeight(DType w_type, int64_t k);

// x: [m, k] f32 row-major. w: n rows of RowBytes(w_type, k) bytes.
// y: [m, n] f32 row-major (row stride n); must not alias x or w; every
// element is written (y is never read). Preconditions (checked, abort if
// broken): ValidateMatMulExactWeight(w_type, k) is OK, m, n >= 0.
// Allocates nothing once each thread's scratch has grown to kTileCols rows
// of the largest k seen (and, once k is cut into chunks at m > kMaxDecodeRows:
// past 768 with AVX-512, 384 with AVX2, a buffer of at most 32 KB that
// carries accumulators between them).
void MatMulExact(const float* x, int64_t m, int64_t k, const void* w, DType w_type, int64_t n,
                 float* y, ThreadPool& pool);

// MatMulExact of one input against up to kMaxSharedParts weights (the Q/K/V
// or gate/up projections of a layer) as one job: the columns of all of them
// are split over the pool together, so small products no longer run one
// after the other on one thread and the pool joins once. Each y equals
// MatMulExact(x, m, k, w, w_type, n, y) bit for bit. Preconditions as
// MatMulExact's, for every part (checked, abort if broken).
void MatMulExactShared(const float* x, int64_t m, int64_t k, std::span<const MatMulPart> parts,
                       ThreadPool& pool);

// The ISA level whose kernels MatMulExact runs under the active cap.
CpuIsa MatMulExactKernelIsa();

// ---------------------------------------------------------------------------
// Internal: the per-ISA kernel table shared by matmul_exact*.cc and the tests.
namespace matmul_exact_internal {

// Rows of x handled by the fused decode path.
inline constexpr int64_t kMaxDecodeRows = 3;
// Weight rows dequantized per prefill tile (kTileCols * k floats of scratch):
// 8 keeps a tile of rows up to 768 long in L1 whole (matmul_exact_avx512.cc).
inline constexpr int64_t kTileCols = 8;
// Dequantized tile rows are padded with zeros to a multiple of this.
inline constexpr int64_t kTilePad = 16;

// y[r * ldy + c] = sum_i x[r * k + i] * dequant(w row c)[i] for r < m
// (1 <= m <= kMaxDecodeRows), c in [c_begin, c_end), summed in the level's
// canonical order (bit-equal to GemmFn on the dequantized rows). Row c
// starts at w + c * w_stride.
using DecodeFn = void (*)(const float* x, int64_t m, int64_t k, const uint8_t* w, size_t w_stride,
                          int64_t c_begin, int64_t c_end, float* y, int64_t ldy);

// out[i * ld + j] = dequant(w row i)[j] for i < rows, j < k (bit-equal to
// DequantizeRow), and 0 for k <= j < ld.
using DequantFn = void (*)(const uint8_t* w, size_t w_stride, int64_t rows, int64_t k, float* out,
                           int64_t ld);

// y[r * ldy + c] = sum_i x[r * k + i] * wd[c * ldw + i] for r < m,
// c < cols <= kTileCols, in the level's canonical order; wd rows are zero
// from k to RoundUp(k, kTilePad) (the kernel may read them).
using GemmFn = void (*)(const float* x, int64_t m, int64_t k, const float* wd, int64_t ldw,
                        int64_t cols, float* y, int64_t ldy);

struct Kernels {
  DecodeFn decode = nullptr;
  DequantFn dequant = nullptr;
  GemmFn gemm = nullptr;
};

// The weight types MatMulExact supports, each with the name of its block
// decoder in the SIMD levels' files (matmul_exact_avx2.cc,
// matmul_exact_avx512.cc): every level builds its table from this one list,
// X(type, decoder) per entry.
#define ALIGNSERVE_MATMUL_EXACT_TYPES(X)                                                    \
  X(kF32, DecF32)                                                                           \
  X(kF16, DecF16)                                                                           \
  X(kBF16, DecBF16) X(kQ4_0, DecQ4_0) X(kQ4_1, DecQ4_1) X(kQ5_0, DecQ5_0) X(kQ5_1, DecQ5_1) \
      X(kQ8_0, DecQ8_0) X(kQ4_K, DecQ45_K<false>) X(kQ5_K, DecQ45_K<true>) X(kQ6_K, DecQ6_K)

// Kernels for one level; all members null when the type is unsupported.
// Avx2/Avx512 may only be called where the hardware has that level.
Kernels ScalarKernels(DType w_type);
Kernels Avx2Kernels(DType w_type);
Kernels Avx512Kernels(DType w_type);  // needs AVX-512 F/BW/VL/DQ

// The table MatMulExact uses for this type under the active ISA cap.
Kernels ActiveKernels(DType w_type);

}  // namespace matmul_exact_internal
}  // namespace alignserve

#endif  // ALIGNSERVE_KERNELS_CPU_MATMUL_EXACT_H_
