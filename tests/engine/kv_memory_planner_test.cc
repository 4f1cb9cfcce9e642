// KV cache sizing from device memory (engine/kv_memory_planner.h): the
// profile step's shape, the budget arithmetic against hand-computed values,
// and a whole planning run on the CPU backend with the tiny Llama-3
// checkpoint and a stand-in memory probe (the CPU has no device memory; on
// a GPU the probe is cudaMemGetInfo).
#include "engine/kv_memory_planner.h"

#include <catch2/catch.hpp>
#include <memory>
#include <set>

#include "kernels/cpu/cpu_backend.h"
#include "models/model_loader.h"
#include "tests/test_paths.h"

namespace alignserve {
namespace {

constexpr size_t kGiB = size_t{1} << 30;

TEST_CASE("the profile step fills the token budget over max_num_seqs sequences") {
  int32_t blocks = 0;
  const BatchLayout layout = ProfileLayout(
      {.max_num_batched_tokens = 1000, .max_num_seqs = 7, .max_model_len = 4096, .block_size = 16},
      &blocks);
  CHECK(layout.num_tokens() == 1000);
  CHECK(layout.num_seqs() == 7);
  CHECK(layout.logits_indices.size() == 7);
  int32_t expect_blocks = 0;
  for (int s = 0; s < 7; ++s) {
    const int len = layout.query_start[s + 1] - layout.query_start[s];
    CHECK((len == 142 || len == 143));
    CHECK(layout.context_lens[s] == len);
    expect_blocks += (len + 15) / 16;
  }
  CHECK(blocks == expect_blocks);
  // Every slot is distinct: no two tokens share a KV row.
  std::set<int64_t> slots(layout.slot_mapping.begin(), layout.slot_mapping.end());
  CHECK(slots.size() == 1000);
  CHECK(*slots.rbegin() < static_cast<int64_t>(blocks) * 16);
}

TEST_CASE("the profile step splits sequences longer than max_model_len") {
  int32_t blocks = 0;
  const BatchLayout layout = ProfileLayout(
      {.max_num_batched_tokens = 8192, .max_num_seqs = 1, .max_model_len = 3000, .block_size = 32},
      &blocks);
  CHECK(layout.num_tokens() == 8192);
  CHECK(layout.num_seqs() == 3);
  for (int s = 0; s < 3; ++s) CHECK(layout.context_lens[s] <= 3000);
}

TEST_CASE("the KV budget is total * utilization minus what is in use") {
  // 80 GiB device, 20 GiB free after the profile step: 60 GiB used.
  const DeviceMemoryInfo info{.free_bytes = 20 * kGiB, .total_bytes = 80 * kGiB};
  auto plan = KvPlanFromMemory(info, 0.9, /*block_bytes=*/2 << 20, /*min_blocks=*/10);
  REQUIRE(plan.ok());
  // 72 GiB allowed - 60 GiB used = 12 GiB = 6144 blocks of 2 MiB.
  CHECK(plan->kv_budget_bytes == 12 * kGiB);
  CHECK(plan->num_blocks == 6144);
  CHECK(plan->used_bytes == 60 * kGiB);
  CHECK_THAT(plan->Describe(), Catch::Contains("6144 blocks"));
}

TEST_CASE("too little memory for one sequence is an error that says what to change") {
  // 72 GiB allowed - 71 GiB used leaves 512 blocks of 2 MiB; one sequence needs 1000.
  const DeviceMemoryInfo info{.free_bytes = 9 * kGiB, .total_bytes = 80 * kGiB};
  auto plan = KvPlanFromMemory(info, 0.9, 2 << 20, 1000);
  REQUIRE(absl::IsResourceExhausted(plan.status()));
  CHECK_THAT(std::string(plan.status().message()),
             Catch::Contains("--gpu-memory-utilization") && Catch::Contains("--max-model-len"));
  CHECK(absl::IsInvalidArgument(KvPlanFromMemory(info, 0.0, 2 << 20, 1).status()));
  CHECK(absl::IsInvalidArgument(KvPlanFromMemory(info, 1.5, 2 << 20, 1).status()));
}

TEST_CASE("planning runs the profile step and sizes blocks from the model's KV geometry") {
  CpuBackend backend;
  auto loaded = LoadModel(testing::SourcePath("tests/data/models/tiny_llama3"), backend,
                          {.max_model_len = 0, .load_text = false});
  REQUIRE(loaded.ok());
  Model& model = *(*loaded)->model;
  const ModelConfig& c = model.config();
  const size_t block_bytes =
      2 * static_cast<size_t>(c.num_layers) * 16 * c.num_kv_heads * c.head_dim * sizeof(float);
  bool probed = false;
  auto probe = [&]() -> absl::StatusOr<DeviceMemoryInfo> {
    probed = true;
    return DeviceMemoryInfo{.free_bytes = 600 * block_bytes, .total_bytes = 1000 * block_bytes};
  };
  auto plan = PlanKvCacheFromMemory(
      model, {.max_num_batched_tokens = 64, .max_num_seqs = 4, .max_model_len = 64, .block_size = 16},
      0.5, probe);
  REQUIRE(plan.ok());
  CHECK(probed);
  CHECK(plan->block_bytes == block_bytes);
  CHECK(plan->num_blocks == 100);  // 500 allowed - 400 used
  // Without a probe the CPU backend has no device memory to read.
  CHECK(absl::IsUnimplemented(
      PlanKvCacheFromMemory(model, {.max_model_len = 64}, 0.5).status()));
}

}  // namespace
}  // namespace alignserve
