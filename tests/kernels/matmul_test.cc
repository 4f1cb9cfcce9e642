// MatMul against a dequantize-then-double-precision reference, for every
// weight type at every ISA level this machine has, over odd shapes; and the
// SIMD integer paths against the scalar one.
//
// Tolerance (derived, per output y[r, c] = sum_i x_i w_i):
//  * Quantized W: activations are rounded to d * q with d = max|x_B| / 127
//    per activation block B, so |x_i - d q_i| <= max|x_B| / 254. Hence
//      |y - y_ref| <= sum_B (max|x_B| / 254) * sum_{i in B} |w_i|   (A)
//    plus float rounding of the block scales and accumulation. The kernels
//    add per-block terms d_w d_a isum (and min terms m * d_a sum q), whose
//    magnitudes are bounded by S = sum_i |x_i| (|w_i| + 2 |min_i|), where
//    min_i is the offset part of w_i (m for Q4_1/Q5_1, dmin * m_j for
//    Q2_K/Q4_K/Q5_K, else 0); with at most ~40 terms rounded at 2^-24 each,
//    1e-5 * S covers it. Bound: 1.001 * A + 1e-5 * S.
//  * F32/F16/BF16 W: exact f32 products (every ISA level; activations are
//    never rounded to a narrower float) and float accumulation of k terms:
//    (k + 2) * 2^-24 * sum |x_i w_i|.
// SIMD vs scalar (quantized W): both compute the same integer block sums
// from the same quantized activations; only float accumulation order differs,
// so they agree within 1e-5 * S.
#include "kernels/cpu/matmul.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <new>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/dequantize.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/matmul_kernels.h"
#include "kernels/cpu/quant_blocks.h"
#include "kernels/cpu/quantize_activations.h"

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

const DType kAllTypes[] = {DType::kF32,  DType::kF16,  DType::kBF16, DType::kQ4_0, DType::kQ4_1,
                           DType::kQ5_0, DType::kQ5_1, DType::kQ8_0, DType::kQ2_K, DType::kQ3_K,
                           DType::kQ4_K, DType::kQ5_K, DType::kQ6_K};

bool IsQuantized(DType t) { return Info(t).quantized; }

// Byte offsets of the fp16 scale fields in a block, so random blocks get
// sane scales rather than random (possibly NaN or huge) bit patterns.
std::vector<int> ScaleOffsets(DType t) {
  switch (t) {
    case DType::kQ4_1:
    case DType::kQ5_1:
    case DType::kQ4_K:
    case DType::kQ5_K:
      return {0, 2};
    case DType::kQ2_K:
      return {80, 82};
    case DType::kQ3_K:
      return {108};
    case DType::kQ6_K:
      return {208};
    default:
      return {0};
  }
}

std::vector<uint8_t> RandomWeights(DType t, int64_t n, int64_t k, std::mt19937& rng) {
  std::vector<uint8_t> w(RowBytes(t, k) * n);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  if (!IsQuantized(t)) {
    for (int64_t i = 0; i < n * k; ++i) {
      const float v = normal(rng);
      if (t == DType::kF32) std::memcpy(&w[4 * i], &v, 4);
      const uint16_t h = t == DType::kF16 ? F32ToFp16(v) : F32ToBf16(v);
      if (t != DType::kF32) std::memcpy(&w[2 * i], &h, 2);
    }
    return w;
  }
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> exponent(-10.0f, -4.0f);
  for (uint8_t& b : w) b = static_cast<uint8_t>(byte(rng));
  const int block_bytes = Info(t).block_bytes;
  for (size_t off = 0; off < w.size(); off += block_bytes) {
    for (int field : ScaleOffsets(t)) {
      const float sign = byte(rng) < 128 ? -1.0f : 1.0f;
      const uint16_t h = F32ToFp16(sign * std::exp2(exponent(rng)));
      std::memcpy(&w[off + field], &h, 2);
    }
  }
  return w;
}

// |offset part| of each weight (see the header comment), 0 for types without.
std::vector<float> MinMagnitudes(DType t, const uint8_t* row, int64_t k) {
  std::vector<float> out(k, 0.0f);
  const int block_bytes = Info(t).block_bytes;
  const int block = Info(t).block_elems;
  for (int64_t b = 0; b < k / block; ++b) {
    const uint8_t* raw = row + b * block_bytes;
    float* o = out.data() + b * block;
    if (t == DType::kQ4_1 || t == DType::kQ5_1) {
      const float m = std::fabs(Fp16ToF32(reinterpret_cast<const BlockQ4_1*>(raw)->m));
      for (int i = 0; i < block; ++i) o[i] = m;
    } else if (t == DType::kQ2_K) {
      const auto* blk = reinterpret_cast<const BlockQ2_K*>(raw);
      for (int i = 0; i < block; ++i) {
        o[i] = std::fabs(Fp16ToF32(blk->dmin)) * (blk->scales[i / 16] >> 4);
      }
    } else if (t == DType::kQ4_K || t == DType::kQ5_K) {
      const auto* blk = reinterpret_cast<const BlockQ4_K*>(raw);
      for (int i = 0; i < block; ++i) {
        uint8_t sc, m;
        KQuantScaleMin(blk->scales, i / 32, &sc, &m);
        o[i] = std::fabs(Fp16ToF32(blk->dmin)) * m;
      }
    }
  }
  return out;
}

