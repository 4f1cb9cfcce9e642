#include "engine/scheduler_config.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace alignserve {
namespace {

absl::Status CheckPositive(const char* field, int64_t value) {
  if (value > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("SchedulerConfig.", field, " must be positive, got ", value));
}

}  // namespace

absl::Status SchedulerConfig::Validate() const {
  for (const auto& [field, value] :
       {std::pair<const char*, int32_t>{"max_num_batched_tokens", max_num_batched_tokens},
        {"max_num_seqs", max_num_seqs},
        {"block_size", block_size},
        {"num_blocks", num_blocks},
        {"max_model_len", max_model_len}}) {
    if (absl::Status s = CheckPositive(field, value); !s.ok()) return s;
  }
  if (shared_prefix_wait_blocks < 0) {
    return absl::InvalidArgumentError("shared_prefix_wait_blocks must be >= 0 (0: off)");
  }
  return absl::OkStatus();
}

int32_t SchedulerConfig::max_sequence_len() const {
  const int64_t pool_tokens = static_cast<int64_t>(num_blocks) * block_size;
  return static_cast<int32_t>(std::min<int64_t>(max_model_len, pool_tokens));
}

}  // namespace alignserve
