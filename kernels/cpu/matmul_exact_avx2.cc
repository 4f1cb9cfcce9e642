// AVX2 + FMA + F16C kernels of MatMulExact (see matmul_exact.h); the same
// design as matmul_exact_avx512.cc at 8 lanes. Decoders reproduce
// DequantizeRow bit for bit for the same reason (every scale-by-quant
// product is exact in f32, so fma(d, q, m) rounds once where d * q + m does).
// Both paths follow this level's canonical order (matmul_exact.h): per output
// one ymm accumulator, fma(x[i, i + 8), w[i, i + 8), acc) for i = 0, 8, 16,
// ... (a last step on zero-filled x and w lanes past k), then HorizontalSum.
// Decode runs 4 weight rows at once; prefill tiles are 4 activation rows x
// 3 weight rows (12 ymm accumulators), cache-blocked in k without splitting
// any sum.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

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
EXACT_INLINE __m128i Load16(const void* p) {
  return _mm_loadu_si128(static_cast<const __m128i*>(p));
}
EXACT_INLINE __m128i Lo4(__m128i v) { return _mm_and_si128(v, _mm_set1_epi8(0x0f)); }
EXACT_INLINE __m128i Hi4(__m128i v) {
  return _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0x0f));
}
EXACT_INLINE __m128i Upper8(__m128i v) { return _mm_unpackhi_epi64(v, v); }
EXACT_INLINE __m256 U8ToPs(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }
EXACT_INLINE __m256 I8ToPs(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }

// 16 where bit i of `bits` (i < 16) is set, else 0, as 16 bytes.
EXACT_INLINE __m128i Bit4Bytes(uint32_t bits) {
  const __m128i spread = _mm_shuffle_epi8(_mm_cvtsi32_si128(static_cast<int>(bits)),
                                          _mm_set_epi64x(0x0101010101010101, 0));
  const __m128i select = _mm_set1_epi64x(static_cast<int64_t>(0x8040201008040201ULL));
  return _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(spread, select), select), _mm_set1_epi8(16));
}

