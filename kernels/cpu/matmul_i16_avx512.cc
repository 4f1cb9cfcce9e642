// The AVX512-VNNI kernels of MatMulI16 (matmul_i16.h). The whole file is
// compiled for VNNI; matmul_i16.cc calls in only when the CPU has it.
//
// A tile is 16 weight rows (outputs), one per lane. Each block of 32
// weights is transposed and unpacked once into 16 vectors W[p]: lane j of
// W[p] holds the int16 pair of row j that meets activation dword p
// (activations are stored with each group of 4 in the order 0, 2, 1, 3, so a
// dword is the pair (q0, q2) or (q1, q3)). Up to kChunkBlocks blocks are
// unpacked at a time into thread-local scratch (27 KB: L1); then groups of 8
// activation rows run over the chunk, each row adding vpdpwssd(W[p],
// broadcast dword p) for p = 0..15 into int32 lanes (the 16 outputs' exact
// block sums; 8 rows give the 8 independent chains that keep both VNNI pipes
// busy) and applying the canonical float steps of matmul_i16.h, lane by
// lane, to its 16 outputs held in a register. Between chunks the outputs
// wait in y.
#pragma GCC target("avx512vnni")

// GCC 12's own AVX-512 headers trip -Wuninitialized (the deliberate
// self-initialized value in _mm512_undefined_*); the warning is about them.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <limits>

#include "kernels/cpu/matmul_i16.h"
#include "kernels/cpu/quant_blocks.h"

namespace alignserve {
namespace matmul_i16_internal {
namespace {

constexpr int kPairs = kBlock / 2;  // activation dwords per block

// Per weight type: block size, where its 16- or 32-byte quant run starts.
template <DType kType>
struct Layout;
template <>
struct Layout<DType::kQ4_0> {
  static constexpr size_t kBytes = sizeof(BlockQ4_0);
  static constexpr size_t kQs = offsetof(BlockQ4_0, qs);
};
template <>
struct Layout<DType::kQ4_1> {
  static constexpr size_t kBytes = sizeof(BlockQ4_1);
  static constexpr size_t kQs = offsetof(BlockQ4_1, qs);
};
template <>
struct Layout<DType::kQ8_0> {
  static constexpr size_t kBytes = sizeof(BlockQ8_0);
  static constexpr size_t kQs = offsetof(BlockQ8_0, qs);
};

// g[i] lane j = the i-th dword of the 16 bytes at rows[j] + offset.
inline void Transpose16x4(const uint8_t* const rows[16], size_t offset, __m512i g[4]) {
  __m512i z[4];
  for (int a = 0; a < 4; ++a) {
    __m512i v =
        _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[a] + offset)));
    v = _mm512_inserti32x4(
        v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[a + 4] + offset)), 1);
    v = _mm512_inserti32x4(
        v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[a + 8] + offset)), 2);
    z[a] = _mm512_inserti32x4(
        v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[a + 12] + offset)), 3);
  }
  // 128-bit lane l of z[a] is row a + 4l; a 4x4 dword transpose in each lane
  // leaves dword j of g[i] = dword i of row j.
  const __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]);
  const __m512i t1 = _mm512_unpackhi_epi32(z[0], z[1]);
  const __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]);
  const __m512i t3 = _mm512_unpackhi_epi32(z[2], z[3]);
  g[0] = _mm512_unpacklo_epi64(t0, t2);
  g[1] = _mm512_unpackhi_epi64(t0, t2);
  g[2] = _mm512_unpacklo_epi64(t1, t3);
  g[3] = _mm512_unpackhi_epi64(t1, t3);
}

