// Portable tile kernels: the plain-C++ path of MatMul and the yardstick the
// SIMD kernels are tested against. Integer block sums are exact; floats are
// accumulated block by block in a single float.
#include <cstring>

#include "kernels/cpu/fp16.h"
#include "kernels/cpu/matmul_kernels.h"
#include "kernels/cpu/quant_blocks.h"

namespace alignserve {
namespace {

float DotF32(const float* x, const uint8_t* w, int64_t k) {
  float acc = 0.0f;
  for (int64_t i = 0; i < k; ++i) {
    float wi;
    std::memcpy(&wi, w + 4 * i, 4);
    acc += x[i] * wi;
  }
  return acc;
}

template <bool kBf16>
float Dot16(const float* x, const uint8_t* w, int64_t k) {
  float acc = 0.0f;
  for (int64_t i = 0; i < k; ++i) {
    uint16_t bits;
    std::memcpy(&bits, w + 2 * i, 2);
    acc += x[i] * (kBf16 ? Bf16ToF32(bits) : Fp16ToF32(bits));
  }
  return acc;
}

// The 32-element formats as (offset, has-min) families: q is unpacked to
// [0, 2^bits) and the weight is d * (q - offset) (+ m).
template <class Block, int kBits, int kOffset, bool kHasMin>
float DotQ32(const PreparedActivations& a, int64_t row, const uint8_t* w) {
  const int64_t nb = a.k / kQK;
  const int8_t* qa = a.qs + row * a.k;
  const float* da = a.d + row * nb;
  const float* sa = a.block_sum + row * nb;
  const auto* blocks = reinterpret_cast<const Block*>(w);
  float acc = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    const Block& blk = blocks[b];
    uint32_t qh = 0;
    if constexpr (kBits == 5) std::memcpy(&qh, blk.qh, 4);
    int isum = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      int lo = blk.qs[j] & 0xf, hi = blk.qs[j] >> 4;
      if constexpr (kBits == 5) {
        lo |= ((qh >> j) & 1) << 4;
        hi |= ((qh >> (j + 16)) & 1) << 4;
      }
      isum += (lo - kOffset) * qa[b * kQK + j] + (hi - kOffset) * qa[b * kQK + j + 16];
    }
    acc += Fp16ToF32(blk.d) * da[b] * static_cast<float>(isum);
    if constexpr (kHasMin) acc += Fp16ToF32(blk.m) * sa[b];
  }
  return acc;
}

float DotQ8_0(const PreparedActivations& a, int64_t row, const uint8_t* w) {
  const int64_t nb = a.k / kQK;
  const int8_t* qa = a.qs + row * a.k;
  const auto* blocks = reinterpret_cast<const BlockQ8_0*>(w);
  float acc = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    int isum = 0;
    for (int j = 0; j < kQK; ++j) isum += blocks[b].qs[j] * qa[b * kQK + j];
    acc += Fp16ToF32(blocks[b].d) * a.d[row * nb + b] * static_cast<float>(isum);
  }
  return acc;
}