// Lane mask for the last k % 8 elements of a row (maskload zeroes the rest).
EXACT_INLINE __m256i TailMask(int64_t count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The first count (< 8) 16-bit values at p, zeros after them (AVX2 has no
// 16-bit masked load; this runs once per row tail).
EXACT_INLINE __m128i LoadHalves(const uint8_t* p, int64_t count) {
  alignas(16) uint16_t halves[8] = {};
  std::memcpy(halves, p, static_cast<size_t>(2 * count));
  return _mm_load_si128(reinterpret_cast<const __m128i*>(halves));
}

// Emits the 16 bytes of q (quant values) as two 8-lane vectors at off, off + 8.
template <class Emit, class Convert>
EXACT_INLINE void EmitBytes(Emit& emit, int off, __m128i q, Convert convert) {
  emit(off, convert(q));
  emit(off + 8, convert(Upper8(q)));
}

// A decoder: kElems elements per block of kBytes bytes; Block(p, emit)
// calls emit(offset, v) with v = elements [offset, offset + 8) for every
// offset (a multiple of 8 below kElems), in increasing offset order: the
// decode path's accumulation order is the emit order. Float types (kFloat)
// have 8-element "blocks" and Partial(p, count) for the tail of a row: its
// first count (< 8) elements, zeros in the other lanes.
struct DecQ4_0 {
  static constexpr int kElems = 32, kBytes = sizeof(BlockQ4_0);
  static constexpr bool kFloat = false;
  template <class Emit>
  EXACT_INLINE static void Block(const uint8_t* p, Emit&& emit) {
    const auto* b = reinterpret_cast<const BlockQ4_0*>(p);
    const __m256 d = _mm256_set1_ps(Half(b->d));
    const __m128i q = Load16(b->qs), eight = _mm_set1_epi8(8);
    auto cvt = [d](__m128i v) __attribute__((always_inline)) {
      return _mm256_mul_ps(d, I8ToPs(v));
    };
    EmitBytes(emit, 0, _mm_sub_epi8(Lo4(q), eight), cvt);
    EmitBytes(emit, 16, _mm_sub_epi8(Hi4(q), eight), cvt);
  }
};

struct DecQ4_1 {
  static constexpr int kElems = 32, kBytes = sizeof(BlockQ4_1);
  static constexpr bool kFloat = false;
  template <class Emit>
  EXACT_INLINE static void Block(const uint8_t* p, Emit&& emit) {
    const auto* b = reinterpret_cast<const BlockQ4_1*>(p);
    const __m256 d = _mm256_set1_ps(Half(b->d)), m = _mm256_set1_ps(Half(b->m));
    const __m128i q = Load16(b->qs);
    auto cvt = [ d, m ](__m128i v) __attribute__((always_inline)) {
      return _mm256_fmadd_ps(d, U8ToPs(v), m);
    };
    EmitBytes(emit, 0, Lo4(q), cvt);
    EmitBytes(emit, 16, Hi4(q), cvt);
  }
};

struct DecQ5_0 {
  static constexpr int kElems = 32, kBytes = sizeof(BlockQ5_0);
  static constexpr bool kFloat = false;
  template <class Emit>
  EXACT_INLINE static void Block(const uint8_t* p, Emit&& emit) {
    const auto* b = reinterpret_cast<const BlockQ5_0*>(p);
    const __m256 d = _mm256_set1_ps(Half(b->d));
    uint32_t qh;
    std::memcpy(&qh, b->qh, 4);
    const __m128i q = Load16(b->qs), sixteen = _mm_set1_epi8(16);
    auto cvt = [d](__m128i v) __attribute__((always_inline)) {
      return _mm256_mul_ps(d, I8ToPs(v));
    };
    EmitBytes(emit, 0, _mm_sub_epi8(_mm_or_si128(Lo4(q), Bit4Bytes(qh)), sixteen), cvt);
    EmitBytes(emit, 16, _mm_sub_epi8(_mm_or_si128(Hi4(q), Bit4Bytes(qh >> 16)), sixteen), cvt);
  }
};

struct DecQ5_1 {
  static constexpr int kElems = 32, kBytes = sizeof(BlockQ5_1);
  static constexpr bool kFloat = false;
  template <class Emit>
  EXACT_INLINE static void Block(const uint8_t* p, Emit&& emit) {
    const auto* b = reinterpret_cast<const BlockQ5_1*>(p);
    const __m256 d = _mm256_set1_ps(Half(b->d)), m = _mm256_set1_ps(Half(b->m));
    uint32_t qh;
    std::memcpy(&qh, b->qh, 4);
    const __m128i q = Load16(b->qs);
    auto cvt = [ d, m ](__m128i v) __attribute__((always_inline)) {
      return _mm256_fmadd_ps(d, U8ToPs(v), m);
    };
    EmitBytes(emit, 0, _mm_or_si128(Lo4(q), Bit4Bytes(qh)), cvt);
    EmitBytes(emit, 16, _mm_or_si128(Hi4(q), Bit4Bytes(qh >> 16)), cvt);
  }
};

struct DecQ8_0 {
  static constexpr int kElems = 32, kBytes = sizeof(BlockQ8_0);
  static constexpr bool kFloat = false;
  template <class Emit>
  EXACT_INLINE static void Block(const uint8_t* p, Emit&& emit) {
    const auto* b = reinterpret_cast<const BlockQ8_0*>(p);
    const __m256 d = _mm256_set1_ps(Half(b->d));
    auto cvt = [d](__m128i v) __attribute__((always_inline)) {
      return _mm256_mul_ps(I8ToPs(v), d);
    };
    EmitBytes(emit, 0, Load16(b->qs), cvt);
    EmitBytes(emit, 16, Load16(b->qs + 16), cvt);
  }
};

// Q4_K / Q5_K: sub-block j is nibble j % 2 of qs[32 (j / 2) + l], plus (Q5_K)
// bit j of qh[l]; w = (d sc_j) q - dmin m_j.
template <bool kFive>
struct DecQ45_K {
  using B = std::conditional_t<kFive, BlockQ5_K, BlockQ4_K>;
  static constexpr int kElems = kQKK, kBytes = sizeof(B);
  static constexpr bool kFloat = false;
  template <class Emit>
  EXACT_INLINE static void Block(const uint8_t* p, Emit&& emit) {
    const auto* b = reinterpret_cast<const B*>(p);
    const float d = Half(b->d), dmin = Half(b->dmin);
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, mn;
      KQuantScaleMin(b->scales, j, &sc, &mn);
      const __m256 dl = _mm256_set1_ps(d * static_cast<float>(sc));
      const __m256 neg_ml = _mm256_set1_ps(-(dmin * static_cast<float>(mn)));
      auto cvt = [ dl, neg_ml ](__m128i v) __attribute__((always_inline)) {
        return _mm256_fmadd_ps(dl, U8ToPs(v), neg_ml);
      };
#pragma GCC unroll 2
      for (int half = 0; half < 2; ++half) {
        __m128i q = Load16(b->qs + 32 * (j / 2) + 16 * half);
        q = j % 2 ? Hi4(q) : Lo4(q);
        if constexpr (kFive) {
          const __m128i bit = _mm_set1_epi8(static_cast<char>(1 << j));
          const __m128i set = _mm_cmpeq_epi8(_mm_and_si128(Load16(b->qh + 16 * half), bit), bit);
          q = _mm_or_si128(q, _mm_and_si128(set, _mm_set1_epi8(16)));
        }
        EmitBytes(emit, 32 * j + 16 * half, q, cvt);
      }
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
      const __m256 dl = _mm256_set1_ps(d * static_cast<float>(b->scales[8 * g + 2 * s + t % 2]));
      auto cvt = [dl](__m128i v) __attribute__((always_inline)) {
        return _mm256_mul_ps(dl, I8ToPs(v));
      };
      EmitBytes(emit, 128 * g + 32 * s + l0, q, cvt);
    }
  }
};

struct DecF32 {
  static constexpr int kElems = 8, kBytes = 32;
  static constexpr bool kFloat = true;
  template <class Emit>
  EXACT_INLINE static void Block(const uint8_t* p, Emit&& emit) {
    emit(0, _mm256_loadu_ps(reinterpret_cast<const float*>(p)));
  }
  EXACT_INLINE static __m256 Partial(const uint8_t* p, int64_t count) {
    return _mm256_maskload_ps(reinterpret_cast<const float*>(p), TailMask(count));
  }
};

struct DecF16 {
  static constexpr int kElems = 8, kBytes = 16;
  static constexpr bool kFloat = true;
  template <class Emit>
  EXACT_INLINE static void Block(const uint8_t* p, Emit&& emit) {
    emit(0, _mm256_cvtph_ps(Load16(p)));
  }
  EXACT_INLINE static __m256 Partial(const uint8_t* p, int64_t count) {
    return _mm256_cvtph_ps(LoadHalves(p, count));
  }
};

struct DecBF16 {
  static constexpr int kElems = 8, kBytes = 16;
  static constexpr bool kFloat = true;
  template <class Emit>
  EXACT_INLINE static void Block(const uint8_t* p, Emit&& emit) {
    emit(0, Widen(Load16(p)));
  }
  EXACT_INLINE static __m256 Partial(const uint8_t* p, int64_t count) {
    return Widen(LoadHalves(p, count));
  }
  EXACT_INLINE static __m256 Widen(__m128i bf16) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bf16), 16));
  }
};

