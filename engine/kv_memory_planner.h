// KV cache sizing from device memory, as vLLM's profile run does it. After
// the weights are on the device, one forward pass of the largest step the
// scheduler can build (max_num_batched_tokens tokens, one logits row per
// sequence, as many sequences as max_num_seqs allows) makes the model and
// the backend reserve every activation buffer and library workspace the
// serving loop will ever use; those buffers only grow, so later steps
// allocate nothing. What is then left of total * utilization becomes the
// KV cache:
//
//   kv_budget = total * utilization - (total - free after the profile step)
//   num_blocks = kv_budget / (K and V bytes of one block over all layers)
//
// Memory used by other processes on the device counts as used, as in vLLM.
// Thread-safety: call on the thread that drives the model, before serving.
#ifndef ALIGNSERVE_ENGINE_KV_MEMORY_PLANNER_H_
#define ALIGNSERVE_ENGINE_KV_MEMORY_PLANNER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/batch_layout.h"
#include "models/model.h"

namespace alignserve {

// The largest step the scheduler may build.
struct ProfileShape {
  int32_t max_num_batched_tokens = 2048;
  int32_t max_num_seqs = 256;
  int32_t max_model_len = 2048;
  int32_t block_size = 16;
};

// A prefill-only step of exactly max_num_batched_tokens tokens over
// max(min(max_num_seqs, tokens), ceil(tokens / max_model_len)) sequences of
// near-equal length, each sampling its last token, on distinct blocks
// numbered from 0. *num_blocks receives the blocks it uses.
BatchLayout ProfileLayout(const ProfileShape& shape, int32_t* num_blocks);

struct KvMemoryPlan {
  int32_t num_blocks = 0;
  size_t block_bytes = 0;        // K and V of one block, all layers
  size_t total_bytes = 0;        // the device's memory
  size_t used_bytes = 0;         // in use after the profile step (weights, activations, ...)
  size_t kv_budget_bytes = 0;    // total * utilization - used
  std::string Describe() const;  // one line for the start-up log
};

// The arithmetic above. ResourceExhausted, saying what to change, when the
// budget holds fewer than min_blocks blocks (one sequence of max_model_len).
absl::StatusOr<KvMemoryPlan> KvPlanFromMemory(const DeviceMemoryInfo& after_profile,
                                              double utilization, size_t block_bytes,
                                              int32_t min_blocks);

// K and V bytes of one block over all layers of `model` on its backend.
size_t KvBytesPerBlock(Model& model, int32_t block_size);

using MemoryProbe = std::function<absl::StatusOr<DeviceMemoryInfo>()>;

// Runs the profile step on `model` (its KV written to a temporary cache that
// is freed again), then reads the device memory through `probe` (default:
// model.backend().MemoryInfo()) and plans. utilization in (0, 1].
absl::StatusOr<KvMemoryPlan> PlanKvCacheFromMemory(Model& model, const ProfileShape& shape,
                                                   double utilization,
                                                   const MemoryProbe& probe = nullptr);

}  // namespace alignserve

#endif  // ALIGNSERVE_ENGINE_KV_MEMORY_PLANNER_H_
