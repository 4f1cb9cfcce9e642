// AVX2 tile kernels for the K-quants Q4_K, Q5_K and Q6_K against kQ8x256
// activations (int8, one float scale per 256, int16 sums of each 16).
// Q2_K and Q3_K stay on the scalar path.
//
// Per 256-element super-block and (row, column) pair the kernels form one
// exact int32 vector whose lane total is the scalar path's integer sum
//   sum_j scale_j * sum_{i in sub-block j} q_i a_i   (- the offset terms),
// then apply the float scales once: d_w * d_a (and dmin_w * d_a for the
// Q4_K / Q5_K mins). 32 elements at a time: vpmaddubsw (unsigned q x signed
// a -> pairs of int16) then vpmaddwd by the sub-block's 16-bit scale.
// Bounds as in matmul_kquant_avx512_impl.h: q <= 63 keeps a vpmaddubsw pair
// within 2 * 63 * 127 < 2^15, and a super-block sums to < 2^31.
// vpshufb works within 128-bit lanes, so per-sub-block scales are broadcast
// from a copy of the 16 scale bytes held in both lanes.
#include <immintrin.h>

#include <type_traits>

#include "kernels/cpu/matmul_kernels.h"
#include "kernels/cpu/matmul_simd_blocks.h"

namespace alignserve {
namespace {

// Shuffle control putting byte j of each 128-bit lane, zero-extended, into
// every int16 lane.
inline __m256i BroadcastByteIndex(int j) {
  return _mm256_set1_epi16(static_cast<short>(0x8000 | j));
}

// 0x10 where bit j of the byte is set: shifting 16-bit lanes moves bit j (and
// bit 8 + j) to bit 4 (and 12) without mixing the two bytes' bits there.
inline __m256i FifthBit(__m256i qh, int j) {
  const __m256i moved = j <= 4 ? _mm256_slli_epi16(qh, 4 - j) : _mm256_srli_epi16(qh, j - 4);
  return _mm256_and_si256(moved, _mm256_set1_epi8(0x10));
}

inline __m256i DotScaled(__m256i acc, __m256i q, const int8_t* act, __m256i scales) {
  const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(act));
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(q, av), scales));
}

// Q4_K and Q5_K (Block picks). Group g (0..3): the low nibbles of
// qs[32g .. 32g+31] are sub-block 2g, the high nibbles sub-block 2g + 1;
// Q5_K adds 16 where bit 2g (resp. 2g + 1) of qh[l] is set.
template <class Block, int R, int C>
void TileQ45K(const PreparedActivations& a, int64_t row0, const uint8_t* w, size_t w_stride,
              float* y, int64_t ldy) {
  constexpr bool kFive = std::is_same_v<Block, BlockQ5_K>;
  const int64_t nb = a.k / kQKK;
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  // The mins pair with the 16-element sums: int16 lane i takes min i / 2
  // (byte 8 + i / 2 of the scale/min bytes).
  const __m256i min_pairs =
      _mm256_setr_epi8(8, -1, 8, -1, 9, -1, 9, -1, 10, -1, 10, -1, 11, -1, 11, -1, 12, -1, 12, -1,
                       13, -1, 13, -1, 14, -1, 14, -1, 15, -1, 15, -1);
  __m256 acc[R][C];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  }
  for (int64_t b = 0; b < nb; ++b) {
    const Block* blk[C];
    __m256i scale_bytes[C];  // scales 0-7 then mins 0-7, in both lanes
    for (int c = 0; c < C; ++c) {
      blk[c] = reinterpret_cast<const Block*>(w + c * w_stride) + b;
      alignas(16) uint8_t bytes[16];
      UnpackKQuantScalesMins(blk[c]->scales, bytes);
      scale_bytes[c] =
          _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(bytes)));
    }
    __m256i isum[R][C];
    for (int r = 0; r < R; ++r) {
      for (int c = 0; c < C; ++c) isum[r][c] = _mm256_setzero_si256();
    }
    for (int g = 0; g < 4; ++g) {
      for (int c = 0; c < C; ++c) {
        const __m256i packed =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk[c]->qs + 32 * g));
        __m256i q_lo = _mm256_and_si256(packed, low4);
        __m256i q_hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low4);
        if constexpr (kFive) {
          const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk[c]->qh));
          q_lo = _mm256_or_si256(q_lo, FifthBit(qh, 2 * g));
          q_hi = _mm256_or_si256(q_hi, FifthBit(qh, 2 * g + 1));
        }
        const __m256i s_lo = _mm256_shuffle_epi8(scale_bytes[c], BroadcastByteIndex(2 * g));
        const __m256i s_hi = _mm256_shuffle_epi8(scale_bytes[c], BroadcastByteIndex(2 * g + 1));
        for (int r = 0; r < R; ++r) {
          const int8_t* act = a.qs + (row0 + r) * a.k + b * kQKK + 64 * g;
          isum[r][c] = DotScaled(isum[r][c], q_lo, act, s_lo);
          isum[r][c] = DotScaled(isum[r][c], q_hi, act + 32, s_hi);
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      const int64_t row = row0 + r;
      const float da = a.d[row * nb + b];
      const __m256i sums16 = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(a.group_sum + row * (a.k / 16) + b * 16));
      for (int c = 0; c < C; ++c) {
        const __m256i mins = _mm256_shuffle_epi8(scale_bytes[c], min_pairs);
        const __m256 min_sums = _mm256_cvtepi32_ps(_mm256_madd_epi16(sums16, mins));
        acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][c]),
                                    _mm256_set1_ps(HalfToFloat(blk[c]->d) * da), acc[r][c]);
        acc[r][c] =
            _mm256_fnmadd_ps(min_sums, _mm256_set1_ps(HalfToFloat(blk[c]->dmin) * da), acc[r][c]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) y[r * ldy + c] = HorizontalSum(acc[r][c]);
  }
}

