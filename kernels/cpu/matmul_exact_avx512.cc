// AVX-512 (F/BW/VL/DQ) kernels of MatMulExact (see matmul_exact.h).
//
// Each weight type has a decoder that turns one block into floats, 16 at a
// time, equal bit for bit to DequantizeRow: every product of a scale and a
// quant is exact in f32 (at most 11 + 6 + 6 significant bits), so a fused
// multiply-add fma(d, q, m) rounds once exactly where gguf-py's d * q + m
// does; Q6_K's (d * sc) * (q - 32) is the same single multiplication.
// Scales go through F16C (_cvtsh_ss), exact for every non-NaN half.
//
// Decode fuses the decoder with FMAs into up to 3 activation rows for 4
// weight rows at once; prefill stores decoded tiles and runs a 4 x 4 tile
// kernel (16 zmm accumulators, one k step = 8 loads + 16 FMAs).
// GCC 12's own AVX-512 headers trip -Wuninitialized (the deliberately
// undefined pass-through operand of the unmasked conversions).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/matmul_exact.h"
#include "kernels/cpu/quant_blocks.h"

namespace alignserve {
namespace matmul_exact_internal {
namespace {

inline float Half(uint16_t h) { return _cvtsh_ss(h); }
inline __m128i Load16(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
inline __m128i Lo4(__m128i v) { return _mm_and_si128(v, _mm_set1_epi8(0x0f)); }
inline __m128i Hi4(__m128i v) { return _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0x0f)); }
inline __m512 U8ToPs(__m128i v) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v)); }
inline __m512 I8ToPs(__m128i v) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v)); }
// Adds 16 to byte i of v where bit i of `bits` is set (the fifth quant bit).
inline __m128i AddBit4(__m128i v, uint32_t bits) {
  return _mm_mask_add_epi8(v, static_cast<__mmask16>(bits), v, _mm_set1_epi8(16));
}

// A decoder: kElems elements per block of kBytes bytes; Block(p, emit)
// calls emit(offset, v) with v = elements [offset, offset + 16) for every
// offset (a multiple of 16 below kElems). Float types (kFloat) have 16-element
// "blocks" and One(row, i) for the tail of a row.
struct DecQ4_0 {
  static constexpr int kElems = 32, kBytes = sizeof(BlockQ4_0);
  static constexpr bool kFloat = false;
  template <class Emit>
  static void Block(const uint8_t* p, Emit&& emit) {
    const auto* b = reinterpret_cast<const BlockQ4_0*>(p);
    const __m512 d = _mm512_set1_ps(Half(b->d));
    const __m128i q = Load16(b->qs), eight = _mm_set1_epi8(8);
    emit(0, _mm512_mul_ps(d, I8ToPs(_mm_sub_epi8(Lo4(q), eight))));
    emit(16, _mm512_mul_ps(d, I8ToPs(_mm_sub_epi8(Hi4(q), eight))));
  }
};

struct DecQ4_1 {
  static constexpr int kElems = 32, kBytes = sizeof(BlockQ4_1);
  static constexpr bool kFloat = false;
  template <class Emit>
  static void Block(const uint8_t* p, Emit&& emit) {
    const auto* b = reinterpret_cast<const BlockQ4_1*>(p);
    const __m512 d = _mm512_set1_ps(Half(b->d)), m = _mm512_set1_ps(Half(b->m));
    const __m128i q = Load16(b->qs);
    emit(0, _mm512_fmadd_ps(d, U8ToPs(Lo4(q)), m));
    emit(16, _mm512_fmadd_ps(d, U8ToPs(Hi4(q)), m));
  }
};

struct DecQ5_0 {
  static constexpr int kElems = 32, kBytes = sizeof(BlockQ5_0);
  static constexpr bool kFloat = false;
  template <class Emit>
  static void Block(const uint8_t* p, Emit&& emit) {
    const auto* b = reinterpret_cast<const BlockQ5_0*>(p);
    const __m512 d = _mm512_set1_ps(Half(b->d));
    uint32_t qh;
    std::memcpy(&qh, b->qh, 4);
    const __m128i q = Load16(b->qs), sixteen = _mm_set1_epi8(16);
    const __m128i lo = _mm_sub_epi8(AddBit4(Lo4(q), qh), sixteen);
    const __m128i hi = _mm_sub_epi8(AddBit4(Hi4(q), qh >> 16), sixteen);
    emit(0, _mm512_mul_ps(d, I8ToPs(lo)));
    emit(16, _mm512_mul_ps(d, I8ToPs(hi)));
  }
};

