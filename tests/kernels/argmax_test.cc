// CpuBackend::ArgMax against a plain scan (tests/kernels/argmax_rows.h):
// the device-side greedy choice must be the host sampler's, lowest id on
// ties, NaN never chosen.
#include <catch2/catch.hpp>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "tests/kernels/argmax_rows.h"

namespace alignserve {
namespace {

TEST_CASE("cpu argmax picks the lowest id of the maximum and never NaN") {
  CpuBackend backend;
  std::mt19937 rng(11);
  for (const int64_t cols : {int64_t{1}, int64_t{7}, int64_t{1000}, int64_t{49152}}) {
    const int64_t rows = 13;
    std::vector<float> x = testing::HardArgmaxRows(rows, cols, rng);
    std::vector<int32_t> ids(rows, -7);
    Tensor logits(DType::kF32, {rows, cols}, x.data());
    Tensor out(DType::kI32, {rows, 1}, ids.data());
    REQUIRE(backend.ArgMax(logits, out).ok());
    for (int64_t r = 0; r < rows; ++r) {
      INFO("cols " << cols << " row " << r);
      CHECK(ids[r] == testing::OracleArgmax(x.data() + r * cols, cols));
    }
  }
}

TEST_CASE("cpu argmax refuses wrong dtypes and too few outputs") {
  CpuBackend backend;
  std::vector<float> x(6, 1.0f);
  std::vector<int32_t> ids(2);
  Tensor logits(DType::kF32, {3, 2}, x.data());
  Tensor short_out(DType::kI32, {2, 1}, ids.data());
  CHECK(absl::IsInvalidArgument(backend.ArgMax(logits, short_out)));
  Tensor f32_out(DType::kF32, {2, 1}, ids.data());
  Tensor two_rows(DType::kF32, {2, 3}, x.data());
  CHECK(absl::IsInvalidArgument(backend.ArgMax(two_rows, f32_out)));
}

}  // namespace
}  // namespace alignserve
