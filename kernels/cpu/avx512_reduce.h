// Horizontal sums of zmm registers shared by the AVX-512 kernels (include
// only from files compiled with AVX-512 F/DQ enabled, *_avx512.cc).
//
// The tree is the one _mm512_reduce_add_ps uses: lane i + 8 onto lane i,
// then i + 4, i + 2, i + 1. Float addition is commutative, so the results
// equal _mm512_reduce_add_ps bit for bit (NaN payloads aside).
#ifndef ALIGNSERVE_KERNELS_CPU_AVX512_REDUCE_H_
#define ALIGNSERVE_KERNELS_CPU_AVX512_REDUCE_H_

#include <immintrin.h>

namespace alignserve::cpu {

// Sums each of 16 vectors: lane 4r + c of the result is the sum of
// a[4c + r], each by the tree above (a transposing tree of 45 shuffles and
// adds instead of 16 full reductions). To get sum(v_L) in lane L, pass
// a[t] = v_L with L = Reduce16Lane(t).
inline __attribute__((always_inline)) __m512 Reduce16(const __m512* a) {
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

// The result lane of Reduce16 that input a[slot] is summed into; the
// permutation is its own inverse (it also maps a lane to its slot).
constexpr int Reduce16Lane(int slot) { return 4 * (slot % 4) + slot / 4; }

}  // namespace alignserve::cpu

#endif  // ALIGNSERVE_KERNELS_CPU_AVX512_REDUCE_H_
