// Internal: AVX-512 tile kernels for the K-quants Q4_K, Q5_K and Q6_K against
// kQ8x256 activations (int8, one float scale per 256, int16 sums of each 16),
// shared by matmul_avx512.cc (kVnni = false) and matmul_ext_avx512.cc
// (kVnni = true).
//
// Per 256-element super-block and (row, column) pair the kernels form one
// exact int32 vector whose lane total is the scalar path's integer sum
//   sum_j scale_j * sum_{i in sub-block j} q_i a_i   (- the offset terms),
// then apply the float scales once: d_w * d_a (and dmin_w * d_a for the
// Q4_K / Q5_K mins). 64 elements at a time: vpmaddubsw (unsigned q x signed
// a -> pairs of int16), then vpmaddwd by the sub-block's 16-bit scale
// (vpdpwssd with VNNI, which also accumulates).
//
// Bounds (no saturation, no overflow): q <= 63 so a vpmaddubsw pair is at
// most 2 * 63 * 127 = 16002 < 2^15; scales are <= 63 (Q4_K/Q5_K) or in
// [-128, 127] (Q6_K), so a vpmaddwd lane is < 2^22 and a super-block adds at
// most 256 * 63 * 127 * 128 < 2^31 over all lanes.
// Everything has internal linkage (see matmul_simd_blocks.h).
// Thread-safety: pure functions.
#ifndef ALIGNSERVE_KERNELS_CPU_MATMUL_KQUANT_AVX512_IMPL_H_
#define ALIGNSERVE_KERNELS_CPU_MATMUL_KQUANT_AVX512_IMPL_H_

#include <immintrin.h>

#include <type_traits>

#include "kernels/cpu/matmul_kernels.h"
#include "kernels/cpu/matmul_simd_blocks.h"

namespace alignserve {
namespace {

// Int16 lanes 16h .. 16h + 15 take scale index first + h (h = 0, 1).
inline __m512i ScaleIndex32(int first) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(static_cast<short>(first))),
                            _mm256_set1_epi16(static_cast<short>(first + 1)), 1);
}

// Int16 lanes 8h .. 8h + 7 take scale index first + h (h = 0..3).
inline __m512i ScaleIndex16(int first) {
  const __m256i lo = _mm256_set_m128i(_mm_set1_epi16(static_cast<short>(first + 1)),
                                      _mm_set1_epi16(static_cast<short>(first)));
  const __m256i hi = _mm256_set_m128i(_mm_set1_epi16(static_cast<short>(first + 3)),
                                      _mm_set1_epi16(static_cast<short>(first + 2)));
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

// acc + sum of adjacent products of (u8 q x s8 a) pairs times 16-bit scales.
template <bool kVnni>
inline __m512i DotScaled(__m512i acc, __m512i q, __m512i a, __m512i scales) {
  const __m512i pairs = _mm512_maddubs_epi16(q, a);
  if constexpr (kVnni) {
    return _mm512_dpwssd_epi32(acc, pairs, scales);
  } else {
    return _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, scales));
  }
}

inline __m512i Widen(__m256i v) { return _mm512_inserti64x4(_mm512_setzero_si512(), v, 0); }

