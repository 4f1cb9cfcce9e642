// A branch-free expf that loops calling it vectorize (std::exp is a libm
// call per element): Cephes' expf method. x = n ln 2 + r with n found by
// the 1.5 * 2^23 rounding trick and ln 2 in two parts, e^r by a degree-6
// polynomial, 2^n built in the exponent bits. Within 1.4 ulp of exp on
// [-87.3, 88.3]. Used by the CPU kernels (SiLU) and the sampler's softmax.
// Thread-safety: pure functions.
#ifndef ALIGNSERVE_KERNELS_CPU_EXP_APPROX_H_
#define ALIGNSERVE_KERNELS_CPU_EXP_APPROX_H_

#include <bit>
#include <cstdint>

namespace alignserve {

// The method's constants, shared with SIMD versions of it (the AVX-512
// attention kernel's softmax): log2(e); ln 2 = kLn2Hi - kLn2Lo, split so
// that n * kLn2Hi is exact; e^r = 1 + r + r^2 (((((p0 r + p1) r + p2) r +
// p3) r + p4) r + p5).
namespace exp_approx {
inline constexpr float kLog2e = 1.44269504088896341f;
inline constexpr float kLn2Hi = 0.693359375f;
inline constexpr float kLn2Lo = 2.12194440e-4f;
inline constexpr float kPoly[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                                   4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};
}  // namespace exp_approx

// e^x for x in [-87.3, 88.3]; callers clamp (outside, 2^n leaves the
// normal range and the result is garbage).
inline float ExpInRange(float x) {
  using namespace exp_approx;
  const float shifted = x * kLog2e + 12582912.0f;
  const int32_t n = std::bit_cast<int32_t>(shifted) - 0x4B400000;
  const float nf = shifted - 12582912.0f;
  const float r = x - nf * kLn2Hi + nf * kLn2Lo;
  float y = kPoly[0];
  for (int i = 1; i < 6; ++i) y = y * r + kPoly[i];
  y = y * r * r + r + 1.0f;
  return y * std::bit_cast<float>((n + 127) << 23);
}

}  // namespace alignserve

#endif  // ALIGNSERVE_KERNELS_CPU_EXP_APPROX_H_