// g[i] lane j = the i-th dword of the 32 bytes at rows[j] + offset, i < 8.
inline void Transpose16x8(const uint8_t* const rows[16], size_t offset, __m512i g[8]) {
  __m512i z[8];
  for (int a = 0; a < 8; ++a) {
    z[a] = _mm512_inserti64x4(
        _mm512_castsi256_si512(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[a] + offset))),
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[a + 8] + offset)), 1);
  }
  // 128-bit lanes of z[a]: row a dwords 0-3 and 4-7, row a + 8 dwords 0-3
  // and 4-7. A 4x4 dword transpose in each lane of z[0..3] (rows 0-3 and
  // 8-11) and of z[4..7] (rows 4-7 and 12-15) ...
  __m512i t[8];
  for (int h = 0; h < 2; ++h) {
    const __m512i* zz = z + 4 * h;
    const __m512i a0 = _mm512_unpacklo_epi32(zz[0], zz[1]);
    const __m512i a1 = _mm512_unpackhi_epi32(zz[0], zz[1]);
    const __m512i a2 = _mm512_unpacklo_epi32(zz[2], zz[3]);
    const __m512i a3 = _mm512_unpackhi_epi32(zz[2], zz[3]);
    t[4 * h + 0] = _mm512_unpacklo_epi64(a0, a2);
    t[4 * h + 1] = _mm512_unpackhi_epi64(a0, a2);
    t[4 * h + 2] = _mm512_unpacklo_epi64(a1, a3);
    t[4 * h + 3] = _mm512_unpackhi_epi64(a1, a3);
  }
  // ... leaves dword i (lanes 0, 2) and 4 + i (lanes 1, 3) of four rows in
  // t[i] (rows 0-3 | 8-11) and t[4 + i] (rows 4-7 | 12-15); one two-source
  // qword permute puts the 16 rows in order.
  const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
  const __m512i hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
  for (int i = 0; i < 4; ++i) {
    g[i] = _mm512_permutex2var_epi64(t[i], lo, t[4 + i]);
    g[4 + i] = _mm512_permutex2var_epi64(t[i], hi, t[4 + i]);
  }
}

// One block of a tile: the weights unpacked into w[16], the scales d and
// (Q4 types) the offsets mn.
template <DType kType>
inline void PrepareBlock(const uint8_t* const rows[16], int64_t b, __m512i w[16], __m512& d,
                         __m512& mn) {
  using L = Layout<kType>;
  const size_t base = static_cast<size_t>(b) * L::kBytes;
  // The first 4 bytes of each row's block, d (and m) as fp16, gathered
  // through a small stack array: scalar loads and stores run on the integer
  // side, where a 16-lane gather cost a quarter of a single-row product.
  alignas(64) uint32_t heads[16];
  for (int j = 0; j < 16; ++j) std::memcpy(&heads[j], rows[j] + base, sizeof(uint32_t));
  const __m512i head = _mm512_load_si512(heads);

  d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(head));
  if constexpr (kType == DType::kQ8_0) {
    // Dword i of the quants is elements 4i..4i+3 (int8): words (e0, e2) and
    // (e1, e3), sign-extended, meet activation dwords 2i and 2i + 1.
    __m512i g[8];
    Transpose16x8(rows, base + L::kQs, g);
    for (int i = 0; i < 8; ++i) {
      w[2 * i] = _mm512_srai_epi16(_mm512_slli_epi16(g[i], 8), 8);
      w[2 * i + 1] = _mm512_srai_epi16(g[i], 8);
    }
  } else {
    if constexpr (kType == DType::kQ4_1) {
      mn = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(head, 16)));
    } else {
      mn = _mm512_mul_ps(d, _mm512_set1_ps(-8.0f));
    }
    // Byte i holds element i (low nibble) and element i + 16 (high nibble),
    // so dword i of the quants carries elements 4i..4i+3 and 4i+16..4i+19.
    __m512i g[4];
    Transpose16x4(rows, base + L::kQs, g);
    const __m512i nibble = _mm512_set1_epi32(0x000F000F);
    for (int i = 0; i < 4; ++i) {
      w[2 * i] = _mm512_and_si512(g[i], nibble);                            // e0, e2
      w[2 * i + 1] = _mm512_and_si512(_mm512_srli_epi16(g[i], 8), nibble);  // e1, e3
      w[2 * i + 8] = _mm512_and_si512(_mm512_srli_epi16(g[i], 4), nibble);  // e16, e18
      w[2 * i + 9] = _mm512_srli_epi16(g[i], 12);                           // e17, e19
    }
  }
}

// acc + W * (the dword at p, broadcast): vpdpwssd with an embedded
// broadcast, so the activation costs a load and no shuffle (GCC otherwise
// emits a separate vpbroadcastd).
inline __m512i DotPairs(__m512i acc, __m512i w, const int16_t* p) {
  asm("vpdpwssd %2%{1to16%}, %1, %0"
      : "+v"(acc)
      : "v"(w), "m"(*reinterpret_cast<const int32_t*>(p)));
  return acc;
}

