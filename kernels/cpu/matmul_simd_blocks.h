// Internal to the SIMD matmul kernels: loading one 32-element weight block
// (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) into 32 bytes in element order, the
// horizontal sums, and TileByRows, which turns a runtime rows x cols tile into
// calls of kernels with compile-time shapes. Included only by .cc files
// compiled with AVX2 or AVX-512 flags; everything has internal linkage so
// that the same template built with different -m flags in two files never
// merges at link time.
// Thread-safety: pure functions.
#ifndef ALIGNSERVE_KERNELS_CPU_MATMUL_SIMD_BLOCKS_H_
#define ALIGNSERVE_KERNELS_CPU_MATMUL_SIMD_BLOCKS_H_

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/quant_blocks.h"
#include "kernels/cpu/quantize_activations.h"

namespace alignserve {
namespace {

inline float HalfToFloat(uint16_t h) { return _cvtsh_ss(h); }

inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 16 packed bytes -> 32 nibbles: low nibbles are elements 0..15, high 16..31.
inline __m256i UnpackNibbles(const uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
}

// 0x10 in byte j where bit j of the 32-bit qh is set.
inline __m256i FifthBits(const uint8_t* qh_bytes) {
  uint32_t qh;
  std::memcpy(&qh, qh_bytes, 4);
  // Spread byte j / 8 of qh to bytes j, then test bit j % 8 of each.
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(qh)),
      _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
  const __m256i probe = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
  const __m256i is_set = _mm256_cmpeq_epi8(_mm256_or_si256(spread, probe), _mm256_set1_epi64x(-1));
  return _mm256_and_si256(is_set, _mm256_set1_epi8(0x10));
}

// Format policies: Load() gives the 32 integer weights, signed (q - offset)
// when kSigned, else unsigned q with the weight d * q + m. kNibbles: the
// weights are exactly the 4-bit qs (AVX-512 unpacks two blocks at once).
struct Q4_0Format {
  static constexpr bool kNibbles = true;
  using Block = BlockQ4_0;
  static constexpr bool kSigned = true;
  static constexpr bool kHasMin = false;
  static __m256i Load(const Block* b) {
    return _mm256_sub_epi8(UnpackNibbles(b->qs), _mm256_set1_epi8(8));
  }
  static float Min(const Block*) { return 0.0f; }
};

struct Q4_1Format {
  static constexpr bool kNibbles = true;
  using Block = BlockQ4_1;
  static constexpr bool kSigned = false;
  static constexpr bool kHasMin = true;
  static __m256i Load(const Block* b) { return UnpackNibbles(b->qs); }
  static float Min(const Block* b) { return HalfToFloat(b->m); }
};

struct Q5_0Format {
  static constexpr bool kNibbles = false;
  using Block = BlockQ5_0;
  static constexpr bool kSigned = true;
  static constexpr bool kHasMin = false;
  static __m256i Load(const Block* b) {
    const __m256i q = _mm256_or_si256(UnpackNibbles(b->qs), FifthBits(b->qh));
    return _mm256_sub_epi8(q, _mm256_set1_epi8(16));
  }
  static float Min(const Block*) { return 0.0f; }
};

struct Q5_1Format {
  static constexpr bool kNibbles = false;
  using Block = BlockQ5_1;
  static constexpr bool kSigned = false;
  static constexpr bool kHasMin = true;
  static __m256i Load(const Block* b) {
    return _mm256_or_si256(UnpackNibbles(b->qs), FifthBits(b->qh));
  }
  static float Min(const Block* b) { return HalfToFloat(b->m); }
};

struct Q8_0Format {
  static constexpr bool kNibbles = false;
  using Block = BlockQ8_0;
  static constexpr bool kSigned = true;
  static constexpr bool kHasMin = false;
  static __m256i Load(const Block* b) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qs));
  }
  static float Min(const Block*) { return 0.0f; }
};

// Splits a tile of `cols` columns into kernel calls K<R, C>::Run of at most
// kC columns, where R * kC <= kMaxProducts (at least 1, at most 4): each
// kernel keeps one or two vector accumulators per (row, column) pair in
// registers, so kMaxProducts is what the register file holds.
template <template <int, int> class K, int kMaxProducts, int R>
void ColumnLoop(const PreparedActivations& a, int64_t row0, const uint8_t* w, size_t w_stride,
                int cols, float* y, int64_t ldy) {
  constexpr int kC = std::clamp(kMaxProducts / R, 1, 4);
  int c = 0;
  for (; c + kC <= cols; c += kC) K<R, kC>::Run(a, row0, w + c * w_stride, w_stride, y + c, ldy);
  for (; c < cols; ++c) K<R, 1>::Run(a, row0, w + c * w_stride, w_stride, y + c, ldy);
}

// A TileFn (matmul_kernels.h) built from K<R, C> for R in 1..4.
template <template <int, int> class K, int kMaxProducts>
void TileByRows(const PreparedActivations& a, int64_t row0, int rows, const uint8_t* w,
                size_t w_stride, int cols, float* y, int64_t ldy) {
  switch (rows) {
    case 1:
      return ColumnLoop<K, kMaxProducts, 1>(a, row0, w, w_stride, cols, y, ldy);
    case 2:
      return ColumnLoop<K, kMaxProducts, 2>(a, row0, w, w_stride, cols, y, ldy);
    case 3:
      return ColumnLoop<K, kMaxProducts, 3>(a, row0, w, w_stride, cols, y, ldy);
    default:
      return ColumnLoop<K, kMaxProducts, 4>(a, row0, w, w_stride, cols, y, ldy);
  }
}

}  // namespace
}  // namespace alignserve

#endif  // ALIGNSERVE_KERNELS_CPU_MATMUL_SIMD_BLOCKS_H_
