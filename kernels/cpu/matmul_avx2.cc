// AVX2 + FMA + F16C tile kernels. Integer formats: per 32-element block,
// maddubs (u8 x s8 -> pairs of s16) then madd by ones (-> s32 lanes), one
// float convert and one FMA with the block's scale d_w * d_a. Signed weights
// use |w| x (a * sign(w)) so maddubs sees an unsigned operand. No s16
// saturation is possible: |w| <= 128, |a| <= 127, 2 * 128 * 127 < 32768.
#include <immintrin.h>

#include <cstring>

#include "kernels/cpu/fp16.h"
#include "kernels/cpu/matmul_kernels.h"
#include "kernels/cpu/matmul_simd_blocks.h"

namespace alignserve {
namespace {

template <class F, int R, int C>
void TileQ32(const PreparedActivations& a, int64_t row0, const uint8_t* w, size_t w_stride,
             float* y, int64_t ldy) {
  using Block = typename F::Block;
  const int64_t nb = a.k / kQK;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[R][C];
  float min_acc[R][C] = {};
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  }
  for (int64_t b = 0; b < nb; ++b) {
    __m256i wq[C], wu[C];
    float dw[C], mw[C];
    for (int c = 0; c < C; ++c) {
      const Block* blk = reinterpret_cast<const Block*>(w + c * w_stride) + b;
      wq[c] = F::Load(blk);
      wu[c] = F::kSigned ? _mm256_abs_epi8(wq[c]) : wq[c];
      dw[c] = HalfToFloat(blk->d);
      mw[c] = F::Min(blk);
    }
    for (int r = 0; r < R; ++r) {
      const int64_t row = row0 + r;
      const __m256i av =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qs + row * a.k + b * kQK));
      const float da = a.d[row * nb + b];
      for (int c = 0; c < C; ++c) {
        const __m256i as = F::kSigned ? _mm256_sign_epi8(av, wq[c]) : av;
        const __m256i sums = _mm256_madd_epi16(_mm256_maddubs_epi16(wu[c], as), ones);
        acc[r][c] =
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_set1_ps(dw[c] * da), acc[r][c]);
        if constexpr (F::kHasMin) min_acc[r][c] += mw[c] * a.block_sum[row * nb + b];
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) y[r * ldy + c] = HorizontalSum(acc[r][c]) + min_acc[r][c];
  }
}

enum class FloatKind { kF32, kF16, kBf16 };

template <FloatKind kKind>
__m256 LoadWeights8(const uint8_t* row, int64_t i) {
  if constexpr (kKind == FloatKind::kF32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + i);
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i));
    if constexpr (kKind == FloatKind::kF16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

// One weight, for the k % 8 tail.
template <FloatKind kKind>
float WeightAt(const uint8_t* row, int64_t i) {
  if constexpr (kKind == FloatKind::kF32) {
    float v;
    std::memcpy(&v, row + 4 * i, 4);
    return v;
  } else {
    uint16_t h;
    std::memcpy(&h, row + 2 * i, 2);
    return kKind == FloatKind::kF16 ? _cvtsh_ss(h) : Bf16ToF32(h);
  }
}

template <FloatKind kKind, int R, int C>
void TileFloat(const PreparedActivations& a, int64_t row0, const uint8_t* w, size_t w_stride,
               float* y, int64_t ldy) {
  const int64_t k = a.k;
  __m256 acc[R][C];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    __m256 wv[C];
    for (int c = 0; c < C; ++c) wv[c] = LoadWeights8<kKind>(w + c * w_stride, i);
    for (int r = 0; r < R; ++r) {
      const __m256 xv = _mm256_loadu_ps(a.f32 + (row0 + r) * k + i);
      for (int c = 0; c < C; ++c) acc[r][c] = _mm256_fmadd_ps(xv, wv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) {
      float tail = 0.0f;
      for (int64_t j = i; j < k; ++j)
        tail += a.f32[(row0 + r) * k + j] * WeightAt<kKind>(w + c * w_stride, j);
      y[r * ldy + c] = HorizontalSum(acc[r][c]) + tail;
    }
  }
}

// 8 accumulators of the 16 ymm registers: 4 x 1 .. 2 x 4 .. 4 x 2.
constexpr int kMaxProducts = 8;

template <class F>
struct Q32 {
  template <int R, int C>
  struct K {
    static void Run(const PreparedActivations& a, int64_t row0, const uint8_t* w, size_t ws,
                    float* y, int64_t ldy) {
      TileQ32<F, R, C>(a, row0, w, ws, y, ldy);
    }
  };
};

template <FloatKind kKind>
struct Flt {
  template <int R, int C>
  struct K {
    static void Run(const PreparedActivations& a, int64_t row0, const uint8_t* w, size_t ws,
                    float* y, int64_t ldy) {
      TileFloat<kKind, R, C>(a, row0, w, ws, y, ldy);
    }
  };
};

}  // namespace

TileKernel Avx2TileKernel(DType w_type) {
  const ActivationFormat q8 = ActivationFormat::kQ8x32;
  const ActivationFormat f32 = ActivationFormat::kF32;
  switch (w_type) {
    case DType::kQ4_0:
      return {&TileByRows<Q32<Q4_0Format>::K, kMaxProducts>, q8};
    case DType::kQ4_1:
      return {&TileByRows<Q32<Q4_1Format>::K, kMaxProducts>, q8};
    case DType::kQ5_0:
      return {&TileByRows<Q32<Q5_0Format>::K, kMaxProducts>, q8};
    case DType::kQ5_1:
      return {&TileByRows<Q32<Q5_1Format>::K, kMaxProducts>, q8};
    case DType::kQ8_0:
      return {&TileByRows<Q32<Q8_0Format>::K, kMaxProducts>, q8};
    case DType::kF32:
      return {&TileByRows<Flt<FloatKind::kF32>::K, kMaxProducts>, f32};
    case DType::kF16:
      return {&TileByRows<Flt<FloatKind::kF16>::K, kMaxProducts>, f32};
    case DType::kBF16:
      return {&TileByRows<Flt<FloatKind::kBf16>::K, kMaxProducts>, f32};
    default:
      return Avx2KQuantTileKernel(w_type);
  }
}

}  // namespace alignserve