struct DecQ5_1 {
  static constexpr int kElems = 32, kBytes = sizeof(BlockQ5_1);
  static constexpr bool kFloat = false;
  template <class Emit>
  static void Block(const uint8_t* p, Emit&& emit) {
    const auto* b = reinterpret_cast<const BlockQ5_1*>(p);
    const __m512 d = _mm512_set1_ps(Half(b->d)), m = _mm512_set1_ps(Half(b->m));
    uint32_t qh;
    std::memcpy(&qh, b->qh, 4);
    const __m128i q = Load16(b->qs);
    emit(0, _mm512_fmadd_ps(d, U8ToPs(AddBit4(Lo4(q), qh)), m));
    emit(16, _mm512_fmadd_ps(d, U8ToPs(AddBit4(Hi4(q), qh >> 16)), m));
  }
};

struct DecQ8_0 {
  static constexpr int kElems = 32, kBytes = sizeof(BlockQ8_0);
  static constexpr bool kFloat = false;
  template <class Emit>
  static void Block(const uint8_t* p, Emit&& emit) {
    const auto* b = reinterpret_cast<const BlockQ8_0*>(p);
    const __m512 d = _mm512_set1_ps(Half(b->d));
    emit(0, _mm512_mul_ps(I8ToPs(Load16(b->qs)), d));
    emit(16, _mm512_mul_ps(I8ToPs(Load16(b->qs + 16)), d));
  }
};

// Q4_K and Q5_K: sub-block j (32 elements) is nibble j % 2 of qs[32 (j / 2)
// + l]; Q5_K adds bit j of qh[l] as the fifth bit. w = (d sc_j) q - dmin m_j.
template <bool kFive>
struct DecQ45_K {
  using B = std::conditional_t<kFive, BlockQ5_K, BlockQ4_K>;
  static constexpr int kElems = kQKK, kBytes = sizeof(B);
  static constexpr bool kFloat = false;
  template <class Emit>
  static void Block(const uint8_t* p, Emit&& emit) {
    const auto* b = reinterpret_cast<const B*>(p);
    const float d = Half(b->d), dmin = Half(b->dmin);
    __m128i qh_a = _mm_setzero_si128(), qh_b = _mm_setzero_si128();
    if constexpr (kFive) qh_a = Load16(b->qh), qh_b = Load16(b->qh + 16);
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, mn;
      KQuantScaleMin(b->scales, j, &sc, &mn);
      const __m512 dl = _mm512_set1_ps(d * static_cast<float>(sc));
      const __m512 neg_ml = _mm512_set1_ps(-(dmin * static_cast<float>(mn)));
      __m128i a = Load16(b->qs + 32 * (j / 2)), c = Load16(b->qs + 32 * (j / 2) + 16);
      a = j % 2 ? Lo4(a) : Hi4(a);
      c = j % 2 ? Hi4(c) : Lo4(c);
      if constexpr (kFive) {
        const __m128i bit = _mm_set1_epi8(static_cast<char>(1 << j));
        a = _mm_mask_add_epi8(a, _mm_test_epi8_mask(qh_a, bit), a, _mm_set1_epi8(16));
        c = _mm_mask_add_epi8(c, _mm_test_epi8_mask(qh_b, bit), c, _mm_set1_epi8(16));
      }
      emit(32 * j, _mm512_fmadd_ps(dl, U8ToPs(a), neg_ml));
      emit(32 * j + 16, _mm512_fmadd_ps(dl, U8ToPs(c), neg_ml));
    }
  }
};

// Element 128g + 32s + l: low nibble s / 2 of ql[64g + 32 (s % 2) + l], high
// bits 2s.. of qh[32g + l], scale scales[8g + 2s + l / 16].
struct DecQ6_K {
  static constexpr int kElems = kQKK, kBytes = sizeof(BlockQ6_K);
  static constexpr bool kFloat = false;
  template <class Emit>
  static void Block(const uint8_t* p, Emit&& emit) {
    const auto* b = reinterpret_cast<const BlockQ6_K*>(p);
    const float d = Half(b->d);
#pragma GCC unroll 16
    for (int t = 0; t < 16; ++t) {
      const int g = t / 8, s = (t / 2) % 4, l0 = 16 * (t % 2);
      __m128i lo = Load16(b->ql + 64 * g + 32 * (s % 2) + l0);
      lo = s < 2 ? Lo4(lo) : Hi4(lo);
      __m128i hi = _mm_srl_epi16(Load16(b->qh + 32 * g + l0), _mm_cvtsi32_si128(2 * s));
      hi = _mm_slli_epi16(_mm_and_si128(hi, _mm_set1_epi8(3)), 4);
      const __m128i q = _mm_sub_epi8(_mm_or_si128(lo, hi), _mm_set1_epi8(32));
      const __m512 dl = _mm512_set1_ps(d * static_cast<float>(b->scales[8 * g + 2 * s + t % 2]));
      emit(128 * g + 32 * s + l0, _mm512_mul_ps(dl, I8ToPs(q)));
    }
  }
};