struct Problem {
  DType type;
  int64_t m, n, k;
  std::vector<float> x;
  std::vector<uint8_t> w;
  std::vector<float> w_f32;  // dequantized, [n, k]
};

Problem MakeProblem(DType type, int64_t m, int64_t n, int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  Problem p{type, m, n, k, std::vector<float>(m * k), RandomWeights(type, n, k, rng), {}};
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& v : p.x) v = normal(rng);
  p.w_f32.resize(n * k);
  for (int64_t c = 0; c < n; ++c) {
    REQUIRE(DequantizeRow(type, p.w.data() + c * RowBytes(type, k), k, &p.w_f32[c * k]).ok());
  }
  return p;
}

std::vector<float> Run(const Problem& p, ThreadPool& pool) {
  std::vector<float> y(p.m * p.n, std::nanf(""));
  MatMul(p.x.data(), p.m, p.k, p.w.data(), p.type, p.n, y.data(), pool);
  return y;
}

// S of the header comment for output (r, c).
double Magnitude(const Problem& p, int64_t r, int64_t c) {
  const std::vector<float> mins =
      MinMagnitudes(p.type, p.w.data() + c * RowBytes(p.type, p.k), p.k);
  double s = 0;
  for (int64_t i = 0; i < p.k; ++i) {
    s += std::fabs(p.x[r * p.k + i]) * (std::fabs(p.w_f32[c * p.k + i]) + 2.0 * mins[i]);
  }
  return s;
}

double Tolerance(const Problem& p, int64_t r, int64_t c) {
  const float* x = &p.x[r * p.k];
  const float* w = &p.w_f32[c * p.k];
  double abs_dot = 0;
  for (int64_t i = 0; i < p.k; ++i) abs_dot += std::fabs(double{x[i]} * w[i]);
  if (!IsQuantized(p.type)) return (p.k + 2) * std::ldexp(1.0, -24) * abs_dot + 1e-30;
  const int block = ActivationBlock(QuantizedActivationFormat(p.type));
  double act_bound = 0;
  for (int64_t b = 0; b < p.k / block; ++b) {
    double amax = 0, wsum = 0;
    for (int i = 0; i < block; ++i) {
      amax = std::max(amax, double{std::fabs(x[b * block + i])});
      wsum += std::fabs(w[b * block + i]);
    }
    act_bound += amax / 254.0 * wsum;
  }
  return 1.001 * act_bound + 1e-5 * Magnitude(p, r, c);
}

// K-quant rows are whole 256-element super-blocks; 1536 is the model's MLP
// width (six super-blocks).
std::vector<int64_t> Ks(DType t) {
  if (Info(t).block_elems == 256) return {256 * 2, 256 * 6};
  return {32 * 3, 256 * 2};
}

TEST_CASE("MatMul matches a dequantized double-precision reference for every type and ISA") {
  ThreadPool pool(2);
  uint32_t seed = 1;
  for (DType type : kAllTypes) {
    for (CpuIsa isa : AvailableCpuIsas()) {
      ScopedCpuIsaCap cap(isa);
      for (int64_t k : Ks(type)) {
        for (int64_t m : {1, 3, 5, 17}) {
          for (int64_t n : {1, 7, 33, 130}) {
            INFO(DTypeName(type) << " isa " << CpuIsaName(isa) << " kernel "
                                 << CpuIsaName(MatMulKernelIsa(type)) << " m " << m << " n " << n
                                 << " k " << k);
            const Problem p = MakeProblem(type, m, n, k, seed++);
            const std::vector<float> y = Run(p, pool);
            int bad = 0;
            for (int64_t r = 0; r < m; ++r) {
              for (int64_t c = 0; c < n; ++c) {
                double ref = 0;
                for (int64_t i = 0; i < k; ++i) ref += double{p.x[r * k + i]} * p.w_f32[c * k + i];
                const double err = std::fabs(y[r * n + c] - ref);
                if (!(err <= Tolerance(p, r, c)) && ++bad <= 3) {
                  UNSCOPED_INFO("y[" << r << "," << c << "] = " << y[r * n + c] << " ref " << ref
                                     << " tol " << Tolerance(p, r, c));
                }
              }
            }
            REQUIRE(bad == 0);
          }
        }
      }
    }
  }
}

