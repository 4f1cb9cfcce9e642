// SchedulerConfig: the limits the scheduler works under, fixed at start-up.
// Validate() once before building a Scheduler.
// Thread-safety: a plain value.
#ifndef ALIGNSERVE_ENGINE_SCHEDULER_CONFIG_H_
#define ALIGNSERVE_ENGINE_SCHEDULER_CONFIG_H_

#include <cstdint>

#include "absl/status/status.h"

namespace alignserve {

struct SchedulerConfig {
  int32_t max_num_batched_tokens = 2048;  // token budget of one step (all chunks together)
  int32_t max_num_seqs = 256;             // sequences admitted and scheduled per step
  int32_t block_size = 16;                // tokens per KV block
  int32_t num_blocks = 1024;              // KV blocks in the pool
  int32_t max_model_len = 2048;           // prompt + output tokens of one sequence
  bool enable_prefix_caching = true;
  // Same-step prefix sharing: a waiting sequence whose next uncached full
  // blocks (at least this many in a row) are being computed in this step by
  // a sequence admitted before it waits one step and then takes them from
  // the prefix cache instead of computing them again. 0: off.
  int32_t shared_prefix_wait_blocks = 4;

  // InvalidArgument naming the field for a non-positive value.
  absl::Status Validate() const;
  // Tokens one sequence may hold: max_model_len, capped by the whole pool so
  // that a sequence alone always fits.
  int32_t max_sequence_len() const;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_ENGINE_SCHEDULER_CONFIG_H_
