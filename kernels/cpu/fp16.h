// Scalar, exact conversions between float and the 16-bit float formats that
// GGUF tensors use: IEEE binary16 ("fp16", ggml F16 and the scales inside
// quantized blocks) and bfloat16 (ggml BF16). Narrowing conversions round to
// nearest, ties to even; NaN stays NaN (quieted). These are the reference the
// SIMD conversions (F16C) must match.
// Thread-safety: pure functions.
#ifndef ALIGNSERVE_KERNELS_CPU_FP16_H_
#define ALIGNSERVE_KERNELS_CPU_FP16_H_

#include <bit>
#include <cstdint>

namespace alignserve {

// Exact: every binary16 value, subnormals, infinities and NaN payloads
// included, is representable as a float.
inline float Fp16ToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
  if (exp != 0) return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
  // Zero or subnormal: mant * 2^-24, exact in float (mant < 2^10).
  const float magnitude = static_cast<float>(mant) * 5.9604644775390625e-8f;
  return std::bit_cast<float>(sign | std::bit_cast<uint32_t>(magnitude));
}

// Round to nearest even; overflow (|f| >= 65520) gives infinity.
inline uint16_t F32ToFp16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  uint32_t a = x & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00u | ((a >> 13) & 0x3ffu);  // quiet NaN
  if (a >= 0x477ff000u) return sign | 0x7c00u;                        // rounds to inf
  if (a < 0x38800000u) {
    // Below 2^-14 the result is subnormal: adding 0.5f leaves a float whose
    // ulp is 2^-24, so the hardware's own round-to-nearest-even does the work.
    const float shifted = std::bit_cast<float>(a) + 0.5f;
    return sign | static_cast<uint16_t>(std::bit_cast<uint32_t>(shifted) - 0x3f000000u);
  }
  // Normal: rebias the exponent (127 -> 15) and round the 13 dropped bits.
  a += 0xc8000fffu + ((a >> 13) & 1u);
  return sign | static_cast<uint16_t>(a >> 13);
}

inline float Bf16ToF32(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

// Round to nearest even, as ggml_compute_fp32_to_bf16 (and gguf-py) do:
// NaN keeps its sign and top payload bits and is forced quiet.
inline uint16_t F32ToBf16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

}  // namespace alignserve

#endif  // ALIGNSERVE_KERNELS_CPU_FP16_H_