// The 32 six-bit values of part p (0..3) of half h of a Q6_K block:
// elements 128h + 32p + l, l < 32. Low nibbles come from ql[64h + 32(p % 2)
// + l] (high nibble for p >= 2), the 2 high bits from bits 2p.. of
// qh[32h + l].
inline __m256i Q6KPart(const BlockQ6_K* blk, int h, int p) {
  const __m256i ql =
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->ql + 64 * h + 32 * (p % 2)));
  const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->qh + 32 * h));
  const __m256i low =
      _mm256_and_si256(p < 2 ? ql : _mm256_srli_epi16(ql, 4), _mm256_set1_epi8(0x0f));
  // Bits 2p, 2p + 1 to bits 4, 5 (16-bit shifts; the mask drops what
  // crossed between bytes).
  const __m256i high = p <= 2 ? _mm256_slli_epi16(qh, 4 - 2 * p) : _mm256_srli_epi16(qh, 2);
  return _mm256_or_si256(low, _mm256_and_si256(high, _mm256_set1_epi8(0x30)));
}

// Q6_K: q = 0..63 stands for q - 32; the kernel sums scale_j * q * a and
// subtracts 32 * sum_j scale_j * sum_{sub-block j} a.
template <int R, int C>
void TileQ6K(const PreparedActivations& a, int64_t row0, const uint8_t* w, size_t w_stride,
             float* y, int64_t ldy) {
  const int64_t nb = a.k / kQKK;
  __m256 acc[R][C];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  }
  for (int64_t b = 0; b < nb; ++b) {
    const BlockQ6_K* blk[C];
    __m256i scale_bytes[C];  // the 16 int8 scales in both lanes
    for (int c = 0; c < C; ++c) {
      blk[c] = reinterpret_cast<const BlockQ6_K*>(w + c * w_stride) + b;
      scale_bytes[c] = _mm256_broadcastsi128_si256(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[c]->scales)));
    }
    __m256i isum[R][C];
    for (int r = 0; r < R; ++r) {
      for (int c = 0; c < C; ++c) isum[r][c] = _mm256_setzero_si256();
    }
    for (int part = 0; part < 8; ++part) {  // 32 elements: sub-blocks 2 part, 2 part + 1
      const int h = part / 4, p = part % 4;
      // Scale 2 part in the high byte of the low lane's int16s, 2 part + 1
      // in the high lane's; the arithmetic shift sign-extends it.
      const __m256i index =
          _mm256_set_m128i(_mm_set1_epi16(static_cast<short>((2 * part + 1) << 8 | 0x80)),
                           _mm_set1_epi16(static_cast<short>((2 * part) << 8 | 0x80)));
      for (int c = 0; c < C; ++c) {
        const __m256i q = Q6KPart(blk[c], h, p);
        const __m256i scales = _mm256_srai_epi16(_mm256_shuffle_epi8(scale_bytes[c], index), 8);
        for (int r = 0; r < R; ++r) {
          const int8_t* act = a.qs + (row0 + r) * a.k + b * kQKK + 32 * part;
          isum[r][c] = DotScaled(isum[r][c], q, act, scales);
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      const int64_t row = row0 + r;
      const float da = a.d[row * nb + b];
      const __m256i sums16 = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(a.group_sum + row * (a.k / 16) + b * 16));
      for (int c = 0; c < C; ++c) {
        const __m256i scales16 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(scale_bytes[c]));
        const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(sums16, scales16), 5);
        acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(isum[r][c], offset)),
                                    _mm256_set1_ps(HalfToFloat(blk[c]->d) * da), acc[r][c]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) y[r * ldy + c] = HorizontalSum(acc[r][c]);
  }
}

template <class Block>
struct Q45K {
  template <int R, int C>
  struct K {
    static void Run(const PreparedActivations& a, int64_t row0, const uint8_t* w, size_t ws,
                    float* y, int64_t ldy) {
      TileQ45K<Block, R, C>(a, row0, w, ws, y, ldy);
    }
  };
};

template <int R, int C>
struct Q6K {
  static void Run(const PreparedActivations& a, int64_t row0, const uint8_t* w, size_t ws, float* y,
                  int64_t ldy) {
    TileQ6K<R, C>(a, row0, w, ws, y, ldy);
  }
};

// An integer and a float accumulator per (row, column): 2 x 4 of the 16 ymm.
constexpr int kMaxKQuantProducts = 4;

}  // namespace

TileKernel Avx2KQuantTileKernel(DType w_type) {
  const ActivationFormat q8k = ActivationFormat::kQ8x256;
  switch (w_type) {
    case DType::kQ4_K:
      return {&TileByRows<Q45K<BlockQ4_K>::K, kMaxKQuantProducts>, q8k};
    case DType::kQ5_K:
      return {&TileByRows<Q45K<BlockQ5_K>::K, kMaxKQuantProducts>, q8k};
    case DType::kQ6_K:
      return {&TileByRows<Q6K, kMaxKQuantProducts>, q8k};
    default:
      return {};
  }
}

}  // namespace alignserve