// Q4_K and Q5_K (Block picks). Group g (0..3) of 64 elements is the low
// nibbles (sub-block 2g) then the high nibbles (2g + 1) of qs[32g .. 32g+31];
// Q5_K adds 16 where bit 2g (resp. 2g + 1) of qh[l] is set.
template <class Block, bool kVnni, int R, int C>
void TileQ45K512(const PreparedActivations& a, int64_t row0, const uint8_t* w, size_t w_stride,
                 float* y, int64_t ldy) {
  constexpr bool kFive = std::is_same_v<Block, BlockQ5_K>;
  const int64_t nb = a.k / kQKK;
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  // The mins pair with the 16-element sums: int16 lane i takes min i / 2.
  const __m256i min_index =
      _mm256_setr_epi16(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  }
  for (int64_t b = 0; b < nb; ++b) {
    const Block* blk[C];
    __m512i scales_mins[C];  // int16 lanes 0-7 scales, 8-15 mins, rest 0
    for (int c = 0; c < C; ++c) {
      blk[c] = reinterpret_cast<const Block*>(w + c * w_stride) + b;
      alignas(16) uint8_t bytes[16];
      UnpackKQuantScalesMins(blk[c]->scales, bytes);
      scales_mins[c] =
          Widen(_mm256_cvtepu8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(bytes))));
    }
    __m512i isum[R][C];
    for (int r = 0; r < R; ++r) {
      for (int c = 0; c < C; ++c) isum[r][c] = _mm512_setzero_si512();
    }
    for (int g = 0; g < 4; ++g) {
      for (int c = 0; c < C; ++c) {
        const __m256i packed =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk[c]->qs + 32 * g));
        __m512i q = _mm512_and_si512(
            _mm512_inserti64x4(_mm512_castsi256_si512(packed), _mm256_srli_epi16(packed, 4), 1),
            low4);
        if constexpr (kFive) {
          const __m512i qh = _mm512_broadcast_i64x4(
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk[c]->qh)));
          const __m512i bit = _mm512_inserti64x4(
              _mm512_castsi256_si512(_mm256_set1_epi8(static_cast<char>(1 << (2 * g)))),
              _mm256_set1_epi8(static_cast<char>(1 << (2 * g + 1))), 1);
          q = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(qh, bit), q, _mm512_set1_epi8(16));
        }
        const __m512i scales = _mm512_permutexvar_epi16(ScaleIndex32(2 * g), scales_mins[c]);
        for (int r = 0; r < R; ++r) {
          const __m512i av = _mm512_loadu_si512(a.qs + (row0 + r) * a.k + b * kQKK + 64 * g);
          isum[r][c] = DotScaled<kVnni>(isum[r][c], q, av, scales);
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      const int64_t row = row0 + r;
      const float da = a.d[row * nb + b];
      const __m256i sums16 = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(a.group_sum + row * (a.k / 16) + b * 16));
      for (int c = 0; c < C; ++c) {
        const __m256i mins =
            _mm256_permutexvar_epi16(min_index, _mm512_castsi512_si256(scales_mins[c]));
        const __m512 min_sums = _mm512_cvtepi32_ps(Widen(_mm256_madd_epi16(sums16, mins)));
        acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r][c]),
                                    _mm512_set1_ps(HalfToFloat(blk[c]->d) * da), acc[r][c]);
        acc[r][c] =
            _mm512_fnmadd_ps(min_sums, _mm512_set1_ps(HalfToFloat(blk[c]->dmin) * da), acc[r][c]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) y[r * ldy + c] = _mm512_reduce_add_ps(acc[r][c]);
  }
}