// One step of an output's accumulation: x and w lanes, in this operand order
// on both paths (so that even NaN payloads agree).
EXACT_INLINE __m256 Step(__m256 x, __m256 w, __m256 acc) { return _mm256_fmadd_ps(x, w, acc); }

// The sum of the 8 lanes by the halving tree (i + 4, i + 2, i + 1 onto lane
// i, the lower lane the first operand); the last stage of the canonical order.
EXACT_INLINE float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// ---- decode: m <= 3 rows, weights decoded in registers --------------------

// NR weight rows against M activation rows, one accumulator per output (the
// canonical order allows no more). At M = 1 that leaves NR = 4 FMA chains:
// enough, as each FMA comes with 2-4 decode operations (a group of 8 rows
// measured 3-15% slower, and 1.7x slower for Q4_K).
template <class D, int M, int NR>
void DecodeGroup(const float* x, int64_t k, const uint8_t* w, size_t w_stride, float* y,
                 int64_t ldy) {
  __m256 acc[M][NR];
#pragma GCC unroll 3
  for (int r = 0; r < M; ++r) {
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) acc[r][j] = _mm256_setzero_ps();
  }
  const int64_t nb = k / D::kElems;
  for (int64_t blk = 0; blk < nb; ++blk) {
    const float* xb = x + blk * D::kElems;
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) {
      auto step = [&](int off, __m256 v) __attribute__((always_inline)) {
#pragma GCC unroll 3
        for (int r = 0; r < M; ++r) {
          acc[r][j] = Step(_mm256_loadu_ps(xb + r * k + off), v, acc[r][j]);
        }
      };
      D::Block(w + j * w_stride + blk * D::kBytes, step);
    }
  }
  if constexpr (D::kFloat) {
    const int64_t i = nb * D::kElems;
    if (i < k) {
      const __m256i mask = TailMask(k - i);
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) {
        const __m256 v = D::Partial(w + j * w_stride + nb * D::kBytes, k - i);
#pragma GCC unroll 3
        for (int r = 0; r < M; ++r) {
          acc[r][j] = Step(_mm256_maskload_ps(x + r * k + i, mask), v, acc[r][j]);
        }
      }
    }
  }
  for (int r = 0; r < M; ++r) {
    for (int j = 0; j < NR; ++j) y[r * ldy + j] = HorizontalSum(acc[r][j]);
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
    case 1:
      return DecodeRows<D, 1>(x, k, w, w_stride, c_begin, c_end, y, ldy);
    case 2:
      return DecodeRows<D, 2>(x, k, w, w_stride, c_begin, c_end, y, ldy);
    default:
      return DecodeRows<D, 3>(x, k, w, w_stride, c_begin, c_end, y, ldy);
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
      auto store = [ob](int off, __m256 v) __attribute__((always_inline)) {
        _mm256_storeu_ps(ob + off, v);
      };
      D::Block(row + blk * D::kBytes, store);
    }
    int64_t j = nb * D::kElems;
    if constexpr (D::kFloat) {
      if (j < k) {
        _mm256_maskstore_ps(o + j, TailMask(k - j), D::Partial(row + nb * D::kBytes, k - j));
        j = k;
      }
    }
    for (; j < ld; ++j) o[j] = 0.0f;
  }
}

