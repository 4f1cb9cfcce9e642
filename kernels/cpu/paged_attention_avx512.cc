// AVX-512 kernels of CPU paged attention (see paged_attention_slice.h), for
// head dims that are multiples of 16: each K/V row segment of a head is
// head_dim / 16 zmm registers, converted from f16 on load (vcvtph2ps) when
// the cache holds f16. At decode the step is bound by reading the KV cache,
// so the kernel reads each block once per pass (scores, then values) as
// one contiguous run of all KV heads, and prefetches the next block of the
// block table (a different place in memory, where the hardware prefetcher
// would start cold) one row per row it works on.
// GCC 12's own AVX-512 headers trip -Wuninitialized (the deliberately
// undefined pass-through operand of the unmasked conversions).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/cpu/avx512_reduce.h"
#include "kernels/cpu/exp_approx.h"
#include "kernels/cpu/paged_attention_slice.h"

namespace alignserve::cpu::attention_internal {
namespace {

#define ATTENTION_INLINE inline __attribute__((always_inline))

template <class T>
ATTENTION_INLINE __m512 Load16(const T* p);
template <>
ATTENTION_INLINE __m512 Load16<float>(const float* p) {
  return _mm512_loadu_ps(p);
}
template <>
ATTENTION_INLINE __m512 Load16<uint16_t>(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// exp(x) of each lane, Cephes' expf (kernels/cpu/exp_approx.h's constants):
// x = n ln2 + r with |r| <= ln2 / 2, e^r by the polynomial, times 2^n by vscalefps;
// within 2 ulp of expf on [-87.3, 88.7]. Inputs below -87.3 (scores far
// under the row's maximum) give ~1e-38 instead of 0; NaN stays NaN.
ATTENTION_INLINE __m512 Exp(__m512 x) {
  using namespace exp_approx;
  x = _mm512_max_ps(_mm512_set1_ps(-87.3365448f), x);  // NaN in x passes through
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  __m512 p = _mm512_set1_ps(kPoly[0]);
#pragma GCC unroll 5
  for (int i = 1; i < 6; ++i) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kPoly[i]));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

ATTENTION_INLINE void PrefetchBytes(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (int64_t i = 0; i < bytes; i += 64) _mm_prefetch(c + i, _MM_HINT_T0);
}

ATTENTION_INLINE __mmask16 LanesBelow(int count) {
  return count >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << count) - 1);
}

