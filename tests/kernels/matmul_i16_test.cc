// MatMulI16 (16-bit activations, exact integer block sums) against:
//  * its portable scalar reference, bit for bit, for Q4_0 / Q4_1 / Q8_0 over
//    shapes that cover row groups (m 1..70), column tails (n % 16) and
//    chunk remainders (k up to 48 blocks, chunks of 16);
//  * the exact f64 product of the dequantized weights, within the bound the
//    header derives: sum_b (s_b / 2) sum_i |w_i| for the rounding of the
//    activations plus f32 rounding of the per-block terms;
//  * itself: batch invariance (a row's bits do not depend on m, its position
//    or the thread count) and MatMulI16Shared = MatMulI16 per weight.
#include "kernels/cpu/matmul_i16.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/thread_pool.h"
#include "tests/kernels/quant_test_data.h"

namespace alignserve {
namespace {

using matmul_i16_internal::kBlock;
using test_data::Dequantized;
using test_data::MakeWeights;
using test_data::RandomActivations;

const DType kTypes[] = {DType::kQ4_0, DType::kQ4_1, DType::kQ8_0};

bool HaveVnni() { return HostCpuIsa() == CpuIsa::kAvx512 && ActiveAvx512Vnni(); }

std::vector<float> Run(const std::vector<float>& x, int64_t m, int64_t k,
                       const std::vector<uint8_t>& w, DType t, int64_t n, ThreadPool& pool) {
  std::vector<float> y(m * n, std::numeric_limits<float>::quiet_NaN());
  MatMulI16(x.data(), m, k, w.data(), t, n, y.data(), pool);
  return y;
}

bool BitEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Activations with what real ones have: a few large outliers per row.
std::vector<float> SpikyActivations(int64_t m, int64_t k, uint32_t seed) {
  std::vector<float> x = RandomActivations(m, k, seed);
  for (int64_t i = 0; i < m * k; i += 97) x[i] *= 40.0f;
  return x;
}

TEST_CASE("the AVX-512 quantizer writes the scalar quantizer's bytes, within half a step") {
  if (!HaveVnni()) {
    WARN("skipped: no AVX512-VNNI on this CPU");
    return;
  }
  const int64_t k = 8 * kBlock;
  std::vector<float> x = SpikyActivations(1, k, 3);
  for (int i = 0; i < kBlock; ++i) x[kBlock + i] = 0.0f;            // an all-zero block
  for (int i = 0; i < kBlock; ++i) x[2 * kBlock + i] = 1e-33f * i;  // below 2^-100
  x[3 * kBlock + 5] = std::numeric_limits<float>::quiet_NaN();
  x[4 * kBlock + 31] = -std::numeric_limits<float>::infinity();
  // The block's largest is negative: its q is -32767.
  for (int i = 0; i < kBlock; ++i) x[5 * kBlock + i] = i == 7 ? -3.0f : 0.001f * i;
  using matmul_i16_internal::ActivationBlock;
  std::vector<ActivationBlock> qa(k / kBlock), qb(k / kBlock);
  matmul_i16_internal::QuantizeRowScalar(x.data(), k, qa.data());
  matmul_i16_internal::QuantizeRowAvx512(x.data(), k, qb.data());
  CHECK(std::memcmp(qa.data(), qb.data(), qa.size() * sizeof(ActivationBlock)) == 0);
  for (int64_t b = 0; b < k / kBlock; ++b) {
    INFO("block " << b);
    if (b == 3 || b == 4) {
      CHECK(std::isnan(qa[b].s));
      continue;
    }
    if (b == 2) continue;  // rounded to zero whole: checked below
    int32_t sum = 0;
    for (int i = 0; i < kBlock; ++i) {
      const int16_t q = qa[b].q[matmul_i16_internal::PermutedIndex(i)];
      CHECK(std::abs(q) <= 32767);
      CHECK(std::fabs(x[b * kBlock + i] - qa[b].s * q) <= qa[b].s * (0.5f + 1e-3f));
      sum += q;
    }
    CHECK(qa[b].c == qa[b].s * static_cast<float>(sum));
  }
  CHECK(qa[1].s == 0.0f);
  CHECK(qa[2].s == 0.0f);
  CHECK(qa[2].q[5] == 0);
  CHECK(qa[5].q[matmul_i16_internal::PermutedIndex(7)] == -32767);
}

TEST_CASE("the AVX-512 kernels equal the scalar reference bit for bit") {
  if (!HaveVnni()) {
    WARN("skipped: no AVX512-VNNI on this CPU");
    return;
  }
  ThreadPool pool(2);
  for (DType t : kTypes) {
    // Chunks of at most 24 blocks, cut evenly: 18 blocks are one chunk,
    // 25 are 13 + 12, 49 are 17 + 16 + 16.
    for (int64_t k : {32, 96, 18 * 32, 25 * 32, 49 * 32}) {
      for (int64_t n : {1, 15, 16, 17, 40}) {
        const std::vector<uint8_t> w = MakeWeights(t, n, k, static_cast<uint32_t>(k + n));
        const std::vector<float> x = SpikyActivations(70, k, static_cast<uint32_t>(n));
        for (int64_t m : {1, 2, 3, 5, 8, 9, 17, 70}) {
          INFO(DTypeName(t) << " k=" << k << " n=" << n << " m=" << m);
          const std::vector<float> fast = Run(x, m, k, w, t, n, pool);
          std::vector<float> reference;
          {
            ScopedCpuIsaCap cap(CpuIsa::kScalar);
            REQUIRE(MatMulI16KernelIsa() == CpuIsa::kScalar);
            reference = Run(x, m, k, w, t, n, pool);
          }
          CHECK(BitEqual(fast, reference));
        }
      }
    }
  }
}

TEST_CASE("MatMulI16 is within the derived bound of the exact product") {
  ThreadPool pool(2);
  for (DType t : kTypes) {
    const int64_t m = 9, k = 576, n = 33, nb = k / kBlock;
    const std::vector<uint8_t> w = MakeWeights(t, n, k, 11);
    const std::vector<float> x = SpikyActivations(m, k, 12);
    const std::vector<float> wd = Dequantized(t, w, n, k);
    const std::vector<float> y = Run(x, m, k, w, t, n, pool);
    double worst_ratio = 0;  // error / bound
    for (int64_t r = 0; r < m; ++r) {
      std::vector<matmul_i16_internal::ActivationBlock> q(nb);
      matmul_i16_internal::QuantizeRowScalar(x.data() + r * k, k, q.data());
      for (int64_t j = 0; j < n; ++j) {
        double exact = 0, quant_bound = 0, magnitude = 0;
        for (int64_t b = 0; b < nb; ++b) {
          double w_abs = 0;
          for (int i = 0; i < kBlock; ++i) {
            const int64_t e = b * kBlock + i;
            exact += static_cast<double>(x[r * k + e]) * wd[j * k + e];
            w_abs += std::fabs(wd[j * k + e]);
            magnitude += std::fabs(static_cast<double>(q[b].s) *
                                   q[b].q[matmul_i16_internal::PermutedIndex(i)] * wd[j * k + e]);
          }
          quant_bound += q[b].s / 2.0 * w_abs;
        }
        // f32 rounding: each block rounds two products and two fused adds,
        // each by 2^-24 of a partial sum. The per-block terms d * s * isum
        // and mn * c exceed |s q w| where d * u and mn cancel; 32 times
        // covers that for these weights (|mn| <= 0.15, d >= 0.002).
        const double bound = quant_bound + (4.0 * nb + 8) * 0x1p-24 * 32.0 * magnitude;
        const double err = std::fabs(y[r * n + j] - exact);
        worst_ratio = std::max(worst_ratio, err / bound);
      }
    }
    INFO(DTypeName(t) << " worst error / bound = " << worst_ratio);
    CHECK(worst_ratio <= 1.0);
    CHECK(worst_ratio > 0.0);  // the rounding is real, and the test sees it
  }
}

TEST_CASE("a row's MatMulI16 result is bitwise the same in any batch and on any thread count") {
  ThreadPool one(1), two(2);
  for (DType t : kTypes) {
    for (CpuIsa isa : AvailableCpuIsas()) {
      ScopedCpuIsaCap cap(isa);
      const int64_t k = 1536, n = 40, pool_rows = 13;
      const std::vector<uint8_t> w = MakeWeights(t, n, k, 21);
      const std::vector<float> rows = SpikyActivations(pool_rows, k, 22);
      std::vector<std::vector<float>> alone(pool_rows);
      for (int64_t i = 0; i < pool_rows; ++i) {
        alone[i] = Run(std::vector<float>(rows.begin() + i * k, rows.begin() + (i + 1) * k), 1, k,
                       w, t, n, one);
      }
      for (int64_t m : {2, 7, 8, 9, 64}) {
        std::vector<float> x(m * k);
        for (int64_t j = 0; j < m; ++j) {
          std::memcpy(x.data() + j * k, rows.data() + (j % pool_rows) * k, k * sizeof(float));
        }
        const std::vector<float> y = Run(x, m, k, w, t, n, two);
        int differing_rows = 0;
        for (int64_t j = 0; j < m; ++j) {
          differing_rows +=
              std::memcmp(y.data() + j * n, alone[j % pool_rows].data(), n * sizeof(float)) != 0;
        }
        INFO(DTypeName(t) << " isa=" << CpuIsaName(isa) << " m=" << m);
        CHECK(differing_rows == 0);
      }
    }
  }
}

TEST_CASE("MatMulI16Shared gives each weight exactly MatMulI16's result") {
  ThreadPool two(2);
  const int64_t k = 576;
  const std::vector<int64_t> widths = {576, 192, 0, 47};
  std::vector<std::vector<uint8_t>> weights;
  for (size_t i = 0; i < widths.size(); ++i) {
    weights.push_back(MakeWeights(kTypes[i % 3], widths[i], k, static_cast<uint32_t>(30 + i)));
  }
  for (int64_t m : {1, 3, 64}) {
    const std::vector<float> x = SpikyActivations(m, k, 31);
    std::vector<std::vector<float>> shared(widths.size());
    std::vector<MatMulPart> parts;
    for (size_t i = 0; i < widths.size(); ++i) {
      shared[i].assign(m * widths[i], std::numeric_limits<float>::quiet_NaN());
      parts.push_back({weights[i].data(), kTypes[i % 3], widths[i], shared[i].data()});
    }
    MatMulI16Shared(x.data(), m, k, parts, two);
    for (size_t i = 0; i < widths.size(); ++i) {
      INFO("m=" << m << " part " << i);
      CHECK(BitEqual(shared[i], Run(x, m, k, weights[i], kTypes[i % 3], widths[i], two)));
    }
  }
}

TEST_CASE("non-finite activations make only their own row NaN; zero rows give zeros") {
  ThreadPool pool(2);
  const int64_t m = 3, k = 96, n = 20;
  const std::vector<uint8_t> w = MakeWeights(DType::kQ4_1, n, k, 41);
  std::vector<float> x = SpikyActivations(m, k, 42);
  x[k + 40] = std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < k; ++i) x[2 * k + i] = 0.0f;
  const std::vector<float> y = Run(x, m, k, w, DType::kQ4_1, n, pool);
  for (int64_t j = 0; j < n; ++j) {
    CHECK(std::isfinite(y[j]));
    CHECK(std::isnan(y[n + j]));
    CHECK(y[2 * n + j] == 0.0f);
  }
}

TEST_CASE("MatMulI16 supports exactly the 4- and 8-bit block types") {
  for (DType t : kTypes) CHECK(MatMulI16Supports(t));
  for (DType t : {DType::kF32, DType::kF16, DType::kQ5_1, DType::kQ4_K, DType::kQ6_K}) {
    CHECK_FALSE(MatMulI16Supports(t));
  }
}

}  // namespace
}  // namespace alignserve
