// CPU paged attention: against a direct double-precision softmax(QK^T)V
// over the sequence's positions, and batch invariance (a token's result
// does not depend on what else is in the batch, bit for bit). Every ISA
// level this machine runs, f32 and f16 caches, head dims with an AVX-512
// kernel (64, 128) and without one (48: the portable kernel), GQA ratios 1
// and 3.
#include "kernels/cpu/paged_attention.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/fp16.h"

namespace alignserve::cpu {
namespace {

constexpr int kBlocks = 160;  // enough for the contexts below at 8 slots a block

struct Shape {
  int heads, kv_heads, dim;
};

// K and V of kBlocks blocks of `block` slots, random normal values stored as `type`; the
// oracle reads `k_ref` / `v_ref`, the values as stored (f16-rounded).
struct Cache {
  DType type;
  std::vector<uint8_t> k, v;
  std::vector<float> k_ref, v_ref;
  Cache(DType t, const Shape& s, int block) : type(t) {
    const size_t elems = static_cast<size_t>(kBlocks) * block * s.kv_heads * s.dim;
    const size_t bytes = t == DType::kF16 ? 2 : 4;
    std::mt19937 rng(5);
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (auto [store, ref] : {std::pair{&k, &k_ref}, std::pair{&v, &v_ref}}) {
      store->resize(elems * bytes);
      ref->resize(elems);
      for (size_t i = 0; i < elems; ++i) {
        float x = n(rng);
        if (t == DType::kF16) {
          const uint16_t h = F32ToFp16(x);
          std::memcpy(store->data() + 2 * i, &h, 2);
          x = Fp16ToF32(h);
        } else {
          std::memcpy(store->data() + 4 * i, &x, 4);
        }
        (*ref)[i] = x;
      }
    }
  }
};

// One decode token per sequence: seq i has context lens[i] in its blocks.
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
  for (size_t i = 0; i < lens.size(); ++i) {
    b.max_blocks = std::max<int>(b.max_blocks, static_cast<int>(blocks[i].size()));
  }
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

void CheckAttention(const Shape& shape_in, DType kv_type, int block) {
  const Cache cache(kv_type, shape_in, block);
  // 300 and 700 span several slices; 17 crosses one block boundary.
  const std::vector<int> lens = {1, 17, 37, 300, 700};
  std::vector<int32_t> ids(kBlocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), std::mt19937(9));
  std::vector<std::vector<int32_t>> blocks;
  size_t next = 0;
  for (int len : lens) {
    const int n = (len + block - 1) / block;
    blocks.emplace_back(ids.begin() + next, ids.begin() + next + n);
    next += n;
  }
  REQUIRE(next <= ids.size());
  const int heads = shape_in.heads, kv_heads = shape_in.kv_heads, dim = shape_in.dim;
  std::mt19937 rng(3);
  std::normal_distribution<float> n(0.0f, 1.0f);
  const int row = heads * dim;
  std::vector<float> q(lens.size() * row);
  for (float& x : q) x = n(rng);
  const float scale = 1.0f / std::sqrt(static_cast<float>(dim));
  const AttentionShape shape{heads, kv_heads, dim, block, scale};
  ThreadPool pool(2);

  const Batch all = MakeBatch(lens, blocks);
  std::vector<float> batched(q.size(), NAN);
  PagedAttention(all.Device(), shape, q.data(), cache.k.data(), cache.v.data(), kv_type,
                 batched.data(), pool);
  for (size_t s = 0; s < lens.size(); ++s) {
    INFO("sequence " << s << " of context " << lens[s]);
    const Batch one = MakeBatch({lens[s]}, {blocks[s]});
    std::vector<float> alone(row, NAN);
    PagedAttention(one.Device(), shape, q.data() + s * row, cache.k.data(), cache.v.data(), kv_type,
                   alone.data(), pool);
    // Bit for bit: same slices, same order, whatever shares the batch.
    CHECK(std::memcmp(alone.data(), batched.data() + s * row, row * sizeof(float)) == 0);
    double worst = 0.0;
    for (int h = 0; h < heads; ++h) {
      const int g = h / (heads / kv_heads);
      const float* qh = q.data() + s * row + h * dim;
      std::vector<double> w(lens[s]);
      double max_w = -1e300, sum = 0.0;
      for (int j = 0; j < lens[s]; ++j) {
        const int64_t slot = int64_t{blocks[s][j / block]} * block + j % block;
        const float* k = cache.k_ref.data() + (slot * kv_heads + g) * dim;
        double dot = 0.0;
        for (int i = 0; i < dim; ++i) dot += double{qh[i]} * k[i];
        w[j] = dot * scale;
        max_w = std::max(max_w, w[j]);
      }
      for (double& x : w) sum += x = std::exp(x - max_w);
      for (int i = 0; i < dim; ++i) {
        double o = 0.0;
        for (int j = 0; j < lens[s]; ++j) {
          const int64_t slot = int64_t{blocks[s][j / block]} * block + j % block;
          o += w[j] / sum * cache.v_ref[(slot * kv_heads + g) * dim + i];
        }
        worst = std::max(worst, std::fabs(alone[h * dim + i] - o));
      }
    }
    CHECK(worst <= 1e-5);
  }
}

TEST_CASE("paged attention equals softmax(QK^T)V and is independent of the batch") {
  REQUIRE(PagedAttentionSupportsKv(DType::kF32));
  REQUIRE(PagedAttentionSupportsKv(DType::kF16));
  CHECK_FALSE(PagedAttentionSupportsKv(DType::kBF16));
  for (CpuIsa isa : AvailableCpuIsas()) {
    const ScopedCpuIsaCap cap(isa);
    for (DType kv : {DType::kF32, DType::kF16}) {
      // Query heads per KV head: 3, 1, 3, 4 (more than the AVX-512 value
      // pass holds at 128 dims) and 6 (more than it holds at 64).
      for (Shape shape : {Shape{6, 2, 64}, Shape{4, 4, 128}, Shape{6, 2, 48}, Shape{8, 2, 128},
                          Shape{12, 2, 64}}) {
        // Blocks of 16 (the default), 8, and 32 (more keys than one score
        // group of the AVX-512 kernel).
        for (int block : {16, 8, 32}) {
          INFO("isa " << CpuIsaName(isa) << ", kv " << (kv == DType::kF16 ? "f16" : "f32")
                      << ", heads " << shape.heads << "/" << shape.kv_heads << " of " << shape.dim
                      << ", blocks of " << block);
          CheckAttention(shape, kv, block);
        }
      }
    }
  }
}

}  // namespace
}  // namespace alignserve::cpu
