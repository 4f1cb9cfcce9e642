// CpuBackend::MatMulShared (one input, several weights, one job) against
// CpuBackend::MatMul per weight: the same bits, biases included, in both
// matmul modes; and a wrong shape is an error that writes nothing.
#include <cstring>
#include <random>
#include <vector>

#include "catch2/catch.hpp"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/fp16.h"

namespace alignserve {
namespace {

std::vector<float> Random(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

// n x k F16 weights.
std::vector<uint16_t> HalfWeights(int64_t n, int64_t k, uint32_t seed) {
  std::vector<uint16_t> w;
  for (float x : Random(n * k, seed)) w.push_back(F32ToFp16(x * 0.1f));
  return w;
}

TEST_CASE("MatMulShared equals MatMul for each weight, bias included") {
  ThreadPool pool(2);
  const int64_t k = 64;
  const int64_t widths[] = {48, 16, 16};  // a Q/K/V shape with GQA
  std::vector<std::vector<uint16_t>> w;
  std::vector<std::vector<float>> bias;
  for (int i = 0; i < 3; ++i) {
    w.push_back(HalfWeights(widths[i], k, 10 + i));
    bias.push_back(Random(widths[i], 20 + i));
  }
  for (MatmulMode mode :
       {MatmulMode::kExact, MatmulMode::kInt16Activations, MatmulMode::kInt8Activations}) {
    CpuBackend backend(&pool, mode);
    for (int64_t m : {1, 5, 33}) {
      std::vector<float> x = Random(m * k, 7);
      const Tensor xt(DType::kF32, {m, k}, x.data());
      std::vector<Tensor> wt, bt;
      std::vector<std::vector<float>> shared(3), alone(3);
      for (int i = 0; i < 3; ++i) {
        wt.emplace_back(DType::kF16, std::initializer_list<int64_t>{widths[i], k}, w[i].data());
        bt.emplace_back(DType::kF32, std::initializer_list<int64_t>{widths[i]}, bias[i].data());
        shared[i].assign(m * widths[i], 0.0f);
        alone[i].assign(m * widths[i], 1.0f);
      }
      std::vector<Tensor> ys, ya;
      for (int i = 0; i < 3; ++i) {
        ys.emplace_back(DType::kF32, std::initializer_list<int64_t>{m, widths[i]},
                        shared[i].data());
        ya.emplace_back(DType::kF32, std::initializer_list<int64_t>{m, widths[i]}, alone[i].data());
      }
      // The middle weight has no bias, as K in a model with Q and V biases
      // only would.
      const Backend::MatMulTarget targets[] = {
          {&wt[0], &bt[0], &ys[0]}, {&wt[1], nullptr, &ys[1]}, {&wt[2], &bt[2], &ys[2]}};
      REQUIRE(backend.MatMulShared(xt, targets).ok());
      REQUIRE(backend.MatMul(xt, wt[0], &bt[0], ya[0]).ok());
      REQUIRE(backend.MatMul(xt, wt[1], nullptr, ya[1]).ok());
      REQUIRE(backend.MatMul(xt, wt[2], &bt[2], ya[2]).ok());
      for (int i = 0; i < 3; ++i) {
        INFO("mode " << static_cast<int>(mode) << " m=" << m << " weight " << i);
        CHECK(std::memcmp(shared[i].data(), alone[i].data(), shared[i].size() * 4) == 0);
      }
    }
  }
}

TEST_CASE("MatMulShared rejects a wrong output shape and writes nothing") {
  ThreadPool pool(1);
  CpuBackend backend(&pool, MatmulMode::kExact);
  const int64_t k = 32, m = 2;
  std::vector<float> x = Random(m * k, 3);
  std::vector<uint16_t> w0 = HalfWeights(8, k, 4), w1 = HalfWeights(8, k, 5);
  std::vector<float> y0(m * 8, -1.0f), y1(m * 7, -1.0f);
  const Tensor xt(DType::kF32, {m, k}, x.data());
  const Tensor wt0(DType::kF16, {8, k}, w0.data()), wt1(DType::kF16, {8, k}, w1.data());
  Tensor yt0(DType::kF32, {m, 8}, y0.data()), yt1(DType::kF32, {m, 7}, y1.data());
  const Backend::MatMulTarget targets[] = {{&wt0, nullptr, &yt0}, {&wt1, nullptr, &yt1}};
  const absl::Status s = backend.MatMulShared(xt, targets);
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(s.message()).find("matmul shapes") != std::string::npos);
  for (float v : y0) CHECK(v == -1.0f);
  for (float v : y1) CHECK(v == -1.0f);
}

}  // namespace
}  // namespace alignserve
