// AVX-512 (F/BW/VL/DQ) kernels of MatMulExact (see matmul_exact.h).
//
// Each weight type has a decoder that turns one block into floats, 16 at a
// time, equal bit for bit to DequantizeRow: every product of a scale and a
// quant is exact in f32 (at most 11 + 6 + 6 significant bits), so a fused
// multiply-add fma(d, q, m) rounds once exactly where gguf-py's d * q + m
// does; Q6_K's (d * sc) * (q - 32) is the same single multiplication.
// Scales go through F16C (_cvtsh_ss), exact for every non-NaN half.
//
// Both paths follow the canonical order of this level (matmul_exact.h): per
// output one zmm accumulator, fma(x[i, i + 16), w[i, i + 16), acc) for i =
// 0, 16, 32, ... (a last step on zero-filled x and w lanes past k), then
// ReduceOne's tree. Decode fuses the decoder with those FMAs into up to 3
// activation rows for 4 weight rows at once; prefill stores decoded tiles
// and runs a 4 x 4 tile kernel (16 zmm accumulators, one k step = 8 loads +
// 16 FMAs), cache-blocked in k without splitting any sum.
// GCC 12's own AVX-512 headers trip -Wuninitialized (the deliberately
// undefined pass-through operand of the unmasked conversions).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/cpu/avx512_reduce.h"
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
// offset (a multiple of 16 below kElems), in increasing offset order: the
// decode path's accumulation order is the emit order. Float types (kFloat)
// have 16-element "blocks" and Partial(p, mask) for the tail of a row: the
// elements at p under the mask's (low, contiguous) lanes, zeros elsewhere.
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
  EXACT_INLINE static __m512 Partial(const uint8_t* p, __mmask16 mask) {
    return _mm512_maskz_loadu_ps(mask, p);
  }
};

struct DecF16 {
  static constexpr int kElems = 16, kBytes = 32;
  static constexpr bool kFloat = true;
  template <class Emit>
  EXACT_INLINE static void Block(const uint8_t* p, Emit&& emit) {
    emit(0, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))));
  }
  EXACT_INLINE static __m512 Partial(const uint8_t* p, __mmask16 mask) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, p));
  }
};

struct DecBF16 {
  static constexpr int kElems = 16, kBytes = 32;
  static constexpr bool kFloat = true;
  template <class Emit>
  EXACT_INLINE static void Block(const uint8_t* p, Emit&& emit) {
    emit(0, Widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))));
  }
  EXACT_INLINE static __m512 Partial(const uint8_t* p, __mmask16 mask) {
    return Widen(_mm256_maskz_loadu_epi16(mask, p));
  }
  EXACT_INLINE static __m512 Widen(__m256i bf16) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bf16), 16));
  }
};

// ---- the canonical order ---------------------------------------------------

// One step of an output's accumulation: x and w lanes, in this operand order
// on both paths (so that even NaN payloads agree).
EXACT_INLINE __m512 Step(__m512 x, __m512 w, __m512 acc) { return _mm512_fmadd_ps(x, w, acc); }

// Lanes [0, count) of a k tail (0 < count < 16).
EXACT_INLINE __mmask16 TailMask(int64_t count) { return static_cast<__mmask16>((1u << count) - 1); }

// The sum of the 16 lanes by the halving tree: lane i + 8 onto lane i, then
// i + 4, i + 2, i + 1, the lower lane always the first operand. Reduce16
// (avx512_reduce.h) computes the same tree for 16 accumulators at once.
EXACT_INLINE float ReduceOne(__m512 v) {
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  const __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  const __m128 p = _mm_add_ps(q, _mm_movehl_ps(q, q));
  return _mm_cvtss_f32(_mm_add_ss(p, _mm_movehdup_ps(p)));
}

// ---- decode: m <= 3 rows, weights decoded in registers --------------------

// NR weight rows against M activation rows, one accumulator per output (the
// canonical order allows no more). At M = 1 that leaves NR = 4 FMA chains:
// enough, as each FMA comes with 2-4 decode operations (a group of 8 rows
// measured 3-15% slower, and 1.7x slower for Q4_K).
template <class D, int M, int NR>
void DecodeGroup(const float* x, int64_t k, const uint8_t* w, size_t w_stride, float* y,
                 int64_t ldy) {
  __m512 acc[M][NR];
#pragma GCC unroll 3
  for (int r = 0; r < M; ++r) {
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) acc[r][j] = _mm512_setzero_ps();
  }
  const int64_t nb = k / D::kElems;
  for (int64_t blk = 0; blk < nb; ++blk) {
    const float* xb = x + blk * D::kElems;
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) {
      auto step = [&](int off, __m512 v) __attribute__((always_inline)) {
#pragma GCC unroll 3
        for (int r = 0; r < M; ++r) {
          acc[r][j] = Step(_mm512_loadu_ps(xb + r * k + off), v, acc[r][j]);
        }
      };
      D::Block(w + j * w_stride + blk * D::kBytes, step);
    }
  }
  if constexpr (D::kFloat) {
    const int64_t i = nb * D::kElems;
    if (i < k) {
      const __mmask16 mask = TailMask(k - i);
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) {
        const __m512 v = D::Partial(w + j * w_stride + nb * D::kBytes, mask);
#pragma GCC unroll 3
        for (int r = 0; r < M; ++r) {
          acc[r][j] = Step(_mm512_maskz_loadu_ps(mask, x + r * k + i), v, acc[r][j]);
        }
      }
    }
  }
  for (int r = 0; r < M; ++r) {
    for (int j = 0; j < NR; ++j) y[r * ldy + j] = ReduceOne(acc[r][j]);
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
      auto store = [ob](int off, __m512 v) __attribute__((always_inline)) {
        _mm512_storeu_ps(ob + off, v);
      };
      D::Block(row + blk * D::kBytes, store);
    }
    int64_t j = nb * D::kElems;
    if constexpr (D::kFloat) {
      if (j < k) {
        const __mmask16 mask = TailMask(k - j);
        _mm512_mask_storeu_ps(o + j, mask, D::Partial(row + nb * D::kBytes, mask));
        j = k;
      }
    }
    for (; j < ld; ++j) o[j] = 0.0f;
  }
}

