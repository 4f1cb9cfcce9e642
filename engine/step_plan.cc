#include "engine/step_plan.h"

#include <algorithm>

namespace alignserve {

int32_t StepPlan::num_tokens() const {
  int32_t n = 0;
  for (const ScheduledSequence& s : seqs) n += s.num_tokens();
  return n;
}

int32_t StepPlan::num_logits_rows() const {
  int32_t n = 0;
  for (const ScheduledSequence& s : seqs) n += s.all_logits ? s.num_tokens() : (s.sample ? 1 : 0);
  return n;
}

int32_t StepPlan::num_sampled() const {
  int32_t n = 0;
  for (const ScheduledSequence& s : seqs) n += s.sample ? 1 : 0;
  return n;
}

BatchLayout StepPlan::ToBatchLayout() const {
  BatchLayout layout;
  FillBatchLayout(layout);
  return layout;
}

void StepPlan::FillBatchLayout(BatchLayout& layout) const {
  const size_t tokens = static_cast<size_t>(num_tokens());
  size_t max_blocks = 0;
  for (const ScheduledSequence& s : seqs) max_blocks = std::max(max_blocks, s.block_table.size());
  layout.token_ids.clear();
  layout.positions.clear();
  layout.slot_mapping.clear();
  layout.query_start.clear();
  layout.context_lens.clear();
  layout.logits_indices.clear();
  layout.token_ids.reserve(tokens);
  layout.positions.reserve(tokens);
  layout.slot_mapping.reserve(tokens);
  layout.query_start.reserve(seqs.size() + 1);
  layout.context_lens.reserve(seqs.size());
  layout.max_blocks_per_seq = static_cast<int32_t>(max_blocks);
  layout.block_tables.assign(seqs.size() * max_blocks, 0);
  if (seqs.empty()) return;
  layout.query_start.push_back(0);
  for (size_t i = 0; i < seqs.size(); ++i) {
    const ScheduledSequence& s = seqs[i];
    const int32_t first_row = layout.num_tokens();
    for (int32_t j = 0; j < s.num_tokens(); ++j) {
      const int32_t pos = s.start_pos + j;
      layout.token_ids.push_back(s.token_ids[j]);
      layout.positions.push_back(pos);
      layout.slot_mapping.push_back(
          static_cast<int64_t>(s.block_table[pos / block_size]) * block_size + pos % block_size);
    }
    layout.query_start.push_back(layout.num_tokens());
    layout.context_lens.push_back(s.start_pos + s.num_tokens());
    if (s.all_logits) {
      for (int32_t r = first_row; r < layout.num_tokens(); ++r) layout.logits_indices.push_back(r);
    } else if (s.sample) {
      layout.logits_indices.push_back(layout.num_tokens() - 1);
    }
    std::copy(s.block_table.begin(), s.block_table.end(),
              layout.block_tables.begin() + static_cast<ptrdiff_t>(i * max_blocks));
  }
}

}  // namespace alignserve
