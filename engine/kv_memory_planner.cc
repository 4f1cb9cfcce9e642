#include "engine/kv_memory_planner.h"

#include <algorithm>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/status_macros.h"

namespace alignserve {
namespace {

double GiB(size_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0); }

}  // namespace

BatchLayout ProfileLayout(const ProfileShape& shape, int32_t* num_blocks) {
  const int32_t tokens = std::max(1, shape.max_num_batched_tokens);
  const int32_t max_len = std::max(1, shape.max_model_len);
  const int32_t by_seqs = std::min(std::max(1, shape.max_num_seqs), tokens);
  const int32_t by_len = (tokens + max_len - 1) / max_len;
  const int32_t seqs = std::max(by_seqs, by_len);
  BatchLayout layout;
  int32_t next_block = 0;
  for (int32_t s = 0; s < seqs; ++s) {
    const int32_t len = tokens / seqs + (s < tokens % seqs ? 1 : 0);
    std::vector<int32_t> blocks((len + shape.block_size - 1) / shape.block_size);
    for (int32_t& b : blocks) b = next_block++;
    // Token id 0 exists in every vocabulary; the values do not matter.
    layout.AddSequence(std::vector<int32_t>(len, 0), 0, blocks, shape.block_size,
                       /*want_logits=*/true);
  }
  layout.Finish();
  *num_blocks = next_block;
  return layout;
}

size_t KvBytesPerBlock(Model& model, int32_t block_size) {
  return model.KvSpec(1, block_size).total_bytes();
}

std::string KvMemoryPlan::Describe() const {
  return absl::StrFormat(
      "KV cache: %d blocks (%.2f GiB) of %.2f GiB device memory; %.2f GiB in use after the "
      "profile step (weights, activations, workspaces, other processes)",
      num_blocks, GiB(static_cast<size_t>(num_blocks) * block_bytes), GiB(total_bytes),
      GiB(used_bytes));
}

absl::StatusOr<KvMemoryPlan> KvPlanFromMemory(const DeviceMemoryInfo& after_profile,
                                              double utilization, size_t block_bytes,
                                              int32_t min_blocks) {
  if (!(utilization > 0.0 && utilization <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--gpu-memory-utilization must be in (0, 1], got ", utilization));
  }
  if (block_bytes == 0 || after_profile.free_bytes > after_profile.total_bytes) {
    return absl::InternalError("KV planning: inconsistent memory figures");
  }
  KvMemoryPlan plan;
  plan.block_bytes = block_bytes;
  plan.total_bytes = after_profile.total_bytes;
  plan.used_bytes = after_profile.total_bytes - after_profile.free_bytes;
  const double allowed = static_cast<double>(plan.total_bytes) * utilization;
  const double budget = allowed - static_cast<double>(plan.used_bytes);
  plan.kv_budget_bytes = budget > 0 ? static_cast<size_t>(budget) : 0;
  plan.num_blocks =
      static_cast<int32_t>(std::min<size_t>(plan.kv_budget_bytes / block_bytes, INT32_MAX));
  if (plan.num_blocks < min_blocks) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "not enough device memory for the KV cache: %.2f GiB in use after loading the weights "
        "and profiling a step leaves %.2f GiB of the %.2f GiB that --gpu-memory-utilization "
        "%.2f allows, and one sequence of --max-model-len tokens needs %.2f GiB (%d blocks). "
        "Raise --gpu-memory-utilization, or lower --max-model-len, --max-num-batched-tokens "
        "or --max-num-seqs",
        GiB(plan.used_bytes), GiB(plan.kv_budget_bytes), allowed / (1024.0 * 1024.0 * 1024.0),
        utilization, GiB(static_cast<size_t>(min_blocks) * block_bytes), min_blocks));
  }
  return plan;
}

absl::StatusOr<KvMemoryPlan> PlanKvCacheFromMemory(Model& model, const ProfileShape& shape,
                                                   double utilization, const MemoryProbe& probe) {
  if (shape.block_size <= 0 || shape.max_model_len <= 0) {
    return absl::InvalidArgumentError("KV planning: block size and model length must be > 0");
  }
  int32_t profile_blocks = 0;
  const BatchLayout layout = ProfileLayout(shape, &profile_blocks);
  const size_t block_bytes = KvBytesPerBlock(model, shape.block_size);
  {
    ASSIGN_OR_RETURN(std::unique_ptr<KvCache> cache,
                     model.AllocateKvCache(profile_blocks, shape.block_size));
    ForwardOutput out;
    RETURN_IF_ERROR(model.Forward(layout, *cache, /*want_hidden=*/false, out));
  }  // the profile cache is freed before measuring
  RETURN_IF_ERROR(model.backend().Synchronize());
  ASSIGN_OR_RETURN(DeviceMemoryInfo info, probe ? probe() : model.backend().MemoryInfo());
  const int32_t min_blocks = (shape.max_model_len + shape.block_size - 1) / shape.block_size;
  return KvPlanFromMemory(info, utilization, block_bytes, min_blocks);
}

}  // namespace alignserve
