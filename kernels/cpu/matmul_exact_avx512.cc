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
#include <cstddef>
#include <cstring>

#include "kernels/cpu/matmul_exact.h"
#include "kernels/cpu/quant_blocks.h"

namespace alignserve {
namespace matmul_exact_internal {
namespace {

// Everything on the hot path is force-inlined before scalar replacement of
// aggregates runs: otherwise accumulator arrays captured by the emit lambdas
// stay in memory, and because __m512/__m256 loads may alias anything GCC
// stores every accumulator back on each iteration.
#define EXACT_INLINE inline __attribute__((always_inline))

EXACT_INLINE float Half(uint16_t h) { return _cvtsh_ss(h); }
EXACT_INLINE __m128i Load16(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
EXACT_INLINE __m128i Lo4(__m128i v) { return _mm_and_si128(v, _mm_set1_epi8(0x0f)); }
EXACT_INLINE __m128i Hi4(__m128i v) { return _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0x0f)); }
EXACT_INLINE __m512 U8ToPs(__m128i v) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v)); }
EXACT_INLINE __m512 I8ToPs(__m128i v) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v)); }
// Adds 16 to byte i of v where bit i of `bits` is set (the fifth quant bit).
// The 32-element decoders read d (and m) from the first bytes of a block.
static_assert(offsetof(BlockQ4_0, d) == 0 && offsetof(BlockQ5_0, d) == 0 &&
              offsetof(BlockQ8_0, d) == 0);
static_assert(offsetof(BlockQ4_1, m) == 2 && offsetof(BlockQ5_1, m) == 2);

// The fp16 at p broadcast to all lanes as f32 (vpbroadcastw + vcvtph2ps:
// no scalar round trip).
EXACT_INLINE __m512 HalfToAll(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _mm512_cvtph_ps(_mm256_set1_epi16(static_cast<short>(h)));
}
// The fp16 pair (d, m) at p as all-d and all-m vectors (one conversion).
EXACT_INLINE void HalfPairToAll(const uint8_t* p, __m512* d, __m512* m) {
  uint32_t pair;
  std::memcpy(&pair, p, 4);
  const __m512 dm = _mm512_cvtph_ps(_mm256_set1_epi32(static_cast<int>(pair)));
  *d = _mm512_permute_ps(dm, 0x00);
  *m = _mm512_permute_ps(dm, 0x55);
}
// The 16 quant bytes of a 32-element block widened once to dwords: lane i
// holds byte i, whose low nibble is element i and high nibble element i + 16.
EXACT_INLINE __m512i Widen16(const uint8_t* qs) { return _mm512_cvtepu8_epi32(Load16(qs)); }
EXACT_INLINE __m512i LoNibbles(__m512i v) { return _mm512_and_si512(v, _mm512_set1_epi32(15)); }
EXACT_INLINE __m512i HiNibbles(__m512i v) { return _mm512_srli_epi32(v, 4); }
// Adds 16 to lane i where bit i of `bits` is set (the fifth quant bit).
EXACT_INLINE __m512i AddBit4(__m512i v, uint32_t bits) {
  return _mm512_mask_or_epi32(v, static_cast<__mmask16>(bits), v, _mm512_set1_epi32(16));
}
EXACT_INLINE __m512 ToPs(__m512i v) { return _mm512_cvtepi32_ps(v); }

// A decoder: kElems elements per block of kBytes bytes; Block(p, emit)
// calls emit(offset, v) with v = elements [offset, offset + 16) for every
// offset (a multiple of 16 below kElems). Float types (kFloat) have 16-element
// "blocks" and One(row, i) for the tail of a row.
struct DecQ4_0 {
  static constexpr int kElems = 32, kBytes = sizeof(BlockQ4_0);
  static constexpr bool kFloat = false;
  template <class Emit>
  EXACT_INLINE static void Block(const uint8_t* p, Emit&& emit) {
    const auto* b = reinterpret_cast<const BlockQ4_0*>(p);
    const __m512 d = HalfToAll(p);
    const __m512i q = Widen16(b->qs), eight = _mm512_set1_epi32(8);
    emit(0, _mm512_mul_ps(d, ToPs(_mm512_sub_epi32(LoNibbles(q), eight))));
    emit(16, _mm512_mul_ps(d, ToPs(_mm512_sub_epi32(HiNibbles(q), eight))));
  }
};

