// Random weights and activations for the matmul kernel tests: quantized
// blocks with sane fp16 scales (some fp16-subnormal), float weights, normal
// activations, and the f32 values DequantizeRow gives the weights.
// Thread-safety: plain functions.
#ifndef ALIGNSERVE_TESTS_KERNELS_QUANT_TEST_DATA_H_
#define ALIGNSERVE_TESTS_KERNELS_QUANT_TEST_DATA_H_

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/dequantize.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/quant_blocks.h"
#include "kernels/dtype.h"

namespace alignserve::test_data {

struct ScaleField {
  int offset;   // byte offset of an fp16 field inside the block
  bool is_min;  // an additive offset (Q4_1/Q5_1 m, K-quant dmin)
};

inline std::vector<ScaleField> ScaleFields(DType t) {
  switch (t) {
    case DType::kQ4_0:
    case DType::kQ5_0:
    case DType::kQ8_0:
      return {{0, false}};
    case DType::kQ4_1:
    case DType::kQ5_1:
    case DType::kQ4_K:
    case DType::kQ5_K:
      return {{0, false}, {2, true}};
    case DType::kQ6_K:
      return {{208, false}};
    default:
      return {};
  }
}

inline void PutHalf(uint8_t* p, float v) {
  const uint16_t h = F32ToFp16(v);
  std::memcpy(p, &h, 2);
}

// n rows of k elements: random quant bits, sane fp16 scales (1 block in 8
// gets an fp16-subnormal scale, to prove those convert exactly), random
// finite values for the float types. integer_valued: scale 1, offset -8 or
// 1 (and small integer floats), so every weight is a small integer.
inline std::vector<uint8_t> MakeWeights(DType t, int64_t n, int64_t k, uint32_t seed,
                                        bool integer_valued = false) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> scale(0.002f, 0.02f), offset(-0.15f, 0.05f);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  std::uniform_int_distribution<int> small_int(-3, 3);
  std::vector<uint8_t> w(RowBytes(t, k) * n);
  if (!Info(t).quantized) {
    const int64_t count = n * k;
    for (int64_t i = 0; i < count; ++i) {
      const float v = integer_valued ? static_cast<float>(small_int(rng)) : value(rng);
      if (t == DType::kF32) std::memcpy(w.data() + 4 * i, &v, 4);
      if (t == DType::kF16) PutHalf(w.data() + 2 * i, v);
      if (t == DType::kBF16) {
        const uint16_t b = F32ToBf16(v);
        std::memcpy(w.data() + 2 * i, &b, 2);
      }
    }
    return w;
  }
  for (uint8_t& b : w) b = static_cast<uint8_t>(rng());
  const int block_bytes = Info(t).block_bytes;
  const std::vector<ScaleField> fields = ScaleFields(t);
  for (size_t blk = 0; blk * block_bytes < w.size(); ++blk) {
    uint8_t* p = w.data() + blk * block_bytes;
    const bool subnormal = rng() % 8 == 0;
    for (const ScaleField& f : fields) {
      float v = f.is_min ? offset(rng) : scale(rng);
      if (subnormal) v *= 1e-3f;
      if (integer_valued) {
        v = f.is_min ? (t == DType::kQ4_1 || t == DType::kQ5_1 ? -8.0f : 1.0f) : 1.0f;
      }
      PutHalf(p + f.offset, v);
    }
    if (integer_valued && t == DType::kQ6_K) {
      for (int j = 0; j < 16; ++j) {
        p[192 + j] = static_cast<uint8_t>(static_cast<int8_t>(small_int(rng)));
      }
    }
  }
  return w;
}

inline std::vector<float> Dequantized(DType t, const std::vector<uint8_t>& w, int64_t n,
                                      int64_t k) {
  std::vector<float> out(n * k);
  for (int64_t c = 0; c < n; ++c) {
    REQUIRE(DequantizeRow(t, w.data() + c * RowBytes(t, k), k, out.data() + c * k).ok());
  }
  return out;
}

inline std::vector<float> RandomActivations(int64_t m, int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(m * k);
  for (float& v : x) v = normal(rng);
  return x;
}

}  // namespace alignserve::test_data

#endif  // ALIGNSERVE_TESTS_KERNELS_QUANT_TEST_DATA_H_
