#include "engine/model_runner.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"

namespace alignserve {

absl::Status ModelRunner::CheckBlocks(const StepPlan& plan) const {
  const int num_blocks = cache_.spec().num_blocks;
  auto bad = [num_blocks](int32_t b) { return b < 0 || b >= num_blocks; };
  if (plan.block_size != cache_.spec().block_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "plan block_size ", plan.block_size, " != cache block_size ", cache_.spec().block_size));
  }
  for (const BlockCopy& c : plan.block_copies) {
    if (bad(c.src) || bad(c.dst)) {
      return absl::InvalidArgumentError(
          absl::StrCat("block copy ", c.src, " -> ", c.dst, " outside the cache"));
    }
  }
  for (const ScheduledSequence& s : plan.seqs) {
    for (int32_t b : s.block_table) {
      if (bad(b)) {
        return absl::InvalidArgumentError(
            absl::StrCat("sequence ", s.seq_id, " names block ", b, " outside the cache"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ModelRunner::Execute(const StepPlan& plan, const ForwardOptions& options,
                                  ForwardOutput& out) {
  out.num_rows = 0;
  out.logits.clear();
  out.has_logits.clear();
  out.argmax.clear();
  out.hidden.clear();
  if (plan.empty()) return absl::OkStatus();
  RETURN_IF_ERROR(CheckBlocks(plan));
  // Copy-on-write first: a sequence's chunk may write into the destination
  // block, which must already hold the shared prefix.
  if (!plan.block_copies.empty()) {
    RETURN_IF_ERROR(model_.backend().CopyBlocks(plan.block_copies, cache_));
  }
  const BatchLayout layout = plan.ToBatchLayout();
  RETURN_IF_ERROR(model_.Forward(layout, cache_, options, out));
  if (out.num_rows != plan.num_logits_rows()) {
    return absl::InternalError(absl::StrCat("forward returned ", out.num_rows, " rows for ",
                                            plan.num_logits_rows(), " logits rows"));
  }
  return absl::OkStatus();
}

std::span<const float> ModelRunner::Row(const ForwardOutput& out, int i, int vocab_size) {
  return {out.row(i, vocab_size), static_cast<size_t>(vocab_size)};
}

}  // namespace alignserve