// k is cut into chunks of at most kMaxChunk elements (multiples of 16) so
// that a chunk of the kTileCols-row weight tile (<= 12 KB) stays in L1 while
// the row tiles of a block of kRowBlock activation rows sweep past it. Between
// chunks the 16-lane accumulators are parked in a carry buffer and reloaded
// as they are, so the steps each output sees, and their order, are those of
// one pass over all of k: chunking does not touch the canonical order.
// Measured (k = 1536, m = 64/512, Zen 5): chunks of 384 beat 256, 320, 512
// and 768, and one pass over all of k is ~25% slower (weight and activation
// rows then evict each other from L1); row blocks of 16..256 perform alike.
constexpr int64_t kMaxChunk = 384;
constexpr int64_t kRowBlock = 64;
// Accumulators of one row block: (kRowBlock / 4) x (kTileCols / 4) tiles of
// 16 vectors of 16 floats (32 KB per thread, 64-byte aligned, allocated once).
constexpr int64_t kCarryFloats = kRowBlock / 4 * (kTileCols / 4) * 16 * 16;
static_assert(kTileCols % 4 == 0 && kRowBlock % 4 == 0);

float* CarryBuffer() {
  thread_local std::vector<float> storage(kCarryFloats + 16);
  const auto addr = reinterpret_cast<uintptr_t>(storage.data());
  return storage.data() + ((64 - addr % 64) % 64) / sizeof(float);
}

// R x C outputs (R, C <= 4) over the k range [k0, k1) (a chunk; x rows are k
// apart): accumulator 4c + r holds 16 lanes of x_r . w_c. A chunk after the
// first resumes from carry, one before the last parks its accumulators there;
// the last adds the masked tail step and writes the sums to y.
template <int R, int C>
void Tile(const float* x, int64_t k, int64_t k0, int64_t k1, const float* wd, int64_t ldw,
          float* carry, float* y, int64_t ldy) {
  __m512 acc[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) {
    acc[i] = k0 == 0 ? _mm512_setzero_ps() : _mm512_load_ps(carry + 16 * i);
  }
  auto step = [&](int64_t i, __mmask16 mask) __attribute__((always_inline)) {
    __m512 wv[C];
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) wv[c] = _mm512_load_ps(wd + c * ldw + i);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512 xv = _mm512_maskz_loadu_ps(mask, x + r * k + i);
#pragma GCC unroll 4
      for (int c = 0; c < C; ++c) acc[4 * c + r] = Step(xv, wv[c], acc[4 * c + r]);
    }
  };
  const int64_t full_end = std::min(k1, k & ~int64_t{15});
  for (int64_t i = k0; i < full_end; i += 16) step(i, 0xffff);
  if (k1 < k) {
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) _mm512_store_ps(carry + 16 * i, acc[i]);
    return;
  }
  if (full_end < k) step(full_end, TailMask(k - full_end));
  // A copy, so that acc's address is never taken and it stays in registers.
  __m512 sums[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) sums[i] = acc[i];
  alignas(64) float out[16];
  _mm512_store_ps(out, cpu::Reduce16(sums));
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) y[r * ldy + c] = out[4 * r + c];
  }
}

using TileFn = void (*)(const float*, int64_t, int64_t, int64_t, const float*, int64_t, float*,
                        float*, int64_t);
template <int R>
constexpr TileFn kTileRow[4] = {&Tile<R, 1>, &Tile<R, 2>, &Tile<R, 3>, &Tile<R, 4>};
constexpr const TileFn* kTiles[4] = {kTileRow<1>, kTileRow<2>, kTileRow<3>, kTileRow<4>};

// Rows of up to kWholeRowMaxK elements are not chunked: the kTileCols-row
// weight tile (<= 24 KB) stays in L1 while the 4-row activation groups
// (<= 12 KB) stream past it, and every output runs over all of k in one
// call (no carry traffic). Measured on Zen 5 (matmul_exact_bench, m = 64,
// Q4_1 576 -> 576 and 576 -> 1536, 2 threads): 96.6 and 263 us against
// 121 and 299 us with 16-row tiles cut into chunks of 288; from k = 1536
// on, the chunked sweep below is as fast or faster.
constexpr int64_t kWholeRowMaxK = 768;

void Gemm(const float* x, int64_t m, int64_t k, const float* wd, int64_t ldw, int64_t cols,
          float* y, int64_t ldy) {
  if (k <= kWholeRowMaxK) {
    for (int64_t r = 0; r < m; r += 4) {
      const int rows = static_cast<int>(std::min<int64_t>(4, m - r));
      for (int64_t c = 0; c < cols; c += 4) {
        const int n = static_cast<int>(std::min<int64_t>(4, cols - c));
        kTiles[rows - 1][n - 1](x + r * k, k, 0, k, wd + c * ldw, ldw, nullptr, y + r * ldy + c,
                                ldy);
      }
    }
    return;
  }
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
        for (int64_t c = 0; c < cols; c += 4, slot += 16 * 16) {
          const int n = static_cast<int>(std::min<int64_t>(4, cols - c));
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

Kernels Avx512Kernels(DType w_type) {
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