struct DecQ4_1 {
  static constexpr int kElems = 32, kBytes = sizeof(BlockQ4_1);
  static constexpr bool kFloat = false;
  template <class Emit>
  EXACT_INLINE static void Block(const uint8_t* p, Emit&& emit) {
    const auto* b = reinterpret_cast<const BlockQ4_1*>(p);
    __m512 d, m;
    HalfPairToAll(p, &d, &m);
    const __m512i q = Widen16(b->qs);
    emit(0, _mm512_fmadd_ps(d, ToPs(LoNibbles(q)), m));
    emit(16, _mm512_fmadd_ps(d, ToPs(HiNibbles(q)), m));
  }
};

struct DecQ5_0 {
  static constexpr int kElems = 32, kBytes = sizeof(BlockQ5_0);
  static constexpr bool kFloat = false;
  template <class Emit>
  EXACT_INLINE static void Block(const uint8_t* p, Emit&& emit) {
    const auto* b = reinterpret_cast<const BlockQ5_0*>(p);
    const __m512 d = HalfToAll(p);
    uint32_t qh;
    std::memcpy(&qh, b->qh, 4);
    const __m512i q = Widen16(b->qs), sixteen = _mm512_set1_epi32(16);
    const __m512i lo = _mm512_sub_epi32(AddBit4(LoNibbles(q), qh), sixteen);
    const __m512i hi = _mm512_sub_epi32(AddBit4(HiNibbles(q), qh >> 16), sixteen);
    emit(0, _mm512_mul_ps(d, ToPs(lo)));
    emit(16, _mm512_mul_ps(d, ToPs(hi)));
  }
};

struct DecQ5_1 {
  static constexpr int kElems = 32, kBytes = sizeof(BlockQ5_1);
  static constexpr bool kFloat = false;
  template <class Emit>
  EXACT_INLINE static void Block(const uint8_t* p, Emit&& emit) {
    const auto* b = reinterpret_cast<const BlockQ5_1*>(p);
    __m512 d, m;
    HalfPairToAll(p, &d, &m);
    uint32_t qh;
    std::memcpy(&qh, b->qh, 4);
    const __m512i q = Widen16(b->qs);
    emit(0, _mm512_fmadd_ps(d, ToPs(AddBit4(LoNibbles(q), qh)), m));
    emit(16, _mm512_fmadd_ps(d, ToPs(AddBit4(HiNibbles(q), qh >> 16)), m));
  }
};

