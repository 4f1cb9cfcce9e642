// Internal: the AVX-512 tile kernels, shared by matmul_avx512.cc (F/BW/VL/DQ
// only) and matmul_ext_avx512.cc (the same plus VNNI, enabled there with
// #pragma GCC target); the K-quants are in matmul_kquant_avx512_impl.h.
// Integer formats process two 32-element blocks per zmm register: half of
// the int32 lanes hold block b's partial sums, half block b + 1's (which
// half: PairScaleIndex), so one FMA applies both blocks' scales. With kVnni
// the u8 x s8 products are summed by vpdpbusd, otherwise by vpmaddubsw +
// vpmaddwd (no saturation: 2 * 128 * 127 < 32768). AVX-512 has no vpsignb:
// a * sign(w) is a masked negate. An odd trailing block uses the 256-bit form.
// Everything has internal linkage (see matmul_simd_blocks.h).
// Thread-safety: pure functions.
#ifndef ALIGNSERVE_KERNELS_CPU_MATMUL_AVX512_IMPL_H_
#define ALIGNSERVE_KERNELS_CPU_MATMUL_AVX512_IMPL_H_

#include <immintrin.h>

#include <cstring>

#include "kernels/cpu/fp16.h"
#include "kernels/cpu/matmul_kernels.h"
#include "kernels/cpu/matmul_kquant_avx512_impl.h"
#include "kernels/cpu/matmul_simd_blocks.h"

namespace alignserve {
namespace {

inline __m512 PairBroadcast(float lo, float hi) {
  return _mm512_insertf32x8(_mm512_set1_ps(lo), _mm256_set1_ps(hi), 1);
}

template <bool kVnni>
inline __m512i DotU8S8(__m512i u, __m512i s) {
  if constexpr (kVnni) {
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s);
  } else {
    return _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1));
  }
}

template <bool kVnni>
inline __m256i DotU8S8(__m256i u, __m256i s) {
  if constexpr (kVnni) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
  } else {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
  }
}

// Blocks b and b + 1 of one weight row as 64 bytes. Nibble formats come out
// interleaved, [b 0-15 | b+1 0-15 | b 16-31 | b+1 16-31], which takes one
// shift and one mask for both blocks; PairActivations puts the activations
// in the same order (once per row, shared by every column of a tile).
template <class F>
inline __m512i LoadPair(const typename F::Block* blk) {
  if constexpr (F::kNibbles) {
    const __m256i packed = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[0].qs))),
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[1].qs)), 1);
    const __m512i q = _mm512_and_si512(
        _mm512_inserti64x4(_mm512_castsi256_si512(packed), _mm256_srli_epi16(packed, 4), 1),
        _mm512_set1_epi8(0x0f));
    return F::kSigned ? _mm512_sub_epi8(q, _mm512_set1_epi8(8)) : q;
  } else {
    return _mm512_inserti64x4(_mm512_castsi256_si512(F::Load(blk)), F::Load(blk + 1), 1);
  }
}

template <class F>
inline __m512i PairActivations(const int8_t* qs) {
  const __m512i a = _mm512_loadu_si512(qs);
  if constexpr (F::kNibbles) {
    return _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 4, 5, 2, 3, 6, 7), a);
  } else {
    return a;
  }
}

// Int32 lane j of a pair's sums covers bytes 4j..4j+3 in LoadPair's order,
// so it belongs to block b or b + 1; the index picks that block's scale,
// d0 da0 (0) or d1 da1 (2), from [d0 da0, m0 s0, d1 da1, m1 s1].
template <class F>
inline __m512i PairScaleIndex() {
  if constexpr (F::kNibbles) {
    return _mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 0, 0, 0, 0, 2, 2, 2, 2);
  } else {
    return _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
  }
}

