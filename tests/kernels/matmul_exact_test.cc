// MatMulExact against "DequantizeRow, then a double-precision dot product",
// for every supported weight type at every ISA level this machine has, over
// odd shapes that exercise both paths (decode m <= 3, prefill m >= 4), row
// and column remainders and (float types) k tails; and batch invariance: a
// row's output bits do not depend on m or on the row's position.
//
// Tolerance (derived, per output y[r, c] = sum_i x_i w_i, S = sum_i |x_i w_i|):
// the kernels' weights equal DequantizeRow's bit for bit (checked directly
// below), so the only error is f32 rounding of products and sums. Any
// summation order of k terms (with or without fused multiply-add) is within
// gamma_k * S <= (k + 2) * 2^-24 * S of the exact sum. For k = 1536 that is
// ~9e-5 * S worst case, against ~4e-3 * S for the int8-activation MatMul.
// Integer-valued inputs whose partial sums stay below 2^24 have no rounding
// at all, so there the result must be exactly the oracle.
#include "kernels/cpu/matmul_exact.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/dequantize.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/quant_blocks.h"
#include "kernels/thread_pool.h"
#include "tests/kernels/quant_test_data.h"

// Counts heap allocations made by this thread, for the steady-state test.
namespace {
thread_local long allocations_on_this_thread = 0;
}
void* operator new(size_t size) {
  ++allocations_on_this_thread;
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace alignserve {
namespace {

using matmul_exact_internal::Kernels;
using test_data::Dequantized;
using test_data::MakeWeights;
using test_data::RandomActivations;

const DType kTypes[] = {DType::kF32,  DType::kF16,  DType::kBF16, DType::kQ4_0,
                        DType::kQ4_1, DType::kQ5_0, DType::kQ5_1, DType::kQ8_0,
                        DType::kQ4_K, DType::kQ5_K, DType::kQ6_K};

// Exact-ish products (double) and S = sum |x w| for all m x n outputs.
struct Oracle {
  std::vector<double> y, magnitude;
};

Oracle Reference(const std::vector<float>& x, const std::vector<float>& wd, int64_t m, int64_t n,
                 int64_t k) {
  Oracle o{std::vector<double>(m * n), std::vector<double>(m * n)};
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      double s = 0, a = 0;
      for (int64_t i = 0; i < k; ++i) {
        const double p = static_cast<double>(x[r * k + i]) * wd[c * k + i];
        s += p;
        a += std::fabs(p);
      }
      o.y[r * n + c] = s;
      o.magnitude[r * n + c] = a;
    }
  }
  return o;
}

std::vector<int64_t> RowLengths(DType t) {
  if (Info(t).block_elems == kQKK) return {512, 1536};
  std::vector<int64_t> ks = {96, 512, 1536};
  if (!Info(t).quantized) {
    ks.push_back(37);    // a k tail shorter than one vector
    ks.push_back(1301);  // k chunks in prefill, the last with a tail
  }
  return ks;
}

// Runs MatMulExact on a NaN-poisoned y and returns it.
std::vector<float> RunExact(const std::vector<float>& x, int64_t m, int64_t k,
                            const std::vector<uint8_t>& w, DType t, int64_t n, ThreadPool& pool) {
  std::vector<float> y(m * n, std::numeric_limits<float>::quiet_NaN());
  MatMulExact(x.data(), m, k, w.data(), t, n, y.data(), pool);
  return y;
}

TEST_CASE("decoders reproduce DequantizeRow bit for bit at every ISA level") {
  for (DType t : kTypes) {
    for (int64_t k : RowLengths(t)) {
      const int64_t n = 5, ld = (k + 15) / 16 * 16 + 16;
      const std::vector<uint8_t> w = MakeWeights(t, n, k, 11);
      const std::vector<float> want = Dequantized(t, w, n, k);
      for (CpuIsa isa : AvailableCpuIsas()) {
        ScopedCpuIsaCap cap(isa);
        INFO(DTypeName(t) << " k=" << k << " isa=" << CpuIsaName(isa));
        const Kernels kernels = matmul_exact_internal::ActiveKernels(t);
        std::vector<float> got(n * ld, std::numeric_limits<float>::quiet_NaN());
        kernels.dequant(w.data(), RowBytes(t, k), n, k, got.data(), ld);
        int mismatches = 0, bad_padding = 0;
        for (int64_t c = 0; c < n; ++c) {
          mismatches += std::memcmp(got.data() + c * ld, want.data() + c * k, 4 * k) != 0;
          for (int64_t j = k; j < ld; ++j) bad_padding += got[c * ld + j] != 0.0f;
        }
        CHECK(mismatches == 0);
        CHECK(bad_padding == 0);
      }
    }
  }
}

TEST_CASE("MatMulExact equals the dequantized f32 product within float rounding") {
  ThreadPool pool(2);
  const int64_t kRows[] = {1, 2, 3, 4, 5, 17, 64};
  const int64_t kCols[] = {1, 7, 33, 130};
  for (DType t : kTypes) {
    for (int64_t k : RowLengths(t)) {
      const std::vector<uint8_t> w = MakeWeights(t, 130, k, 21 + static_cast<uint32_t>(k));
      const std::vector<float> x = RandomActivations(64, k, 5);
      const Oracle oracle = Reference(x, Dequantized(t, w, 130, k), 64, 130, k);
      const double unit = std::ldexp(1.0, -24) * static_cast<double>(k + 2);
      for (CpuIsa isa : AvailableCpuIsas()) {
        ScopedCpuIsaCap cap(isa);
        for (int64_t m : kRows) {
          for (int64_t n : kCols) {
            const std::vector<float> y = RunExact(x, m, k, w, t, n, pool);
            double worst = 0;  // largest |error| / bound; NaN (unwritten) fails
            for (int64_t r = 0; r < m; ++r) {
              for (int64_t c = 0; c < n; ++c) {
                const double err = std::fabs(y[r * n + c] - oracle.y[r * 130 + c]);
                const double ratio = err / (unit * oracle.magnitude[r * 130 + c] + 1e-30);
                worst = std::isnan(err) ? std::numeric_limits<double>::infinity()
                                        : std::max(worst, ratio);
              }
            }
            INFO(DTypeName(t) << " isa=" << CpuIsaName(isa) << " m=" << m << " n=" << n
                              << " k=" << k << " worst err / bound = " << worst);
            CHECK(worst <= 1.0);
          }
        }
      }
    }
  }
}

TEST_CASE("integer-valued products are computed with no rounding at all") {
  ThreadPool pool(2);
  const int64_t k = 1536, n = 37;
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> small(-2, 2);
  std::vector<float> x(17 * k);
  for (float& v : x) v = static_cast<float>(small(rng));
  for (DType t : kTypes) {
    const std::vector<uint8_t> w = MakeWeights(t, n, k, 9, /*integer_valued=*/true);
    const Oracle oracle = Reference(x, Dequantized(t, w, n, k), 17, n, k);
    for (CpuIsa isa : AvailableCpuIsas()) {
      ScopedCpuIsaCap cap(isa);
      for (int64_t m : {1, 3, 17}) {
        INFO(DTypeName(t) << " isa=" << CpuIsaName(isa) << " m=" << m);
        REQUIRE(oracle.magnitude[0] < 16777216.0);  // partial sums exact in f32
        const std::vector<float> y = RunExact(x, m, k, w, t, n, pool);
        int inexact = 0;
        for (int64_t i = 0; i < m * n; ++i) inexact += y[i] != oracle.y[i];
        CHECK(inexact == 0);
      }
    }
  }
}

TEST_CASE("one thread and three threads give bitwise equal results") {
  ThreadPool one(1), three(3);
  for (DType t : {DType::kQ4_1, DType::kQ6_K, DType::kF16}) {
    const int64_t k = 512, n = 130;
    const std::vector<uint8_t> w = MakeWeights(t, n, k, 4);
    const std::vector<float> x = RandomActivations(64, k, 6);
    for (CpuIsa isa : AvailableCpuIsas()) {
      ScopedCpuIsaCap cap(isa);
      for (int64_t m : {1, 3, 5, 64}) {
        INFO(DTypeName(t) << " isa=" << CpuIsaName(isa) << " m=" << m);
        const std::vector<float> a = RunExact(x, m, k, w, t, n, one);
        const std::vector<float> b = RunExact(x, m, k, w, t, n, three);
        CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
      }
    }
  }
}

TEST_CASE("MatMulExactShared gives each weight exactly MatMulExact's result") {
  ThreadPool one(1), two(2);
  const int64_t k = 768;  // whole Q6_K blocks; the longest unchunked prefill row
  // Mixed types and widths, as in a Q4_K_M layer; an empty weight; a width
  // that is not a multiple of the decode group or the prefill tile.
  const DType types[] = {DType::kQ4_1, DType::kQ6_K, DType::kQ8_0, DType::kF16};
  const int64_t widths[] = {576, 0, 37, 192};
  std::vector<std::vector<uint8_t>> ws;
  for (int i = 0; i < 4; ++i) ws.push_back(MakeWeights(types[i], widths[i], k, 50 + i));
  const std::vector<float> x = RandomActivations(70, k, 9);
  for (CpuIsa isa : AvailableCpuIsas()) {
    ScopedCpuIsaCap cap(isa);
    for (ThreadPool* pool : {&one, &two}) {
      for (int64_t m : {1, 3, 4, 64, 70}) {
        std::vector<std::vector<float>> ys(4);
        std::vector<MatMulPart> parts;
        for (int i = 0; i < 4; ++i) {
          ys[i].assign(m * widths[i] + 1, -7.0f);  // one guard element past the end
          parts.push_back({ws[i].data(), types[i], widths[i], ys[i].data()});
        }
        MatMulExactShared(x.data(), m, k, parts, *pool);
        for (int i = 0; i < 4; ++i) {
          INFO("isa=" << CpuIsaName(isa) << " threads=" << pool->num_threads() << " m=" << m
                      << " part " << i << " " << DTypeName(types[i]));
          const std::vector<float> alone = RunExact(x, m, k, ws[i], types[i], widths[i], *pool);
          CHECK(std::memcmp(ys[i].data(), alone.data(), alone.size() * sizeof(float)) == 0);
          CHECK(ys[i].back() == -7.0f);
        }
      }
    }
  }
}

// Row lengths for the batch-invariance case: a k tail (float types), one
// past the old 640-element prefill chunk, and K-quant rows of 2 and 3 blocks.
std::vector<int64_t> InvarianceRowLengths(DType t) {
  if (Info(t).block_elems == kQKK) return {512, 768};
  if (!Info(t).quantized) return {37, 768, 1301};
  return {96, 768, 1312};
}

TEST_CASE("a row's result is bitwise the same whatever batch it is in (batch invariance)") {
  ThreadPool pool(2);
  constexpr int64_t kPoolRows = 65, n = 37;
  // 77: two prefill row blocks of the SIMD kernels, the second one partial.
  const int64_t kBatchRows[] = {1, 2, 3, 4, 5, 7, 8, 13, 64, 77};
  for (DType t : kTypes) {
    for (int64_t k : InvarianceRowLengths(t)) {
      const std::vector<uint8_t> w = MakeWeights(t, n, k, 31 + static_cast<uint32_t>(k));
      const std::vector<float> rows = RandomActivations(kPoolRows, k, 17);
      for (CpuIsa isa : AvailableCpuIsas()) {
        ScopedCpuIsaCap cap(isa);
        // alone[i]: pool row i computed on its own (m = 1, the decode path).
        std::vector<std::vector<float>> alone;
        for (int64_t i = 0; i < kPoolRows; ++i) {
          const std::vector<float> x(rows.begin() + i * k, rows.begin() + (i + 1) * k);
          alone.push_back(RunExact(x, 1, k, w, t, n, pool));
        }
        for (int64_t m : kBatchRows) {
          for (int64_t pos : {int64_t{0}, m - 1}) {
            // Batch row j is pool row (j - pos) mod kPoolRows: row 0 sits at
            // pos (and m = 77 repeats some rows).
            auto source = [&](int64_t j) {
              return ((j - pos) % kPoolRows + kPoolRows) % kPoolRows;
            };
            std::vector<float> x(m * k);
            for (int64_t j = 0; j < m; ++j) {
              std::memcpy(x.data() + j * k, rows.data() + source(j) * k, k * sizeof(float));
            }
            const std::vector<float> y = RunExact(x, m, k, w, t, n, pool);
            int differing_rows = 0;
            for (int64_t j = 0; j < m; ++j) {
              differing_rows +=
                  std::memcmp(y.data() + j * n, alone[source(j)].data(), n * sizeof(float)) != 0;
            }
            INFO(DTypeName(t) << " isa=" << CpuIsaName(isa) << " k=" << k << " m=" << m
                              << " row 0 at " << pos);
            CHECK(differing_rows == 0);
          }
        }
      }
    }
  }
}

TEST_CASE("MatMulExact allocates nothing in steady state") {
  ThreadPool pool(1);
  const int64_t k = 576, n = 192;
  const std::vector<uint8_t> w = MakeWeights(DType::kQ4_1, n, k, 8);
  const std::vector<float> x = RandomActivations(16, k, 8);
  std::vector<float> y(16 * n);
  for (int64_t m : {1, 16}) {
    MatMulExact(x.data(), m, k, w.data(), DType::kQ4_1, n, y.data(), pool);  // grows scratch
    const long before = allocations_on_this_thread;
    MatMulExact(x.data(), m, k, w.data(), DType::kQ4_1, n, y.data(), pool);
    CHECK(allocations_on_this_thread == before);
  }
}

TEST_CASE("MatMulExact validates the weight type and row length") {
  for (DType t : kTypes) CHECK(MatMulExactSupports(t));
  CHECK_FALSE(MatMulExactSupports(DType::kQ2_K));
  CHECK_FALSE(MatMulExactSupports(DType::kQ3_K));
  CHECK_FALSE(MatMulExactSupports(DType::kI32));
  CHECK(ValidateMatMulExactWeight(DType::kQ4_1, 96).ok());
  CHECK_FALSE(ValidateMatMulExactWeight(DType::kQ4_1, 100).ok());
  CHECK_FALSE(ValidateMatMulExactWeight(DType::kQ4_K, 96).ok());
  CHECK_FALSE(ValidateMatMulExactWeight(DType::kQ8_0, 0).ok());
  CHECK(ValidateMatMulExactWeight(DType::kF32, 37).ok());
}

TEST_CASE("empty products write nothing") {
  ThreadPool pool(2);
  float y = 42.0f;
  const std::vector<uint8_t> w = MakeWeights(DType::kQ8_0, 1, 32, 1);
  MatMulExact(nullptr, 0, 32, w.data(), DType::kQ8_0, 1, &y, pool);
  MatMulExact(nullptr, 1, 32, w.data(), DType::kQ8_0, 0, &y, pool);
  CHECK(y == 42.0f);
}

}  // namespace
}  // namespace alignserve