struct DecF32 {
  static constexpr int kElems = 16, kBytes = 64;
  static constexpr bool kFloat = true;
  template <class Emit>
  static void Block(const uint8_t* p, Emit&& emit) {
    emit(0, _mm512_loadu_ps(reinterpret_cast<const float*>(p)));
  }
  static float One(const uint8_t* row, int64_t i) {
    float v;
    std::memcpy(&v, row + 4 * i, 4);
    return v;
  }
};

struct DecF16 {
  static constexpr int kElems = 16, kBytes = 32;
  static constexpr bool kFloat = true;
  template <class Emit>
  static void Block(const uint8_t* p, Emit&& emit) {
    emit(0, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))));
  }
  static float One(const uint8_t* row, int64_t i) {
    uint16_t h;
    std::memcpy(&h, row + 2 * i, 2);
    return Half(h);
  }
};

struct DecBF16 {
  static constexpr int kElems = 16, kBytes = 32;
  static constexpr bool kFloat = true;
  template <class Emit>
  static void Block(const uint8_t* p, Emit&& emit) {
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    emit(0, _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16)));
  }
  static float One(const uint8_t* row, int64_t i) {
    uint16_t h;
    std::memcpy(&h, row + 2 * i, 2);
    const uint32_t bits = static_cast<uint32_t>(h) << 16;
    float v;
    std::memcpy(&v, &bits, 4);
    return v;
  }
};

// ---- decode: m <= 3 rows, weights decoded in registers --------------------

// NR weight rows against M activation rows; P accumulators per pair (two
// where registers allow, so consecutive FMAs into one output do not wait on
// each other's latency).
template <class D, int M, int NR>
void DecodeGroup(const float* x, int64_t k, const uint8_t* w, size_t w_stride, float* y,
                 int64_t ldy) {
  constexpr int P = M * NR <= 8 ? 2 : 1;
  __m512 acc[M][NR][P];
#pragma GCC unroll 24
  for (int i = 0; i < M * NR * P; ++i) (&acc[0][0][0])[i] = _mm512_setzero_ps();
  const int64_t nb = k / D::kElems;
  for (int64_t blk = 0; blk < nb; ++blk) {
    const float* xb = x + blk * D::kElems;
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) {
      D::Block(w + j * w_stride + blk * D::kBytes, [&](int off, __m512 v) {
        const int p = (off / 16) % P;
#pragma GCC unroll 3
        for (int r = 0; r < M; ++r) {
          acc[r][j][p] = _mm512_fmadd_ps(v, _mm512_loadu_ps(xb + r * k + off), acc[r][j][p]);
        }
      });
    }
  }
  for (int r = 0; r < M; ++r) {
    for (int j = 0; j < NR; ++j) {
      __m512 sum = acc[r][j][0];
      if constexpr (P == 2) sum = _mm512_add_ps(sum, acc[r][j][1]);
      float s = _mm512_reduce_add_ps(sum);
      if constexpr (D::kFloat) {
        for (int64_t i = nb * D::kElems; i < k; ++i) s += x[r * k + i] * D::One(w + j * w_stride, i);
      }
      y[r * ldy + j] = s;
    }
  }
}

template <class D, int M>
void DecodeRows(const float* x, int64_t k, const uint8_t* w, size_t w_stride, int64_t c_begin,
                int64_t c_end, float* y, int64_t ldy) {
  int64_t c = c_begin;
  for (; c + 4 <= c_end; c += 4) DecodeGroup<D, M, 4>(x, k, w + c * w_stride, w_stride, y + c, ldy);
  for (; c < c_end; ++c) DecodeGroup<D, M, 1>(x, k, w + c * w_stride, w_stride, y + c, ldy);
}

template <class D>
void Decode(const float* x, int64_t m, int64_t k, const uint8_t* w, size_t w_stride,
            int64_t c_begin, int64_t c_end, float* y, int64_t ldy) {
  switch (m) {
    case 1: return DecodeRows<D, 1>(x, k, w, w_stride, c_begin, c_end, y, ldy);
    case 2: return DecodeRows<D, 2>(x, k, w, w_stride, c_begin, c_end, y, ldy);
    default: return DecodeRows<D, 3>(x, k, w, w_stride, c_begin, c_end, y, ldy);
  }
}

// ---- prefill: dequantize a tile, then a register-blocked f32 GEMM ----------