// The fp16 scales of blocks b, b + 1 as floats [d0, m0, d1, m1] with one
// conversion (m = 0 for formats without a min). d and m are adjacent in
// BlockQ4_1 / BlockQ5_1, so one 32-bit load takes both.
template <class F>
inline __m128 PairScales(const typename F::Block* blk) {
  __m128i halves;
  if constexpr (F::kHasMin) {
    uint32_t dm0, dm1;
    std::memcpy(&dm0, &blk[0].d, 4);
    std::memcpy(&dm1, &blk[1].d, 4);
    halves = _mm_insert_epi32(_mm_cvtsi32_si128(static_cast<int>(dm0)), static_cast<int>(dm1), 1);
  } else {
    halves = _mm_insert_epi16(_mm_cvtsi32_si128(blk[0].d), blk[1].d, 2);
  }
  return _mm_cvtph_ps(halves);
}

// Per pair of blocks and (row, column): the int32 block sums are scaled by
// d_w d_a in one FMA, and the min terms m_w * (d_a sum a) of Q4_1/Q5_1 come
// from the same 4-float product [d0 da0, m0 s0, d1 da1, m1 s1], summed in
// lanes 1 and 3 of a 128-bit accumulator.
template <class F, bool kVnni, int R, int C>
void TileQ32x512(const PreparedActivations& a, int64_t row0, const uint8_t* w, size_t w_stride,
                 float* y, int64_t ldy) {
  using Block = typename F::Block;
  const int64_t nb = a.k / kQK;
  const __m512i scale_index = PairScaleIndex<F>();
  __m512 acc[R][C];
  __m128 min_acc[R][C];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) {
      acc[r][c] = _mm512_setzero_ps();
      min_acc[r][c] = _mm_setzero_ps();
    }
  }
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    __m512i wu[C];
    __mmask64 negative[C];
    __m128 scales[C];
    for (int c = 0; c < C; ++c) {
      const Block* blk = reinterpret_cast<const Block*>(w + c * w_stride) + b;
      const __m512i q = LoadPair<F>(blk);
      if constexpr (F::kSigned) {
        negative[c] = _mm512_movepi8_mask(q);
        wu[c] = _mm512_abs_epi8(q);
      } else {
        wu[c] = q;
      }
      scales[c] = PairScales<F>(blk);
    }
    for (int r = 0; r < R; ++r) {
      const int64_t row = row0 + r;
      const __m512i av = PairActivations<F>(a.qs + row * a.k + b * kQK);
      // [da0, s0, da1, s1] (s: d_a * sum(q_a), the min terms' factor).
      const __m128 da =
          _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(a.d + row * nb + b)));
      const __m128 row_scales =
          F::kHasMin
              ? _mm_unpacklo_ps(da, _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(
                                        a.block_sum + row * nb + b))))
              : _mm_unpacklo_ps(da, da);
      for (int c = 0; c < C; ++c) {
        __m512i as = av;
        if constexpr (F::kSigned)
          as = _mm512_mask_sub_epi8(av, negative[c], _mm512_setzero_si512(), av);
        const __m512 sums = _mm512_cvtepi32_ps(DotU8S8<kVnni>(wu[c], as));
        const __m128 products = _mm_mul_ps(scales[c], row_scales);
        acc[r][c] = _mm512_fmadd_ps(
            sums, _mm512_permutexvar_ps(scale_index, _mm512_castps128_ps512(products)), acc[r][c]);
        if constexpr (F::kHasMin) min_acc[r][c] = _mm_add_ps(min_acc[r][c], products);
      }
    }
  }
  float tail[R][C] = {};
  if (b < nb) {  // one odd block left: the 256-bit form
    for (int c = 0; c < C; ++c) {
      const Block* blk = reinterpret_cast<const Block*>(w + c * w_stride) + b;
      const __m256i q = F::Load(blk);
      const __m256i wu = F::kSigned ? _mm256_abs_epi8(q) : q;
      for (int r = 0; r < R; ++r) {
        const int64_t row = row0 + r;
        __m256i as =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qs + row * a.k + b * kQK));
        if constexpr (F::kSigned) as = _mm256_sign_epi8(as, q);
        const __m256 sums = _mm256_cvtepi32_ps(DotU8S8<kVnni>(wu, as));
        tail[r][c] = HorizontalSum(sums) * (HalfToFloat(blk->d) * a.d[row * nb + b]);
        if constexpr (F::kHasMin) tail[r][c] += F::Min(blk) * a.block_sum[row * nb + b];
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) {
      // Lanes 1 + 3 of min_acc (0 for formats without a min).
      const __m128 odd = _mm_movehdup_ps(min_acc[r][c]);
      const float mins = _mm_cvtss_f32(_mm_add_ss(odd, _mm_movehl_ps(odd, odd)));
      y[r * ldy + c] = _mm512_reduce_add_ps(acc[r][c]) + tail[r][c] + mins;
    }
  }
}