struct DecQ8_0 {
  static constexpr int kElems = 32, kBytes = sizeof(BlockQ8_0);
  static constexpr bool kFloat = false;
  template <class Emit>
  EXACT_INLINE static void Block(const uint8_t* p, Emit&& emit) {
    const auto* b = reinterpret_cast<const BlockQ8_0*>(p);
    const __m512 d = HalfToAll(p);
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
  EXACT_INLINE static void Block(const uint8_t* p, Emit&& emit) {
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
      a = j % 2 ? Hi4(a) : Lo4(a);
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
  EXACT_INLINE static void Block(const uint8_t* p, Emit&& emit) {
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
  EXACT_INLINE static void Block(const uint8_t* p, Emit&& emit) {
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
  EXACT_INLINE static void Block(const uint8_t* p, Emit&& emit) {
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
  EXACT_INLINE static void Block(const uint8_t* p, Emit&& emit) {
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
#pragma GCC unroll 3
  for (int r = 0; r < M; ++r) {
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) {
#pragma GCC unroll 2
      for (int p = 0; p < P; ++p) acc[r][j][p] = _mm512_setzero_ps();
    }
  }
  const int64_t nb = k / D::kElems;
  for (int64_t blk = 0; blk < nb; ++blk) {
    const float* xb = x + blk * D::kElems;
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) {
      D::Block(w + j * w_stride + blk * D::kBytes, [&](int off, __m512 v) __attribute__((always_inline)) {
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

// At decode the weights come from DRAM (a model's layers exceed the
// caches) and the hardware prefetcher stops at 4 KiB pages, so the rows
// kPrefetchRows ahead of the group being decoded are prefetched explicitly
// (a thread's rows are one contiguous stream).
constexpr int64_t kPrefetchRows = 32;

void PrefetchRows(const uint8_t* w, size_t w_stride, int64_t c, int64_t c_end) {
  const int64_t first = c + kPrefetchRows;
  if (first >= c_end) return;
  const uint8_t* end = w + std::min(c_end, first + 4) * w_stride;
  for (const uint8_t* p = w + first * w_stride; p < end; p += 64) __builtin_prefetch(p, 0, 3);
}

template <class D, int M>
void DecodeRows(const float* x, int64_t k, const uint8_t* w, size_t w_stride, int64_t c_begin,
                int64_t c_end, float* y, int64_t ldy) {
  int64_t c = c_begin;
  for (; c + 4 <= c_end; c += 4) {
    PrefetchRows(w, w_stride, c, c_end);
    DecodeGroup<D, M, 4>(x, k, w + c * w_stride, w_stride, y + c, ldy);
  }
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
      D::Block(row + blk * D::kBytes, [ob](int off, __m512 v) __attribute__((always_inline)) { _mm512_storeu_ps(ob + off, v); });
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
EXACT_INLINE __m512 Reduce16(const __m512* a) {
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

// R x C outputs (R, C <= 4) over a k range of `len` elements: accumulator
// 4c + r holds 16 lanes of x_r . w_c. x rows are ldx apart. kAdd adds the
// sums to y (a later k chunk) instead of storing them.
template <int R, int C, bool kAdd>
void Tile(const float* x, int64_t ldx, int64_t len, const float* wd, int64_t ldw, float* y,
          int64_t ldy) {
  __m512 acc[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_setzero_ps();
  const int64_t len16 = len & ~int64_t{15};
  auto step = [&](int64_t i, __mmask16 mask) __attribute__((always_inline)) {
    __m512 wv[C];
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) wv[c] = _mm512_load_ps(wd + c * ldw + i);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512 xv = _mm512_maskz_loadu_ps(mask, x + r * ldx + i);
#pragma GCC unroll 4
      for (int c = 0; c < C; ++c) acc[4 * c + r] = _mm512_fmadd_ps(xv, wv[c], acc[4 * c + r]);
    }
  };
  for (int64_t i = 0; i < len16; i += 16) step(i, 0xffff);
  if (len16 < len) step(len16, static_cast<__mmask16>((1u << (len - len16)) - 1));
  // A copy, so that acc's address is never taken and it stays in registers.
  __m512 sums[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) sums[i] = acc[i];
  alignas(64) float out[16];
  _mm512_store_ps(out, Reduce16(sums));
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) {
      if constexpr (kAdd) {
        y[r * ldy + c] += out[4 * r + c];
      } else {
        y[r * ldy + c] = out[4 * r + c];
      }
    }
  }
}

using TileFn = void (*)(const float*, int64_t, int64_t, const float*, int64_t, float*, int64_t);
template <int R, bool kAdd>
constexpr TileFn kTileRow[4] = {&Tile<R, 1, kAdd>, &Tile<R, 2, kAdd>, &Tile<R, 3, kAdd>,
                                &Tile<R, 4, kAdd>};
template <bool kAdd>
constexpr const TileFn* kTiles[4] = {kTileRow<1, kAdd>, kTileRow<2, kAdd>, kTileRow<3, kAdd>,
                                     kTileRow<4, kAdd>};

// k is split into chunks of at most kMaxChunk (multiples of 16) so that a
// chunk of the kTileCols-row weight tile (<= 40 KB) and of 4 activation rows
// stay in L1 while all row tiles sweep past; each chunk after the first adds
// its partial sums to y.
constexpr int64_t kMaxChunk = 640;

void Gemm(const float* x, int64_t m, int64_t k, const float* wd, int64_t ldw, int64_t cols,
          float* y, int64_t ldy) {
  const int64_t chunks = (k + kMaxChunk - 1) / kMaxChunk;
  const int64_t chunk = ((k + chunks - 1) / chunks + 15) / 16 * 16;
  for (int64_t k0 = 0; k0 < k; k0 += chunk) {
    const int64_t len = std::min(chunk, k - k0);
    const TileFn* const* tiles = k0 == 0 ? kTiles<false> : kTiles<true>;
    for (int64_t r = 0; r < m; r += 4) {
      const int rows = static_cast<int>(std::min<int64_t>(4, m - r));
      for (int64_t c = 0; c < cols; c += 4) {
        const int n = static_cast<int>(std::min<int64_t>(4, cols - c));
        tiles[rows - 1][n - 1](x + r * k + k0, k, len, wd + c * ldw + k0, ldw, y + r * ldy + c,
                               ldy);
      }
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