// The thread's unpacked blocks of one tile: up to kChunkBlocks at a time (27 KB,
// L1), so every row group reloads W from L1 instead of unpacking it again.
constexpr int64_t kChunkBlocks = 24;
struct alignas(64) Chunk {
  __m512i w[kChunkBlocks][kPairs];
  __m512 d[kChunkBlocks];
  __m512 mn[kChunkBlocks];
};

Chunk& ThreadChunk() {
  thread_local Chunk chunk;
  return chunk;
}

// kRows activation rows from `row` over the chunk's blocks [b0, b0 + nbc),
// each row's 16 outputs in a register; y rows continue from their stored
// values unless `first`.
template <int kRows, bool kHasMin>
void RowsOverChunk(const QuantizedRows& a, int64_t row, const Chunk& chunk, int64_t b0, int64_t nbc,
                   bool first, __mmask16 mask, float* y, int64_t ldy) {
  // At least 8 independent dpwssd chains: short row groups split each row's
  // sum in two (integer sums: the split changes nothing).
  constexpr int kChains = kRows >= 8 ? 1 : 2;
  const int64_t nb = a.k / kBlock;
  __m512 out[kRows];
  for (int r = 0; r < kRows; ++r) {
    out[r] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask, y + (row + r) * ldy);
  }
  const ActivationBlock* x = a.blocks + row * nb + b0;
  for (int64_t i = 0; i < nbc; ++i, ++x) {
    __m512i acc[kRows][kChains];
    for (int r = 0; r < kRows; ++r) {
      for (int h = 0; h < kChains; ++h) acc[r][h] = _mm512_setzero_si512();
    }
    for (int p = 0; p < kPairs; ++p) {
      const __m512i wp = _mm512_load_si512(&chunk.w[i][p]);
      for (int r = 0; r < kRows; ++r) {
        acc[r][p % kChains] = DotPairs(acc[r][p % kChains], wp, x[r * nb].q + 2 * p);
      }
    }
    for (int r = 0; r < kRows; ++r) {
      __m512i sum = acc[r][0];
      if constexpr (kChains == 2) sum = _mm512_add_epi32(sum, acc[r][1]);
      const __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(x[r * nb].s));
      out[r] = _mm512_fmadd_ps(t, chunk.d[i], out[r]);
      if constexpr (kHasMin) {
        out[r] = _mm512_fmadd_ps(chunk.mn[i], _mm512_set1_ps(x[r * nb].c), out[r]);
      }
    }
  }
  for (int r = 0; r < kRows; ++r) _mm512_mask_storeu_ps(y + (row + r) * ldy, mask, out[r]);
}

constexpr int kRowGroup = 8;

template <bool kHasMin>
void AllRowsOverChunk(const QuantizedRows& a, const Chunk& chunk, int64_t b0, int64_t nbc,
                      bool first, __mmask16 mask, float* y, int64_t ldy) {
  int64_t r = 0;
  for (; r + kRowGroup <= a.m; r += kRowGroup) {
    RowsOverChunk<kRowGroup, kHasMin>(a, r, chunk, b0, nbc, first, mask, y, ldy);
  }
  // The last a.m % 8 rows: one kernel per group size.
  using RowsFn = void (*)(const QuantizedRows&, int64_t, const Chunk&, int64_t, int64_t, bool,
                          __mmask16, float*, int64_t);
  static constexpr RowsFn kTail[kRowGroup] = {nullptr,
                                              &RowsOverChunk<1, kHasMin>,
                                              &RowsOverChunk<2, kHasMin>,
                                              &RowsOverChunk<3, kHasMin>,
                                              &RowsOverChunk<4, kHasMin>,
                                              &RowsOverChunk<5, kHasMin>,
                                              &RowsOverChunk<6, kHasMin>,
                                              &RowsOverChunk<7, kHasMin>};
  if (r < a.m) kTail[a.m - r](a, r, chunk, b0, nbc, first, mask, y, ldy);
}