template <class D>
void Dequant(const uint8_t* w, size_t w_stride, int64_t rows, int64_t k, float* out, int64_t ld) {
  const int64_t nb = k / D::kElems;
  for (int64_t i = 0; i < rows; ++i) {
    const uint8_t* row = w + i * w_stride;
    float* o = out + i * ld;
    for (int64_t blk = 0; blk < nb; ++blk) {
      float* ob = o + blk * D::kElems;
      D::Block(row + blk * D::kBytes, [ob](int off, __m512 v) { _mm512_storeu_ps(ob + off, v); });
    }
    int64_t j = nb * D::kElems;
    if constexpr (D::kFloat) {
      for (; j < k; ++j) o[j] = D::One(row, j);
    }
    for (; j < ld; ++j) o[j] = 0.0f;
  }
}

// Sums each of 16 vectors: lane 4r + c of the result is the sum of a[4c + r]
// (a transposing tree of 45 shuffles/adds instead of 16 full reductions).
inline __m512 Reduce16(const __m512* a) {
  __m512 t[8], u[4], v[2];
  for (int i = 0; i < 8; ++i) {  // halves: [a 8 lanes | b 8 lanes]
    t[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x44),
                         _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xEE));
  }
  for (int i = 0; i < 4; ++i) {  // quarters: 4 lanes each of 4 vectors
    u[i] = _mm512_add_ps(_mm512_shuffle_f32x4(t[2 * i], t[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(t[2 * i], t[2 * i + 1], 0xDD));
  }
  for (int i = 0; i < 2; ++i) {
    v[i] = _mm512_add_ps(_mm512_shuffle_ps(u[2 * i], u[2 * i + 1], 0x44),
                         _mm512_shuffle_ps(u[2 * i], u[2 * i + 1], 0xEE));
  }
  return _mm512_add_ps(_mm512_shuffle_ps(v[0], v[1], 0x88), _mm512_shuffle_ps(v[0], v[1], 0xDD));
}

// R x C outputs (R, C <= 4): accumulator 4c + r holds 16 lanes of x_r . w_c.
template <int R, int C>
void Tile(const float* x, int64_t k, const float* wd, int64_t ldw, float* y, int64_t ldy) {
  __m512 acc[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_setzero_ps();
  const int64_t k16 = k & ~int64_t{15};
  auto step = [&](int64_t i, __mmask16 mask) {
    __m512 wv[C];
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) wv[c] = _mm512_load_ps(wd + c * ldw + i);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512 xv = _mm512_maskz_loadu_ps(mask, x + r * k + i);
#pragma GCC unroll 4
      for (int c = 0; c < C; ++c) acc[4 * c + r] = _mm512_fmadd_ps(xv, wv[c], acc[4 * c + r]);
    }
  };
  for (int64_t i = 0; i < k16; i += 16) step(i, 0xffff);
  if (k16 < k) step(k16, static_cast<__mmask16>((1u << (k - k16)) - 1));
  alignas(64) float out[16];
  _mm512_store_ps(out, Reduce16(acc));
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) y[r * ldy + c] = out[4 * r + c];
  }
}

using TileFn = void (*)(const float*, int64_t, const float*, int64_t, float*, int64_t);
template <int R>
constexpr TileFn kTileRow[4] = {&Tile<R, 1>, &Tile<R, 2>, &Tile<R, 3>, &Tile<R, 4>};
constexpr const TileFn* kTiles[4] = {kTileRow<1>, kTileRow<2>, kTileRow<3>, kTileRow<4>};

void Gemm(const float* x, int64_t m, int64_t k, const float* wd, int64_t ldw, int64_t cols,
          float* y, int64_t ldy) {
  for (int64_t r = 0; r < m; r += 4) {
    const int rows = static_cast<int>(std::min<int64_t>(4, m - r));
    for (int64_t c = 0; c < cols; c += 4) {
      const int n = static_cast<int>(std::min<int64_t>(4, cols - c));
      kTiles[rows - 1][n - 1](x + r * k, k, wd + c * ldw, ldw, y + r * ldy + c, ldy);
    }
  }
}

template <class D>
Kernels For() {
  return {&Decode<D>, &Dequant<D>, &Gemm};
}

}  // namespace

Kernels Avx512Kernels(DType w_type) {
  switch (w_type) {
    case DType::kF32: return For<DecF32>();
    case DType::kF16: return For<DecF16>();
    case DType::kBF16: return For<DecBF16>();
    case DType::kQ4_0: return For<DecQ4_0>();
    case DType::kQ4_1: return For<DecQ4_1>();
    case DType::kQ5_0: return For<DecQ5_0>();
    case DType::kQ5_1: return For<DecQ5_1>();
    case DType::kQ8_0: return For<DecQ8_0>();
    case DType::kQ4_K: return For<DecQ45_K<false>>();
    case DType::kQ5_K: return For<DecQ45_K<true>>();
    case DType::kQ6_K: return For<DecQ6_K>();
    default: return {};
  }
}

}  // namespace matmul_exact_internal
}  // namespace alignserve
