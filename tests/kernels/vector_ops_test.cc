// Row kernels whose fast paths replace a library call: SiluMulRow's
// vectorized exp against a double-precision silu, and F32ToFp16Row's F16C
// path against the scalar F32ToFp16 bit for bit (NaN, infinities,
// overflow, subnormals and rounding ties included), at every ISA level.
#include "kernels/cpu/vector_ops.h"

#include <bit>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/fp16.h"

namespace alignserve::cpu {
namespace {

TEST_CASE("SiluMulRow matches gate * sigmoid(gate) * up") {
  std::vector<float> gate, up;
  for (float g = -120.0f; g <= 120.0f; g += 0.37f) gate.push_back(g);
  std::mt19937 rng(11);
  std::normal_distribution<float> n(0.0f, 4.0f);
  for (int i = 0; i < 4000; ++i) gate.push_back(n(rng));
  for (size_t i = 0; i < gate.size(); ++i) up.push_back(0.5f + static_cast<float>(i % 7));
  std::vector<float> out(gate.size());
  SiluMulRow(gate.data(), up.data(), static_cast<int64_t>(gate.size()), out.data());
  for (size_t i = 0; i < gate.size(); ++i) {
    const double g = gate[i];
    const double want = g / (1.0 + std::exp(-g)) * up[i];
    INFO("gate " << gate[i]);
    // A few float roundings of a result, plus ~1e-38 absolute where the
    // exp saturates (|gate| > 87).
    CHECK(std::fabs(out[i] - want) <= 4e-7 * std::fabs(want) + 1e-30);
  }
  const float nan = std::numeric_limits<float>::quiet_NaN();
  float one_nan = 0.0f;
  SiluMulRow(&nan, up.data(), 1, &one_nan);
  CHECK(std::isnan(one_nan));
}

TEST_CASE("F32ToFp16Row equals F32ToFp16 on every kind of input, at every ISA level") {
  std::vector<float> x = {0.0f,
                          -0.0f,
                          1.0f,
                          65504.0f,
                          65519.0f,  // rounds down to 65504
                          65520.0f,  // rounds up to infinity
                          1e10f,
                          -1e10f,
                          std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::quiet_NaN(),
                          std::bit_cast<float>(0x7f812345u),  // signalling NaN with payload
                          6.1e-5f,                            // near the smallest normal
                          3e-8f,                              // subnormal half
                          1e-9f,                              // flushes to zero
                          1.0f + 1.0f / 2048.0f,              // a tie: rounds to even
                          1.0f + 3.0f / 2048.0f};             // a tie: rounds up
  std::mt19937 rng(2);
  for (int i = 0; i < 20000; ++i) x.push_back(std::bit_cast<float>(static_cast<uint32_t>(rng())));
  for (CpuIsa isa : AvailableCpuIsas()) {
    const ScopedCpuIsaCap cap(isa);
    std::vector<uint16_t> out(x.size());
    F32ToFp16Row(x.data(), static_cast<int64_t>(x.size()), out.data());
    int mismatches = 0;
    for (size_t i = 0; i < x.size(); ++i) mismatches += out[i] != F32ToFp16(x[i]);
    INFO("isa " << CpuIsaName(isa));
    CHECK(mismatches == 0);
  }
}

}  // namespace
}  // namespace alignserve::cpu
