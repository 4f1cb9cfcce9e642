// CPU paged attention: against a direct softmax(QK^T)V over the sequence's
// positions, and batch invariance (a token's result does not depend on what
// else is in the batch, bit for bit).
#include "kernels/cpu/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

namespace alignserve::cpu {
namespace {

constexpr int kHeads = 6, kKvHeads = 2, kDim = 64, kBlock = 16, kBlocks = 96;

struct Cache {
  std::vector<float> k, v;
  Cache() : k(static_cast<size_t>(kBlocks) * kBlock * kKvHeads * kDim),
            v(k.size()) {
    std::mt19937 rng(5);
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (float& x : k) x = n(rng);
    for (float& x : v) x = n(rng);
  }
};

// One decode token per sequence: seq i has context lens[i] in blocks
// [offset_i, offset_i + ceil(len / kBlock)) of a shuffled block list.
struct Batch {
  std::vector<int32_t> positions, query_start{0}, context_lens, tables;
  int max_blocks = 0;
  DeviceBatch Device() const {
    DeviceBatch b;
    b.num_tokens = b.num_seqs = static_cast<int32_t>(positions.size());
    b.max_blocks_per_seq = max_blocks;
    b.positions = positions.data();
    b.query_start = query_start.data();
    b.context_lens = context_lens.data();
    b.block_tables = tables.data();
    return b;
  }
};

Batch MakeBatch(const std::vector<int>& lens, const std::vector<std::vector<int32_t>>& blocks) {
  Batch b;
  for (size_t i = 0; i < lens.size(); ++i) b.max_blocks = std::max<int>(b.max_blocks, blocks[i].size());
  for (size_t i = 0; i < lens.size(); ++i) {
    b.positions.push_back(lens[i] - 1);
    b.query_start.push_back(static_cast<int32_t>(i + 1));
    b.context_lens.push_back(lens[i]);
    std::vector<int32_t> row = blocks[i];
    row.resize(b.max_blocks, 0);
    b.tables.insert(b.tables.end(), row.begin(), row.end());
  }
  return b;
}

TEST_CASE("paged attention equals softmax(QK^T)V and is independent of the batch") {
  Cache cache;
  const std::vector<int> lens = {1, 37, 300, 700};  // 700 spans several slices
  std::vector<int32_t> ids(kBlocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), std::mt19937(9));
  std::vector<std::vector<int32_t>> blocks;
  size_t next = 0;
  for (int len : lens) {
    const int n = (len + kBlock - 1) / kBlock;
    blocks.emplace_back(ids.begin() + next, ids.begin() + next + n);
    next += n;
  }
  std::mt19937 rng(3);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<float> q(lens.size() * kHeads * kDim);
  for (float& x : q) x = n(rng);
  const AttentionShape shape{kHeads, kKvHeads, kDim, kBlock, 1.0f / 8.0f};
  ThreadPool pool(2);

  const Batch all = MakeBatch(lens, blocks);
  std::vector<float> batched(q.size(), NAN);
  PagedAttention(all.Device(), shape, q.data(), cache.k.data(), cache.v.data(), batched.data(),
                 pool);
  const int row = kHeads * kDim;
  for (size_t s = 0; s < lens.size(); ++s) {
    INFO("sequence " << s << " of context " << lens[s]);
    const Batch one = MakeBatch({lens[s]}, {blocks[s]});
    std::vector<float> alone(row, NAN);
    PagedAttention(one.Device(), shape, q.data() + s * row, cache.k.data(), cache.v.data(),
                   alone.data(), pool);
    // Bit for bit: same slices, same order, whatever shares the batch.
    CHECK(std::memcmp(alone.data(), batched.data() + s * row, row * sizeof(float)) == 0);
    // Against a direct double-precision softmax(QK^T)V.
    for (int h = 0; h < kHeads; ++h) {
      const int g = h / (kHeads / kKvHeads);
      const float* qh = q.data() + s * row + h * kDim;
      std::vector<double> w(lens[s]);
      double max_w = -1e300, sum = 0.0;
      for (int j = 0; j < lens[s]; ++j) {
        const int64_t slot = int64_t{blocks[s][j / kBlock]} * kBlock + j % kBlock;
        const float* k = cache.k.data() + (slot * kKvHeads + g) * kDim;
        double dot = 0.0;
        for (int i = 0; i < kDim; ++i) dot += double{qh[i]} * k[i];
        w[j] = dot / 8.0;
        max_w = std::max(max_w, w[j]);
      }
      for (double& x : w) sum += x = std::exp(x - max_w);
      for (int i = 0; i < kDim; ++i) {
        double o = 0.0;
        for (int j = 0; j < lens[s]; ++j) {
          const int64_t slot = int64_t{blocks[s][j / kBlock]} * kBlock + j % kBlock;
          o += w[j] / sum * cache.v[(slot * kKvHeads + g) * kDim + i];
        }
        REQUIRE(std::fabs(alone[h * kDim + i] - o) <= 1e-5);
      }
    }
  }
}

}  // namespace
}  // namespace alignserve::cpu
