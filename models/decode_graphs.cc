#include "models/decode_graphs.h"

#include <algorithm>
#include <bit>

namespace alignserve {
namespace {

int BatchBucket(int n) {
  if (n <= 8) return static_cast<int>(std::bit_ceil(static_cast<unsigned>(std::max(n, 1))));
  const int step = n <= 64 ? 8 : (n <= 256 ? 16 : 32);
  return (n + step - 1) / step * step;
}

}  // namespace

bool DecodeGraphs::Eligible(const BatchLayout& layout, const ForwardOptions& options) const {
  const int n = layout.num_seqs();
  if (options.want_hidden || n == 0 || n > max_batch_ || layout.num_tokens() != n ||
      layout.max_blocks_per_seq <= 0 || static_cast<int>(layout.logits_indices.size()) != n) {
    return false;
  }
  for (int s = 0; s < n; ++s) {
    if (layout.query_start[s] != s || layout.logits_indices[s] != s) return false;
  }
  return true;
}

DecodeGraphs::Shape DecodeGraphs::ShapeFor(const BatchLayout& layout) {
  Shape shape;
  shape.batch = BatchBucket(layout.num_seqs());
  shape.width = static_cast<int>(
      std::bit_ceil(static_cast<unsigned>(std::max(layout.max_blocks_per_seq, 16))));
  return shape;
}

void DecodeGraphs::Pad(const BatchLayout& layout, const Shape& shape, BatchLayout& out) {
  const int n = layout.num_seqs(), b = shape.batch, w = shape.width;
  auto padded = [b](const auto& v, auto fill, auto& dst) {
    dst.assign(v.begin(), v.end());
    dst.resize(b, fill);
  };
  padded(layout.token_ids, 0, out.token_ids);
  padded(layout.positions, 0, out.positions);
  padded(layout.context_lens, 1, out.context_lens);
  padded(layout.slot_mapping, kPaddingSlot, out.slot_mapping);
  out.query_start.resize(b + 1);
  out.logits_indices.resize(b);
  for (int s = 0; s <= b; ++s) out.query_start[s] = s;
  for (int s = 0; s < b; ++s) out.logits_indices[s] = s;
  out.max_blocks_per_seq = w;
  out.block_tables.assign(static_cast<size_t>(b) * w, 0);
  for (int s = 0; s < n; ++s) {
    std::copy_n(layout.block_tables.begin() + static_cast<size_t>(s) * layout.max_blocks_per_seq,
                layout.max_blocks_per_seq, out.block_tables.begin() + static_cast<size_t>(s) * w);
  }
}

DeviceGraph* DecodeGraphs::Find(const Shape& shape, const Epoch& epoch) {
  if (!(epoch == epoch_)) {
    graphs_.clear();
    epoch_ = epoch;
    return nullptr;
  }
  auto it = graphs_.find(std::make_pair(shape.batch, shape.width));
  return it == graphs_.end() ? nullptr : it->second.get();
}

void DecodeGraphs::Add(const Shape& shape, std::unique_ptr<DeviceGraph> graph) {
  graphs_[std::make_pair(shape.batch, shape.width)] = std::move(graph);
}

}  // namespace alignserve