template <class T, int kD16>
void Slice(const SliceArgs& a) {
  constexpr int d = 16 * kD16;
  const AttentionShape& s = *a.shape;
  const int kv_heads = s.num_kv_heads;
  const int group = s.num_heads / kv_heads;
  const int n = a.end - a.begin;
  const int64_t row = static_cast<int64_t>(kv_heads) * d;  // elements per slot
  const int64_t row_bytes = row * static_cast<int64_t>(sizeof(T));
  const T* k_cache = static_cast<const T*>(a.k_cache);
  const T* v_cache = static_cast<const T*>(a.v_cache);

  // Pass 1: scores[h * n + j] = scale * q_h . k_j for every query head h,
  // sixteen keys of a block run at a time: each key's partial (two FMA
  // chains, added) fills one input of Reduce16, whose one transposing tree
  // sums all sixteen exactly as _mm512_reduce_add_ps would sum each, and
  // one store writes their scores.
  ForEachBlockRun(
      a.block_table, s.block_size, a.begin, a.end, [&](int j0, int count, int64_t slot) {
        const int64_t next = NextBlockSlot(a.block_table, s.block_size, j0, a.end);
        const __m512 scale = _mm512_set1_ps(s.scale);
        for (int j = 0; j < count; j += 16) {
          const int keys = count - j < 16 ? count - j : 16;
          const T* k_rows = k_cache + (slot + j) * row;
          for (int qh = 0; qh < s.num_heads; ++qh) {
            const T* k_head = k_rows + (qh / group) * d;
            const float* q = a.q + static_cast<int64_t>(qh) * d;
            __m512 qv[kD16];
#pragma GCC unroll 16
            for (int c = 0; c < kD16; ++c) qv[c] = _mm512_loadu_ps(q + 16 * c);
            __m512 part[16];
#pragma GCC unroll 16
            for (int t = 0; t < 16; ++t) {
              const int key = Reduce16Lane(t);
              if (key >= keys) {
                part[t] = _mm512_setzero_ps();
                continue;
              }
              if (qh == 0 && next >= 0) {
                PrefetchBytes(k_cache + (next + j + key) * row, row_bytes);
              }
              const T* k = k_head + key * row;
              __m512 even = _mm512_mul_ps(qv[0], Load16(k));
              __m512 odd = _mm512_setzero_ps();
#pragma GCC unroll 16
              for (int c = 1; c < kD16; ++c) {
                __m512& acc = c % 2 ? odd : even;
                acc = _mm512_fmadd_ps(qv[c], Load16(k + 16 * c), acc);
              }
              part[t] = _mm512_add_ps(even, odd);
            }
            _mm512_mask_storeu_ps(a.scores + static_cast<int64_t>(qh) * n + (j0 - a.begin + j),
                                  LanesBelow(keys), _mm512_mul_ps(Reduce16(part), scale));
          }
        }
      });

  // Pass 2: per head, the maximum, then weights exp(s - max) and their sum.
  for (int qh = 0; qh < s.num_heads; ++qh) {
    float* p = a.scores + static_cast<int64_t>(qh) * n;
    __m512 max = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    for (int j = 0; j < n; j += 16) {
      const __mmask16 m = LanesBelow(n - j);
      max = _mm512_mask_max_ps(max, m, max, _mm512_maskz_loadu_ps(m, p + j));
    }
    const float max_score = _mm512_reduce_max_ps(max);
    const __m512 max_all = _mm512_set1_ps(max_score);
    __m512 sum = _mm512_setzero_ps();
    for (int j = 0; j < n; j += 16) {
      const __mmask16 m = LanesBelow(n - j);
      const __m512 w = Exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, p + j), max_all));
      _mm512_mask_storeu_ps(p + j, m, w);
      sum = _mm512_mask_add_ps(sum, m, sum, w);
    }
    a.out.max[qh] = max_score;
    a.out.sum[qh] = _mm512_reduce_add_ps(sum);
  }

  // Pass 3: acc_h += w_hj v_j, the output rows of up to kHeadsPerPass query
  // heads of one KV head held in registers over the positions of a block
  // run, so each V row is loaded once for all of them.
  constexpr int kHeadsPerPass = kD16 >= 16 ? 1 : 16 / kD16;
  for (int64_t i = 0; i < static_cast<int64_t>(s.num_heads) * d; i += 16) {
    _mm512_storeu_ps(a.out.acc + i, _mm512_setzero_ps());
  }
  ForEachBlockRun(
      a.block_table, s.block_size, a.begin, a.end, [&](int j0, int count, int64_t slot) {
        const int64_t next = NextBlockSlot(a.block_table, s.block_size, j0, a.end);
        for (int h = 0; h < kv_heads; ++h) {
          for (int g0 = 0; g0 < group; g0 += kHeadsPerPass) {
            const int heads = group - g0 < kHeadsPerPass ? group - g0 : kHeadsPerPass;
            const int qh0 = h * group + g0;
            const bool prefetch = next >= 0 && qh0 == 0;
            const float* w = a.scores + static_cast<int64_t>(qh0) * n + (j0 - a.begin);
            float* o = a.out.acc + static_cast<int64_t>(qh0) * d;
            __m512 acc[kHeadsPerPass][kD16];
#pragma GCC unroll 16
            for (int g = 0; g < kHeadsPerPass; ++g) {
#pragma GCC unroll 16
              for (int c = 0; c < kD16; ++c) {
                acc[g][c] = g < heads ? _mm512_loadu_ps(o + g * d + 16 * c) : _mm512_setzero_ps();
              }
            }
            for (int jj = 0; jj < count; ++jj) {
              if (prefetch) PrefetchBytes(v_cache + (next + jj) * row, row_bytes);
              const T* v = v_cache + (slot + jj) * row + h * d;
              __m512 vv[kD16];
#pragma GCC unroll 16
              for (int c = 0; c < kD16; ++c) vv[c] = Load16(v + 16 * c);
#pragma GCC unroll 16
              for (int g = 0; g < kHeadsPerPass; ++g) {
                if (g >= heads) break;
                const __m512 wj = _mm512_set1_ps(w[static_cast<int64_t>(g) * n + jj]);
#pragma GCC unroll 16
                for (int c = 0; c < kD16; ++c) {
                  acc[g][c] = _mm512_fmadd_ps(wj, vv[c], acc[g][c]);
                }
              }
            }
#pragma GCC unroll 16
            for (int g = 0; g < kHeadsPerPass; ++g) {
              if (g >= heads) break;
#pragma GCC unroll 16
              for (int c = 0; c < kD16; ++c) _mm512_storeu_ps(o + g * d + 16 * c, acc[g][c]);
            }
          }
        }
      });
}

template <class T>
SliceFn ForDim(int head_dim) {
  switch (head_dim) {
    case 32:
      return &Slice<T, 2>;
    case 64:
      return &Slice<T, 4>;
    case 80:
      return &Slice<T, 5>;
    case 96:
      return &Slice<T, 6>;
    case 128:
      return &Slice<T, 8>;
    default:
      return nullptr;
  }
}

}  // namespace

SliceFn Avx512SliceKernel(DType kv_type, int head_dim) {
  if (kv_type == DType::kF32) return ForDim<float>(head_dim);
  if (kv_type == DType::kF16) return ForDim<uint16_t>(head_dim);
  return nullptr;
}

}  // namespace alignserve::cpu::attention_internal