// k is cut into chunks so that a chunk of the weight tile stays in L1 while
// the row tiles of a block of activation rows sweep past it; the
// accumulators are parked in a carry buffer between chunks and reloaded as
// they are, so chunking does not touch the canonical order (see
// matmul_exact_avx512.cc, whose measurements set these).
constexpr int64_t kMaxChunk = 384;
constexpr int64_t kRowBlock = 64;
constexpr int64_t kColTiles = (kTileCols + 2) / 3;
// Accumulators of one row block: (kRowBlock / 4) x kColTiles tiles of 12
// vectors of 8 floats (18 KB per thread, 32-byte aligned, allocated once).
constexpr int64_t kCarryFloats = kRowBlock / 4 * kColTiles * 12 * 8;
static_assert(kRowBlock % 4 == 0);

float* CarryBuffer() {
  thread_local std::vector<float> storage(kCarryFloats + 8);
  const auto addr = reinterpret_cast<uintptr_t>(storage.data());
  return storage.data() + ((32 - addr % 32) % 32) / sizeof(float);
}

// R x C outputs (R <= 4, C <= 3) over the k range [k0, k1) (a chunk; x rows
// are k apart): accumulator [r][c] holds 8 lanes of x_r . w_c. A chunk after
// the first resumes from carry, one before the last parks its accumulators
// there; the last adds the masked tail step and writes the sums to y.
template <int R, int C>
void Tile(const float* x, int64_t k, int64_t k0, int64_t k1, const float* wd, int64_t ldw,
          float* carry, float* y, int64_t ldy) {
  __m256 acc[R][C];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 3
    for (int c = 0; c < C; ++c) {
      acc[r][c] = k0 == 0 ? _mm256_setzero_ps() : _mm256_load_ps(carry + 8 * (3 * r + c));
    }
  }
  auto step = [&](int64_t i, bool tail) __attribute__((always_inline)) {
    __m256 wv[C];
#pragma GCC unroll 3
    for (int c = 0; c < C; ++c) wv[c] = _mm256_load_ps(wd + c * ldw + i);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m256 xv = tail ? _mm256_maskload_ps(x + r * k + i, TailMask(k - i))
                             : _mm256_loadu_ps(x + r * k + i);
#pragma GCC unroll 3
      for (int c = 0; c < C; ++c) acc[r][c] = Step(xv, wv[c], acc[r][c]);
    }
  };
  const int64_t full_end = std::min(k1, k & ~int64_t{7});
  for (int64_t i = k0; i < full_end; i += 8) step(i, false);
  if (k1 < k) {
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 3
      for (int c = 0; c < C; ++c) _mm256_store_ps(carry + 8 * (3 * r + c), acc[r][c]);
    }
    return;
  }
  if (full_end < k) step(full_end, true);
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) y[r * ldy + c] = HorizontalSum(acc[r][c]);
  }
}