TEST_CASE("SIMD integer paths agree with the scalar path to float rounding") {
  ThreadPool pool(2);
  int compared = 0;
  for (DType type : kAllTypes) {
    for (CpuIsa isa : AvailableCpuIsas()) {
      if (isa == CpuIsa::kScalar) continue;
      ScopedCpuIsaCap cap(isa);
      if (MatMulKernelIsa(type) != isa) continue;  // no kernel of its own at this level
      for (int64_t k : Ks(type)) {
        for (int64_t m : {1, 5, 17}) {
          INFO(DTypeName(type) << " isa " << CpuIsaName(isa) << " m " << m << " k " << k);
          const Problem p = MakeProblem(type, m, 130, k, 1000 + compared);
          const std::vector<float> simd = Run(p, pool);
          std::vector<float> scalar;
          {
            ScopedCpuIsaCap scalar_cap(CpuIsa::kScalar);
            scalar = Run(p, pool);
          }
          for (int64_t r = 0; r < m; ++r) {
            for (int64_t c = 0; c < p.n; ++c) {
              const double tol = 1e-5 * Magnitude(p, r, c) + 1e-30;
              REQUIRE(std::fabs(double{simd[r * p.n + c]} - scalar[r * p.n + c]) <= tol);
            }
          }
          ++compared;
        }
      }
    }
  }
  // Q4_1 and Q8_0 (the default model's types) and the common K-quants must
  // have SIMD kernels at every level from AVX2 up (kAvx512 means VNNI ones).
  for (CpuIsa isa : AvailableCpuIsas()) {
    if (isa == CpuIsa::kScalar) continue;
    ScopedCpuIsaCap cap(isa);
    for (DType type : {DType::kQ4_1, DType::kQ8_0, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K}) {
      INFO(DTypeName(type) << " isa " << CpuIsaName(isa));
      CHECK(MatMulKernelIsa(type) == isa);
    }
    CHECK(compared > 0);
  }
}

TEST_CASE("MatMul output does not depend on the number of threads") {
  ThreadPool one(1), three(3);
  for (DType type : {DType::kQ4_1, DType::kQ8_0, DType::kF32, DType::kQ6_K}) {
    const Problem p = MakeProblem(type, 9, 261, 512, 77);
    const std::vector<float> a = Run(p, one);
    const std::vector<float> b = Run(p, three);
    CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("MatMul allocates nothing once its scratch has grown") {
  ThreadPool pool(1);  // a 1-thread pool runs inline; see the report on pool allocations
  const Problem p = MakeProblem(DType::kQ4_1, 4, 64, 576, 5);
  std::vector<float> y(p.m * p.n);
  for (CpuIsa isa : AvailableCpuIsas()) {
    ScopedCpuIsaCap cap(isa);
    MatMul(p.x.data(), p.m, p.k, p.w.data(), p.type, p.n, y.data(), pool);  // warm-up
    const long before = allocations_on_this_thread;
    MatMul(p.x.data(), p.m, p.k, p.w.data(), p.type, p.n, y.data(), pool);
    MatMul(p.x.data(), 1, p.k, p.w.data(), p.type, p.n, y.data(), pool);
    CHECK(allocations_on_this_thread == before);
  }
}

TEST_CASE("ValidateMatMulWeight rejects unknown types and partial blocks") {
  CHECK(ValidateMatMulWeight(DType::kQ4_1, 576).ok());
  CHECK(ValidateMatMulWeight(DType::kF32, 7).ok());
  CHECK_FALSE(ValidateMatMulWeight(DType::kQ4_1, 48).ok());
  CHECK_FALSE(ValidateMatMulWeight(DType::kQ4_K, 576).ok());
  CHECK_FALSE(ValidateMatMulWeight(DType::kQ8_K, 256).ok());
  CHECK_FALSE(ValidateMatMulWeight(DType::kI32, 4).ok());
  CHECK_FALSE(MatMulSupports(DType::kQ8_1));
}

TEST_CASE("ALIGNSERVE_CPU_ISA names parse, and the cap lowers the active level") {
  CHECK(ParseCpuIsa("scalar") == CpuIsa::kScalar);
  CHECK(ParseCpuIsa("avx2") == CpuIsa::kAvx2);
  CHECK(ParseCpuIsa("avx512") == CpuIsa::kAvx512);
  CHECK_FALSE(ParseCpuIsa("sse9").has_value());
  ScopedCpuIsaCap cap(CpuIsa::kScalar);
  CHECK(ActiveCpuIsa() == CpuIsa::kScalar);
  CHECK_FALSE(ActiveAvx512Vnni());
}

}  // namespace
}  // namespace alignserve
