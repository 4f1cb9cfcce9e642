// MatMulI16: f32 activations times Q4_0 / Q4_1 / Q8_0 weights, with the
// activations rounded to 16-bit integers and every block's products summed
// exactly in integers. On AVX512-VNNI one vpdpwssd does 32 multiply-adds,
// twice an f32 FMA, so batched (compute-bound) products run up to ~1.6x the
// speed of MatMulExact; single-row products stay bound by weight bytes.
//
// The numbers, for activation row r, weight row (output) j, block b of 32:
//   amax = max |x_i| over the block;  inv = 32767 / amax;  s = amax / 32767;
//   q_i  = nearbyint(x_i * inv) (ties to even), so |q_i| <= 32767 and
//          |x_i - s * q_i| <= s / 2  (2^-16 of the block's largest value);
//   c    = s * float(sum_i q_i);
//   the weight block is w_i = d * u_i + mn with integers u_i
//          (Q4_1: u = q, mn = m;  Q4_0: u = q, mn = -8 d;  Q8_0: u = q, no mn);
//   isum = sum_i u_i * q_i, exact in int32;
//   y    = +0, then for b = 0, 1, ... in order:
//          t = float(isum) * s;  y = fma(t, d, y);  y = fma(mn, c, y) (Q4 only).
// A block whose activations are all zero, or whose largest is below 2^-100,
// has s = c = q = 0; a block holding a NaN or an infinity has s = c = NaN and
// q = 0, so every output of that row is NaN.
//
// Every path (the portable scalar reference and AVX-512) performs exactly
// these operations (integer sums are exact in any order), so a row's result
// is bit for bit the same on every ISA level, for every m, row position and
// thread count: batch invariant, as MatMulExact is. Against the exact
// product, |y - x.w| <= sum_b (s_b / 2) sum_i |w_i| plus f32 rounding of the
// per-block terms. Each activation is kept to 2^-16 of its block's largest;
// llama.cpp's int8 (MatMul, matmul.h) keeps 2^-8 of it, and bfloat16, which
// GPU serving multiplies in, 2^-9 of each value itself.
//
// Thread-safety: as MatMulExact (thread-local scratch; calls sharing one
// pool are serialized by the pool).
#ifndef ALIGNSERVE_KERNELS_CPU_MATMUL_I16_H_
#define ALIGNSERVE_KERNELS_CPU_MATMUL_I16_H_

#include <cstddef>
#include <cstdint>
#include <span>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/matmul_part.h"
#include "kernels/dtype.h"
#include "kernels/thread_pool.h"

namespace alignserve {

// Q4_0, Q4_1 and Q8_0.
bool MatMulI16Supports(DType w_type);

// kAvx512 when the active level has AVX512-VNNI (the fast kernels), else
// kScalar (the reference: correct, same bits, slow).
CpuIsa MatMulI16KernelIsa();

// x: [m, k] f32 row-major; every part's w has n rows of RowBytes(w_type, k)
// bytes and y is [m, n] (row stride n), fully written, never read, aliasing
// neither x nor w. Up to kMaxSharedParts weights share the input: it is
// rounded once and their columns split over the pool together.
// Preconditions (checked, abort if broken): MatMulI16Supports(w_type), k a
// positive multiple of 32, m >= 0, n >= 0, at most kMaxSharedParts parts.
void MatMulI16Shared(const float* x, int64_t m, int64_t k, std::span<const MatMulPart> parts,
                     ThreadPool& pool);

void MatMulI16(const float* x, int64_t m, int64_t k, const void* w, DType w_type, int64_t n,
               float* y, ThreadPool& pool);

// ---------------------------------------------------------------------------
// Internal: the pieces shared by matmul_i16*.cc and the tests.
namespace matmul_i16_internal {

inline constexpr int kBlock = 32;
// Below this a block's largest activation rounds its whole block to zero
// (32767 / amax would overflow past 2^-128 or so): 2^-100.
inline constexpr float kTinyAmax = 7.8886090522101181e-31f;
// Outputs (weight rows) per tile: the 16 lanes of an AVX-512 accumulator.
inline constexpr int64_t kTileCols = 16;

// Within each group of 4 activations, q is stored in the order 0, 2, 1, 3,
// so that the dword pairs (q0, q2) and (q1, q3) line up with the weight
// pairs the AVX-512 kernel unpacks. Position of element e of a row.
inline int64_t PermutedIndex(int64_t e) {
  static constexpr int kOrder[4] = {0, 2, 1, 3};
  return (e & ~int64_t{3}) | kOrder[e & 3];
}

// One block of a rounded activation row: its 32 values (permuted), s, c.
struct ActivationBlock {
  int16_t q[kBlock];
  float s;
  float c;
};

// The rounded activation rows: blocks [m, k / 32].
struct QuantizedRows {
  const ActivationBlock* blocks = nullptr;
  int64_t m = 0;
  int64_t k = 0;
};

// Rounds one row of k (a multiple of 32) activations into k / 32 blocks.
// Both versions write the same bytes.
void QuantizeRowScalar(const float* x, int64_t k, ActivationBlock* out);
void QuantizeRowAvx512(const float* x, int64_t k, ActivationBlock* out);

// y[r * ldy + j] for every row r of a and j in [c0, c0 + cols), cols <= 16:
// weight row j starts at w + j * w_stride.
using TileFn = void (*)(const QuantizedRows& a, const uint8_t* w, size_t w_stride, int64_t c0,
                        int64_t cols, float* y, int64_t ldy);

// Null when the type is unsupported. The AVX-512 table may only be used
// where the CPU has AVX512-VNNI.
TileFn ScalarTile(DType w_type);
TileFn Avx512VnniTile(DType w_type);

}  // namespace matmul_i16_internal
}  // namespace alignserve

#endif  // ALIGNSERVE_KERNELS_CPU_MATMUL_I16_H_