using TileFn = void (*)(const float*, int64_t, int64_t, int64_t, const float*, int64_t, float*,
                        float*, int64_t);
template <int R>
constexpr TileFn kTileRow[3] = {&Tile<R, 1>, &Tile<R, 2>, &Tile<R, 3>};
constexpr const TileFn* kTiles[4] = {kTileRow<1>, kTileRow<2>, kTileRow<3>, kTileRow<4>};

void Gemm(const float* x, int64_t m, int64_t k, const float* wd, int64_t ldw, int64_t cols,
          float* y, int64_t ldy) {
  const int64_t chunks = (k + kMaxChunk - 1) / kMaxChunk;
  const int64_t chunk = ((k + chunks - 1) / chunks + 15) / 16 * 16;
  float* const carry = chunks > 1 ? CarryBuffer() : nullptr;
  for (int64_t r0 = 0; r0 < m; r0 += kRowBlock) {
    const int64_t r1 = std::min(m, r0 + kRowBlock);
    for (int64_t k0 = 0; k0 < k; k0 += chunk) {
      const int64_t k1 = std::min(k, k0 + chunk);
      int64_t slot = 0;  // the same tile gets the same slot in every chunk
      for (int64_t r = r0; r < r1; r += 4) {
        const int rows = static_cast<int>(std::min<int64_t>(4, r1 - r));
        for (int64_t c = 0; c < cols; c += 3, slot += 12 * 8) {
          const int n = static_cast<int>(std::min<int64_t>(3, cols - c));
          kTiles[rows - 1][n - 1](x + r * k, k, k0, k1, wd + c * ldw, ldw,
                                  carry ? carry + slot : nullptr, y + r * ldy + c, ldy);
        }
      }
    }
  }
}

template <class D>
Kernels For() {
  return {&Decode<D>, &Dequant<D>, &Gemm};
}

}  // namespace

Kernels Avx2Kernels(DType w_type) {
  switch (w_type) {
#define ALIGNSERVE_EXACT_CASE(type, decoder) \
  case DType::type:                          \
    return For<decoder>();
    ALIGNSERVE_MATMUL_EXACT_TYPES(ALIGNSERVE_EXACT_CASE)
#undef ALIGNSERVE_EXACT_CASE
    default:
      return {};
  }
}

}  // namespace matmul_exact_internal
}  // namespace alignserve