// Q6_K. Half h (0, 1) of 128 elements: ql[64h .. 64h+63] low nibbles are
// elements 0-63 of the half, high nibbles 64-127; the 2 high bits of
// element 32s + l come from bits 2s.. of qh[32h + l]. q = 0..63 stands for
// q - 32: the kernel sums scale_j * q * a and subtracts
// 32 * sum_j scale_j * sum_{sub-block j} a from the activation sums.
template <bool kVnni, int R, int C>
void TileQ6K512(const PreparedActivations& a, int64_t row0, const uint8_t* w, size_t w_stride,
                float* y, int64_t ldy) {
  const int64_t nb = a.k / kQKK;
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  const __m512i bits45 = _mm512_set1_epi8(0x30);
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  }
  for (int64_t b = 0; b < nb; ++b) {
    const BlockQ6_K* blk[C];
    __m512i scales16[C];  // int16 lanes 0-15: the sub-block scales, rest 0
    for (int c = 0; c < C; ++c) {
      blk[c] = reinterpret_cast<const BlockQ6_K*>(w + c * w_stride) + b;
      scales16[c] = Widen(
          _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[c]->scales))));
    }
    __m512i isum[R][C];
    for (int r = 0; r < R; ++r) {
      for (int c = 0; c < C; ++c) isum[r][c] = _mm512_setzero_si512();
    }
    for (int h = 0; h < 2; ++h) {
      for (int c = 0; c < C; ++c) {
        const __m512i ql = _mm512_loadu_si512(blk[c]->ql + 64 * h);
        const __m256i qh_bytes =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk[c]->qh + 32 * h));
        // [qh, qh >> 2]: bits 0-1 then 4-5 of each byte are the high bits of
        // elements 0-63 and 64-127 of the half.
        const __m512i qh =
            _mm512_inserti64x4(_mm512_castsi256_si512(qh_bytes), _mm256_srli_epi16(qh_bytes, 2), 1);
        const __m512i q_lo = _mm512_or_si512(_mm512_and_si512(ql, low4),
                                             _mm512_and_si512(_mm512_slli_epi16(qh, 4), bits45));
        const __m512i q_hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), low4),
                                             _mm512_and_si512(qh, bits45));
        const __m512i s_lo = _mm512_permutexvar_epi16(ScaleIndex16(8 * h), scales16[c]);
        const __m512i s_hi = _mm512_permutexvar_epi16(ScaleIndex16(8 * h + 4), scales16[c]);
        for (int r = 0; r < R; ++r) {
          const int8_t* act = a.qs + (row0 + r) * a.k + b * kQKK + 128 * h;
          isum[r][c] = DotScaled<kVnni>(isum[r][c], q_lo, _mm512_loadu_si512(act), s_lo);
          isum[r][c] = DotScaled<kVnni>(isum[r][c], q_hi, _mm512_loadu_si512(act + 64), s_hi);
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      const int64_t row = row0 + r;
      const float da = a.d[row * nb + b];
      const __m256i sums16 = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(a.group_sum + row * (a.k / 16) + b * 16));
      for (int c = 0; c < C; ++c) {
        const __m256i offset =
            _mm256_slli_epi32(_mm256_madd_epi16(sums16, _mm512_castsi512_si256(scales16[c])), 5);
        const __m512i total = _mm512_sub_epi32(isum[r][c], Widen(offset));
        acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(total),
                                    _mm512_set1_ps(HalfToFloat(blk[c]->d) * da), acc[r][c]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) y[r * ldy + c] = _mm512_reduce_add_ps(acc[r][c]);
  }
}

template <class Block, bool kVnni>
struct Q45K512 {
  template <int R, int C>
  struct K {
    static void Run(const PreparedActivations& a, int64_t row0, const uint8_t* w, size_t ws,
                    float* y, int64_t ldy) {
      TileQ45K512<Block, kVnni, R, C>(a, row0, w, ws, y, ldy);
    }
  };
};

template <bool kVnni>
struct Q6K512 {
  template <int R, int C>
  struct K {
    static void Run(const PreparedActivations& a, int64_t row0, const uint8_t* w, size_t ws,
                    float* y, int64_t ldy) {
      TileQ6K512<kVnni, R, C>(a, row0, w, ws, y, ldy);
    }
  };
};

// An integer and a float accumulator per (row, column): 2 x 8 of the 32 zmm.
constexpr int kMaxKQuantProducts512 = 8;

template <bool kVnni>
TileKernel KQuantTileKernel512(DType w_type) {
  const ActivationFormat q8k = ActivationFormat::kQ8x256;
  switch (w_type) {
    case DType::kQ4_K:
      return {&TileByRows<Q45K512<BlockQ4_K, kVnni>::template K, kMaxKQuantProducts512>, q8k};
    case DType::kQ5_K:
      return {&TileByRows<Q45K512<BlockQ5_K, kVnni>::template K, kMaxKQuantProducts512>, q8k};
    case DType::kQ6_K:
      return {&TileByRows<Q6K512<kVnni>::template K, kMaxKQuantProducts512>, q8k};
    default:
      return {};
  }
}

}  // namespace
}  // namespace alignserve

#endif  // ALIGNSERVE_KERNELS_CPU_MATMUL_KQUANT_AVX512_IMPL_H_