enum class FloatKind512 { kF32, kF16, kBf16 };

template <FloatKind512 kKind>
inline __m512 LoadWeights16(const uint8_t* row, int64_t i) {
  if constexpr (kKind == FloatKind512::kF32) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + i);
  } else {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * i));
    if constexpr (kKind == FloatKind512::kF16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

template <FloatKind512 kKind>
inline float WeightAt512(const uint8_t* row, int64_t i) {
  if constexpr (kKind == FloatKind512::kF32) {
    float v;
    std::memcpy(&v, row + 4 * i, 4);
    return v;
  } else {
    uint16_t h;
    std::memcpy(&h, row + 2 * i, 2);
    return kKind == FloatKind512::kF16 ? _cvtsh_ss(h) : Bf16ToF32(h);
  }
}

template <FloatKind512 kKind, int R, int C>
void TileFloat512(const PreparedActivations& a, int64_t row0, const uint8_t* w, size_t w_stride,
                  float* y, int64_t ldy) {
  const int64_t k = a.k;
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    __m512 wv[C];
    for (int c = 0; c < C; ++c) wv[c] = LoadWeights16<kKind>(w + c * w_stride, i);
    for (int r = 0; r < R; ++r) {
      const __m512 xv = _mm512_loadu_ps(a.f32 + (row0 + r) * k + i);
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_fmadd_ps(xv, wv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) {
      float tail = 0.0f;
      for (int64_t j = i; j < k; ++j) {
        tail += a.f32[(row0 + r) * k + j] * WeightAt512<kKind>(w + c * w_stride, j);
      }
      y[r * ldy + c] = _mm512_reduce_add_ps(acc[r][c]) + tail;
    }
  }
}

// Up to 4 x 4 = 16 accumulators of the 32 zmm registers.
constexpr int kMaxProducts512 = 16;

template <class F, bool kVnni>
struct Q32x512 {
  template <int R, int C>
  struct K {
    static void Run(const PreparedActivations& a, int64_t row0, const uint8_t* w, size_t ws,
                    float* y, int64_t ldy) {
      TileQ32x512<F, kVnni, R, C>(a, row0, w, ws, y, ldy);
    }
  };
};

template <FloatKind512 kKind>
struct Float512 {
  template <int R, int C>
  struct K {
    static void Run(const PreparedActivations& a, int64_t row0, const uint8_t* w, size_t ws,
                    float* y, int64_t ldy) {
      TileFloat512<kKind, R, C>(a, row0, w, ws, y, ldy);
    }
  };
};

template <bool kVnni>
TileKernel IntegerTileKernel512(DType w_type) {
  const ActivationFormat q8 = ActivationFormat::kQ8x32;
  switch (w_type) {
    case DType::kQ4_0:
      return {&TileByRows<Q32x512<Q4_0Format, kVnni>::template K, kMaxProducts512>, q8};
    case DType::kQ4_1:
      return {&TileByRows<Q32x512<Q4_1Format, kVnni>::template K, kMaxProducts512>, q8};
    case DType::kQ5_0:
      return {&TileByRows<Q32x512<Q5_0Format, kVnni>::template K, kMaxProducts512>, q8};
    case DType::kQ5_1:
      return {&TileByRows<Q32x512<Q5_1Format, kVnni>::template K, kMaxProducts512>, q8};
    case DType::kQ8_0:
      return {&TileByRows<Q32x512<Q8_0Format, kVnni>::template K, kMaxProducts512>, q8};
    default:
      return KQuantTileKernel512<kVnni>(w_type);
  }
}

}  // namespace
}  // namespace alignserve

#endif  // ALIGNSERVE_KERNELS_CPU_MATMUL_AVX512_IMPL_H_