template <DType kType>
void Tile(const QuantizedRows& a, const uint8_t* w, size_t w_stride, int64_t c0, int64_t cols,
          float* y, int64_t ldy) {
  constexpr bool kHasMin = kType != DType::kQ8_0;
  // Lanes past the last column reread its row; their outputs are masked.
  const uint8_t* rows[16];
  for (int j = 0; j < 16; ++j) rows[j] = w + (c0 + std::min<int64_t>(j, cols - 1)) * w_stride;
  const __mmask16 mask = static_cast<__mmask16>(cols >= 16 ? 0xFFFF : (1u << cols) - 1);
  // The next tile's rows (contiguous) are fetched while this one computes:
  // 16 rows read block by block are more streams than the prefetchers follow.
  const uint8_t* next = w + (c0 + 16) * w_stride;
  const size_t next_bytes = 16 * w_stride;
  const int64_t nb = a.k / kBlock;
  const size_t prefetch_step = (next_bytes / nb + 63) / 64 * 64;
  Chunk& chunk = ThreadChunk();
  // Even chunks (18 blocks: one chunk, not 16 + 2): every chunk parks and
  // reloads the rows' outputs, which a short one does not repay.
  const int64_t chunks = (nb + kChunkBlocks - 1) / kChunkBlocks;
  const int64_t chunk_blocks = (nb + chunks - 1) / chunks;
  for (int64_t b0 = 0; b0 < nb; b0 += chunk_blocks) {
    const int64_t nbc = std::min(chunk_blocks, nb - b0);
    for (int64_t i = 0; i < nbc; ++i) {
      PrepareBlock<kType>(rows, b0 + i, chunk.w[i], chunk.d[i], chunk.mn[i]);
      const size_t at = static_cast<size_t>(b0 + i) * prefetch_step;
      for (size_t o = at; o < std::min(at + prefetch_step, next_bytes); o += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(next + o), _MM_HINT_T0);
      }
    }
    AllRowsOverChunk<kHasMin>(a, chunk, b0, nbc, b0 == 0, mask, y + c0, ldy);
  }
}

}  // namespace

void QuantizeRowAvx512(const float* x, int64_t k, ActivationBlock* out) {
  const __m512i order = _mm512_setr_epi32(0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15);
  const __m512 inf = _mm512_set1_ps(std::numeric_limits<float>::infinity());
  const __m512i hi = _mm512_set1_epi32(32767), lo = _mm512_set1_epi32(-32767);
  for (int64_t b = 0; b < k / kBlock; ++b) {
    ActivationBlock& o = out[b];
    const __m512 x0 = _mm512_loadu_ps(x + b * kBlock);
    const __m512 x1 = _mm512_loadu_ps(x + b * kBlock + 16);
    const __m512 a0 = _mm512_abs_ps(x0);
    const __m512 a1 = _mm512_abs_ps(x1);
    // Not finite: |x| is NaN (unordered) or infinite.
    const __mmask16 bad =
        _mm512_cmp_ps_mask(a0, inf, _CMP_NLT_UQ) | _mm512_cmp_ps_mask(a1, inf, _CMP_NLT_UQ);
    if (bad != 0) {
      std::memset(o.q, 0, sizeof(o.q));
      o.s = o.c = std::numeric_limits<float>::quiet_NaN();
      continue;
    }
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
    if (amax < kTinyAmax) {
      std::memset(o.q, 0, sizeof(o.q));
      o.s = o.c = 0.0f;
      continue;
    }
    const __m512 inv = _mm512_set1_ps(32767.0f / amax);
    __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_permutexvar_ps(order, x0), inv));
    __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_permutexvar_ps(order, x1), inv));
    q0 = _mm512_max_epi32(_mm512_min_epi32(q0, hi), lo);
    q1 = _mm512_max_epi32(_mm512_min_epi32(q1, hi), lo);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o.q), _mm512_cvtepi32_epi16(q0));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o.q + 16), _mm512_cvtepi32_epi16(q1));
    o.s = amax / 32767.0f;
    o.c = o.s * static_cast<float>(_mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1)));
  }
}

TileFn Avx512VnniTile(DType w_type) {
  switch (w_type) {
    case DType::kQ4_0:
      return &Tile<DType::kQ4_0>;
    case DType::kQ4_1:
      return &Tile<DType::kQ4_1>;
    case DType::kQ8_0:
      return &Tile<DType::kQ8_0>;
    default:
      return nullptr;
  }
}

}  // namespace matmul_i16_internal
}  // namespace alignserve
