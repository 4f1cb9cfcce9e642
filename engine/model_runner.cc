#include "engine/model_runner.h"

#include <algorithm>
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
  // Every block of every table, each step: one unsigned compare per entry,
  // without an early exit so that it vectorizes; the rare bad table is
  // searched again for the message.
  const uint32_t limit = static_cast<uint32_t>(std::max(num_blocks, 0));
  for (const ScheduledSequence& s : plan.seqs) {
    bool any_bad = false;
    for (const int32_t b : s.block_table) any_bad |= static_cast<uint32_t>(b) >= limit;
    if (!any_bad) continue;
    const int32_t b = *std::find_if(s.block_table.begin(), s.block_table.end(), bad);
    return absl::InvalidArgumentError(
        absl::StrCat("sequence ", s.seq_id, " names block ", b, " outside the cache"));
  }
  return absl::OkStatus();
}

absl::Status ModelRunner::Execute(const StepPlan& plan, const ForwardOptions& options,
                                  ForwardOutput& out) {
  // out.logits keeps its size: a model resizes it to rows * vocab, and a
  // cleared vector would be zero-filled again on every step (a decode step
  // of 256 rows of a 128k vocabulary: 131 MB of memset for rows that a
  // greedy step never reads). Rows not asked for hold stale values anyway
  // (ForwardOutput's contract).
  out.num_rows = 0;
  out.has_logits.clear();
  out.argmax.clear();
  out.sampled.clear();
  out.hidden.clear();
  if (plan.empty()) return absl::OkStatus();
  RETURN_IF_ERROR(CheckBlocks(plan));
  // Copy-on-write first: a sequence's chunk may write into the destination
  // block, which must already hold the shared prefix.
  if (!plan.block_copies.empty()) {
    RETURN_IF_ERROR(model_.backend().CopyBlocks(plan.block_copies, cache_));
  }
  plan.FillBatchLayout(layout_);
  RETURN_IF_ERROR(model_.Forward(layout_, cache_, options, out));
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
