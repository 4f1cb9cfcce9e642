// Helpers for the CUDA backend tests: the same host values placed on two
// backends (the CPU reference in f32, the GPU in bf16), NaN-poisoned
// outputs, read-back in f32, and a bf16-aware closeness check.
// Every GPU test case starts with ALIGNSERVE_REQUIRE_CUDA(), which makes it
// pass with a warning on machines without a device.
#ifndef ALIGNSERVE_TESTS_GPU_GPU_TEST_UTIL_H_
#define ALIGNSERVE_TESTS_GPU_GPU_TEST_UTIL_H_

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cuda/cuda_backend.h"

// Catch2 v2 has no SKIP: warn and end the test case.
#define ALIGNSERVE_REQUIRE_CUDA()         \
  do {                                    \
    if (!::alignserve::CudaAvailable()) { \
      WARN("no CUDA device: skipped");    \
      return;                             \
    }                                     \
  } while (0)

namespace alignserve::testing {

// Uniform values in [-scale, scale], rounded to bf16 so that both backends
// see exactly the same inputs.
inline std::vector<float> RandomBf16Values(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = Bf16ToF32(F32ToBf16(dist(rng)));
  return v;
}

// Values of `type` (f32, f16 or bf16) as raw bytes.
inline std::vector<char> Encode(const std::vector<float>& values, DType type) {
  const size_t elem = Info(type).block_bytes;
  std::vector<char> bytes(values.size() * elem);
  for (size_t i = 0; i < values.size(); ++i) {
    if (type == DType::kF32) {
      std::memcpy(bytes.data() + 4 * i, &values[i], 4);
    } else {
      const uint16_t h = type == DType::kBF16 ? F32ToBf16(values[i]) : F32ToFp16(values[i]);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
    }
  }
  return bytes;
}

inline std::vector<float> Decode(const std::vector<char>& bytes, DType type) {
  const size_t elem = Info(type).block_bytes;
  std::vector<float> values(bytes.size() / elem);
  for (size_t i = 0; i < values.size(); ++i) {
    if (type == DType::kF32) {
      std::memcpy(&values[i], bytes.data() + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, bytes.data() + 2 * i, 2);
      values[i] = type == DType::kBF16 ? Bf16ToF32(h) : Fp16ToF32(h);
    }
  }
  return values;
}

// One backend under test, owning the memory of the tensors it made.
class Side {
 public:
  explicit Side(Backend& backend) : backend_(backend) {}
  Backend& backend() { return backend_; }
  DType act() const { return backend_.activation_dtype(); }

  // A [rows, cols] tensor of `type` holding `values` (f32, f16 or bf16).
  Tensor Make(const std::vector<float>& values, int64_t rows, int64_t cols, DType type) {
    REQUIRE(values.size() == static_cast<size_t>(rows * cols));
    const std::vector<char> bytes = Encode(values, type);
    Tensor t = Alloc(rows, cols, type);
    REQUIRE(backend_.CopyToDevice(t.data, bytes.data(), bytes.size()).ok());
    return t;
  }
  Tensor MakeAct(const std::vector<float>& values, int64_t rows, int64_t cols) {
    return Make(values, rows, cols, act());
  }
  // Filled with NaN, so that any element an op fails to write shows.
  Tensor Poisoned(int64_t rows, int64_t cols, DType type) {
    return Make(std::vector<float>(rows * cols, std::numeric_limits<float>::quiet_NaN()), rows,
                cols, type);
  }
  Tensor PoisonedAct(int64_t rows, int64_t cols) { return Poisoned(rows, cols, act()); }
  // A 1-D f32 tensor (norm weights, biases).
  Tensor Vector(const std::vector<float>& values) {
    Tensor t = Make(values, 1, static_cast<int64_t>(values.size()), DType::kF32);
    t.rank = 1;
    t.shape[0] = static_cast<int64_t>(values.size());
    return t;
  }
  std::vector<float> Read(const Tensor& t) { return ReadRaw(t.data, t.bytes(), t.dtype); }
  std::vector<float> ReadRaw(const void* data, size_t bytes, DType type) {
    std::vector<char> raw(bytes);
    REQUIRE(backend_.Synchronize().ok());
    REQUIRE(backend_.CopyToHost(raw.data(), data, bytes).ok());
    return Decode(raw, type);
  }

 private:
  Tensor Alloc(int64_t rows, int64_t cols, DType type) {
    auto buffer = backend_.Allocate(RowBytes(type, cols) * rows);
    REQUIRE(buffer.ok());
    Tensor t(type, {rows, cols}, (*buffer)->data());
    owned_.push_back(std::move(*buffer));
    return t;
  }

  Backend& backend_;
  std::vector<std::unique_ptr<DeviceBuffer>> owned_;
};

struct Tolerance {
  float rel;
  float abs;
};
// One rounding of an f32 result to bf16 (half an ulp is at most 2^-8 of the
// value), with room for f32 summation-order differences.
constexpr Tolerance kBf16Output{1.0f / 128, 1e-3f};
// f32 results of the same bf16-exact inputs, summed in another order.
constexpr Tolerance kF32Output{1e-4f, 1e-4f};

// Every element within tol of the reference; NaN anywhere fails.
inline void CheckClose(const std::vector<float>& got, const std::vector<float>& want,
                       Tolerance tol) {
  REQUIRE(got.size() == want.size());
  size_t bad = 0, worst = 0;
  float worst_excess = 0.0f;
  for (size_t i = 0; i < got.size(); ++i) {
    const float err = std::fabs(got[i] - want[i]);
    const float allowed = tol.abs + tol.rel * std::fabs(want[i]);
    if (!(err <= allowed)) {
      ++bad;
      const float excess = std::isnan(err) ? std::numeric_limits<float>::infinity() : err / allowed;
      if (excess > worst_excess) {
        worst_excess = excess;
        worst = i;
      }
    }
  }
  INFO(bad << " of " << got.size() << " outside tolerance; worst at " << worst << ": got "
           << got[worst] << ", want " << want[worst]);
  CHECK(bad == 0);
}

}  // namespace alignserve::testing

#endif  // ALIGNSERVE_TESTS_GPU_GPU_TEST_UTIL_H_
