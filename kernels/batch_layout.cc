#include "kernels/batch_layout.h"

#include <algorithm>

namespace alignserve {

void BatchLayout::AddSequence(const std::vector<int32_t>& tokens, int32_t start_pos,
                              const std::vector<int32_t>& blocks, int32_t block_size,
                              bool want_logits, bool all_logits) {
  const int32_t first_row = num_tokens();
  if (query_start.empty()) query_start.push_back(0);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t pos = start_pos + static_cast<int32_t>(i);
    token_ids.push_back(tokens[i]);
    positions.push_back(pos);
    slot_mapping.push_back(static_cast<int64_t>(blocks[pos / block_size]) * block_size +
                           pos % block_size);
  }
  query_start.push_back(num_tokens());
  context_lens.push_back(start_pos + static_cast<int32_t>(tokens.size()));
  if (all_logits) {
    for (int32_t r = first_row; r < num_tokens(); ++r) logits_indices.push_back(r);
  } else if (want_logits) {
    logits_indices.push_back(num_tokens() - 1);
  }
  pending_tables_.push_back(blocks);
  max_blocks_per_seq = std::max<int32_t>(max_blocks_per_seq, static_cast<int32_t>(blocks.size()));
}

void BatchLayout::Finish() {
  block_tables.assign(static_cast<size_t>(num_seqs()) * max_blocks_per_seq, 0);
  for (size_t s = 0; s < pending_tables_.size(); ++s) {
    std::copy(pending_tables_[s].begin(), pending_tables_[s].end(),
              block_tables.begin() + s * max_blocks_per_seq);
  }
  pending_tables_.clear();
}

}  // namespace alignserve