// K-quants: per 256-block, the integer sums of each sub-block are weighted by
// the sub-block's integer scale (exact in int32), then scaled once.
float DotKQuant(DType type, const PreparedActivations& a, int64_t row, const uint8_t* w) {
  const int64_t nb = a.k / kQKK;
  const int block_bytes = Info(type).block_bytes;
  float acc = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    const int8_t* q8 = a.qs + row * a.k + b * kQKK;
    const int16_t* gsum = a.group_sum + row * (a.k / 16) + b * 16;
    const uint8_t* raw = w + b * block_bytes;
    const float da = a.d[row * nb + b];
    int scaled = 0;  // sum over sub-blocks of scale * sum(q * a)
    int mins = 0;    // sum over sub-blocks of min * sum(a)
    float d = 0.0f, dmin = 0.0f;
    if (type == DType::kQ2_K) {
      const auto* blk = reinterpret_cast<const BlockQ2_K*>(raw);
      for (int e = 0, j = 0; j < 16; ++j) {
        int isum = 0;
        for (int l = 0; l < 16; ++l, ++e) {
          isum += ((blk->qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3) * q8[e];
        }
        scaled += (blk->scales[j] & 0xf) * isum;
        mins += (blk->scales[j] >> 4) * gsum[j];
      }
      d = Fp16ToF32(blk->d);
      dmin = Fp16ToF32(blk->dmin);
    } else if (type == DType::kQ3_K) {
      const auto* blk = reinterpret_cast<const BlockQ3_K*>(raw);
      for (int e = 0, j = 0; j < 16; ++j) {
        int isum = 0;
        for (int l = 0; l < 16; ++l, ++e) {
          const int q2 = (blk->qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
          const int hbit = (blk->hmask[e % 32] >> (e / 32)) & 1;
          isum += (q2 - (hbit ? 0 : 4)) * q8[e];
        }
        scaled += Q3KScale(blk->scales, j) * isum;
      }
      d = Fp16ToF32(blk->d);
    } else if (type == DType::kQ4_K || type == DType::kQ5_K) {
      const bool five = type == DType::kQ5_K;
      const auto* b4 = reinterpret_cast<const BlockQ4_K*>(raw);
      const auto* b5 = reinterpret_cast<const BlockQ5_K*>(raw);
      const uint8_t* scales = five ? b5->scales : b4->scales;
      const uint8_t* qs = five ? b5->qs : b4->qs;
      for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        KQuantScaleMin(scales, j, &sc, &m);
        int isum = 0;
        for (int l = 0; l < 32; ++l) {
          int q = (qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 0xf;
          if (five) q |= ((b5->qh[l] >> j) & 1) << 4;
          isum += q * q8[32 * j + l];
        }
        scaled += sc * isum;
        mins += m * (gsum[2 * j] + gsum[2 * j + 1]);
      }
      d = Fp16ToF32(b4->d);  // d and dmin sit at the same offsets in Q5_K
      dmin = Fp16ToF32(b4->dmin);
    } else {  // Q6_K
      const auto* blk = reinterpret_cast<const BlockQ6_K*>(raw);
      for (int e = 0, j = 0; j < 16; ++j) {
        int isum = 0;
        for (int l = 0; l < 16; ++l, ++e) {
          const int g = e / 128;
          const int lo = (blk->ql[64 * g + e % 64] >> (4 * ((e % 128) / 64))) & 0xf;
          const int hi = (blk->qh[32 * g + e % 32] >> (2 * ((e % 128) / 32))) & 3;
          isum += ((lo | (hi << 4)) - 32) * q8[e];
        }
        scaled += blk->scales[j] * isum;
      }
      d = Fp16ToF32(blk->d);
    }
    acc += d * da * static_cast<float>(scaled) - dmin * da * static_cast<float>(mins);
  }
  return acc;
}

template <DType kType>
float DotAny(const PreparedActivations& a, int64_t row, const uint8_t* w) {
  if constexpr (kType == DType::kF32) return DotF32(a.f32 + row * a.k, w, a.k);
  if constexpr (kType == DType::kF16) return Dot16<false>(a.f32 + row * a.k, w, a.k);
  if constexpr (kType == DType::kBF16) return Dot16<true>(a.f32 + row * a.k, w, a.k);
  if constexpr (kType == DType::kQ4_0) return DotQ32<BlockQ4_0, 4, 8, false>(a, row, w);
  if constexpr (kType == DType::kQ4_1) return DotQ32<BlockQ4_1, 4, 0, true>(a, row, w);
  if constexpr (kType == DType::kQ5_0) return DotQ32<BlockQ5_0, 5, 16, false>(a, row, w);
  if constexpr (kType == DType::kQ5_1) return DotQ32<BlockQ5_1, 5, 0, true>(a, row, w);
  if constexpr (kType == DType::kQ8_0) return DotQ8_0(a, row, w);
  if constexpr (kType == DType::kQ2_K || kType == DType::kQ3_K || kType == DType::kQ4_K ||
                kType == DType::kQ5_K || kType == DType::kQ6_K) {
    return DotKQuant(kType, a, row, w);
  }
  return 0.0f;
}

template <DType kType>
void ScalarTile(const PreparedActivations& a, int64_t row0, int rows, const uint8_t* w,
                size_t w_stride, int cols, float* y, int64_t ldy) {
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) y[r * ldy + c] = DotAny<kType>(a, row0 + r, w + c * w_stride);
  }
}

}  // namespace

ActivationFormat QuantizedActivationFormat(DType w_type) {
  switch (w_type) {
    case DType::kQ4_0:
    case DType::kQ4_1:
    case DType::kQ5_0:
    case DType::kQ5_1:
    case DType::kQ8_0:
      return ActivationFormat::kQ8x32;
    case DType::kQ2_K:
    case DType::kQ3_K:
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K:
      return ActivationFormat::kQ8x256;
    default:
      return ActivationFormat::kF32;
  }
}

TileKernel ScalarTileKernel(DType w_type) {
  const ActivationFormat format = QuantizedActivationFormat(w_type);
  switch (w_type) {
#define ALIGNSERVE_SCALAR_CASE(T) \
  case DType::T:                  \
    return {&ScalarTile<DType::T>, format};
    ALIGNSERVE_SCALAR_CASE(kF32)
    ALIGNSERVE_SCALAR_CASE(kF16)
    ALIGNSERVE_SCALAR_CASE(kBF16)
    ALIGNSERVE_SCALAR_CASE(kQ4_0)
    ALIGNSERVE_SCALAR_CASE(kQ4_1)
    ALIGNSERVE_SCALAR_CASE(kQ5_0)
    ALIGNSERVE_SCALAR_CASE(kQ5_1)
    ALIGNSERVE_SCALAR_CASE(kQ8_0)
    ALIGNSERVE_SCALAR_CASE(kQ2_K)
    ALIGNSERVE_SCALAR_CASE(kQ3_K)
    ALIGNSERVE_SCALAR_CASE(kQ4_K)
    ALIGNSERVE_SCALAR_CASE(kQ5_K)
    ALIGNSERVE_SCALAR_CASE(kQ6_K)
#undef ALIGNSERVE_SCALAR_CASE
    default:
      return {};
  }
}

}  // namespace alignserve
