// Uploads to the CUDA backend: batch layouts are validated on the host
// before they reach the device, and GGUF quantized weights become bf16 with
// the values ggml defines. The host-side halves run on every machine; the
// device halves skip without a GPU.
#include <catch2/catch.hpp>
#include <cstring>
#include <vector>

#include "kernels/cpu/fp16.h"
#include "kernels/cpu/quant_blocks.h"
#include "kernels/cuda/batch_uploader.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/weight_conversion.h"
#include "tests/gpu/gpu_test_util.h"

namespace alignserve {
namespace {

BatchLayout TwoSequences() {
  BatchLayout layout;
  layout.AddSequence({4, 9, 2}, 5, {6, 1}, 4, true);  // positions 5..7, slots 1*4+1..
  layout.AddSequence({7}, 0, {3}, 4, true);
  layout.Finish();
  return layout;
}

TEST_CASE("layout validation computes the index bounds the ops check") {
  auto bounds = cuda::ValidateLayout(TwoSequences());
  REQUIRE(bounds.ok());
  CHECK(bounds->min_token == 2);
  CHECK(bounds->max_token == 9);
  CHECK(bounds->max_position == 7);
  CHECK(bounds->min_slot == 5);   // block 1, offset 1
  CHECK(bounds->max_slot == 12);  // block 3, offset 0
  CHECK(bounds->min_block == 0);  // padding of the second table
  CHECK(bounds->max_block == 6);
  CHECK(bounds->max_query_len == 3);
  CHECK(bounds->max_context_len == 8);
}

TEST_CASE("layout validation rejects inconsistent layouts") {
  BatchLayout ok = TwoSequences();
  {
    BatchLayout l = ok;
    l.positions.pop_back();
    CHECK(cuda::ValidateLayout(l).status().code() == absl::StatusCode::kInvalidArgument);
  }
  {
    BatchLayout l = ok;
    l.query_start[1] = 4;  // not monotone, and no longer ending at 4 tokens
    l.query_start[2] = 3;
    CHECK_FALSE(cuda::ValidateLayout(l).ok());
  }
  {
    BatchLayout l = ok;
    l.positions[0] = 8;  // == context length 8: not yet in the cache
    CHECK_FALSE(cuda::ValidateLayout(l).ok());
  }
  {
    BatchLayout l = ok;
    l.logits_indices.push_back(4);
    CHECK_FALSE(cuda::ValidateLayout(l).ok());
  }
  {
    BatchLayout l = ok;
    l.block_tables.push_back(0);
    CHECK_FALSE(cuda::ValidateLayout(l).ok());
  }
  CHECK(cuda::ValidateLayout(BatchLayout{}).ok());
}

// Two rows of one Q8_0 block each: w = d * q.
std::vector<BlockQ8_0> Q8Rows() {
  std::vector<BlockQ8_0> rows(2);
  rows[0].d = F32ToFp16(0.5f);
  rows[1].d = F32ToFp16(-0.25f);
  for (int i = 0; i < kQK; ++i) {
    rows[0].qs[i] = static_cast<int8_t>(i - 16);
    rows[1].qs[i] = static_cast<int8_t>(127 - 8 * i);
  }
  return rows;
}

TEST_CASE("q8_0 and q4_1 weights convert to the bf16 of their ggml values") {
  std::vector<BlockQ8_0> q8 = Q8Rows();
  Tensor t8(DType::kQ8_0, {2, kQK}, q8.data());
  std::vector<uint16_t> out(2 * kQK);
  REQUIRE(cuda::ConvertRowsToBf16(t8, 0, 2, out).ok());
  for (int i = 0; i < kQK; ++i) {
    CHECK(Bf16ToF32(out[i]) == 0.5f * (i - 16));  // exact in bf16
    CHECK(Bf16ToF32(out[kQK + i]) == Bf16ToF32(F32ToBf16(-0.25f * (127 - 8 * i))));
  }
  std::vector<uint16_t> second(kQK);
  REQUIRE(cuda::ConvertRowsToBf16(t8, 1, 1, second).ok());
  CHECK(std::equal(second.begin(), second.end(), out.begin() + kQK));

  BlockQ4_1 q4{};
  q4.d = F32ToFp16(0.125f);
  q4.m = F32ToFp16(-1.0f);
  for (int j = 0; j < kQK / 2; ++j) q4.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  Tensor t4(DType::kQ4_1, {1, kQK}, &q4);
  std::vector<uint16_t> out4(kQK);
  REQUIRE(cuda::ConvertRowsToBf16(t4, 0, 1, out4).ok());
  for (int j = 0; j < kQK / 2; ++j) {
    CHECK(Bf16ToF32(out4[j]) == 0.125f * j - 1.0f);
    CHECK(Bf16ToF32(out4[j + kQK / 2]) == 0.125f * (15 - j) - 1.0f);
  }
  CHECK_FALSE(cuda::ConvertRowsToBf16(t4, 0, 2, out4).ok());
  Tensor i32(DType::kI32, {1, 4}, out4.data());
  CHECK_FALSE(cuda::ConvertsToBf16(DType::kI32));
  CHECK_FALSE(cuda::ConvertRowsToBf16(i32, 0, 1, std::span<uint16_t>(out4.data(), 4)).ok());
}

TEST_CASE("UploadWeight puts a quantized tensor on the device as bf16") {
  ALIGNSERVE_REQUIRE_CUDA();
  auto cuda = CudaBackend::Create(0);
  REQUIRE(cuda.ok());
  // 301 rows of 3 Q8_0 blocks, every block a different scale.
  const int rows = 301, blocks = 3;
  std::vector<BlockQ8_0> q(rows * blocks);
  for (size_t b = 0; b < q.size(); ++b) {
    q[b].d = F32ToFp16(0.01f * static_cast<float>(b % 97 + 1));
    for (int i = 0; i < kQK; ++i) {
      q[b].qs[i] = static_cast<int8_t>(static_cast<int>((b * 31 + i * 7) % 255) - 127);
    }
  }
  Tensor host(DType::kQ8_0, {rows, blocks * kQK}, q.data());
  auto uploaded = (*cuda)->UploadWeight(host);
  REQUIRE(uploaded.ok());
  CHECK(uploaded->tensor.dtype == DType::kBF16);
  CHECK(uploaded->tensor.rows() == rows);
  CHECK(uploaded->tensor.cols() == blocks * kQK);
  std::vector<uint16_t> want(rows * blocks * kQK), got(want.size());
  REQUIRE(cuda::ConvertRowsToBf16(host, 0, rows, want).ok());
  REQUIRE((*cuda)->CopyToHost(got.data(), uploaded->tensor.data, got.size() * 2).ok());
  CHECK(got == want);
}

}  // namespace
}  // namespace alignserve
