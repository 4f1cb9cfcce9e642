#include "kernels/cpu/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace alignserve::cpu {
namespace {

// One (token, kv head) work item: scores for the `group` query heads over
// positions [0, n_ctx), softmax, then the weighted sum of V rows.
// scratch holds group * n_ctx floats.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
void AttendGroup(const float* q, const float* k_cache, const float* v_cache,
                 const int32_t* block_table, int n_ctx, int group, int kv_head,
                 const AttentionShape& s, float* scratch, float* out) {
  const int d = s.head_dim;
  const int64_t row_stride = static_cast<int64_t>(s.num_kv_heads) * d;
  for (int j = 0; j < n_ctx; ++j) {
    const int64_t slot = static_cast<int64_t>(block_table[j / s.block_size]) * s.block_size +
                         j % s.block_size;
    const float* k = k_cache + slot * row_stride + static_cast<int64_t>(kv_head) * d;
    for (int g = 0; g < group; ++g) {
      const float* qh = q + static_cast<int64_t>(g) * d;
      float acc[16] = {};
      int i = 0;
      for (; i + 16 <= d; i += 16) {
        for (int l = 0; l < 16; ++l) acc[l] += qh[i + l] * k[i + l];
      }
      float dot = 0.0f;
      for (int l = 0; l < 16; ++l) dot += acc[l];
      for (; i < d; ++i) dot += qh[i] * k[i];
      scratch[static_cast<int64_t>(g) * n_ctx + j] = dot * s.scale;
    }
  }
  for (int g = 0; g < group; ++g) {
    float* p = scratch + static_cast<int64_t>(g) * n_ctx;
    float max_score = -std::numeric_limits<float>::infinity();
    for (int j = 0; j < n_ctx; ++j) max_score = std::max(max_score, p[j]);
    float sum = 0.0f;
    for (int j = 0; j < n_ctx; ++j) {
      p[j] = std::exp(p[j] - max_score);
      sum += p[j];
    }
    const float inv = 1.0f / sum;
    for (int j = 0; j < n_ctx; ++j) p[j] *= inv;
    std::fill(out + static_cast<int64_t>(g) * d, out + static_cast<int64_t>(g + 1) * d, 0.0f);
  }
  for (int j = 0; j < n_ctx; ++j) {
    const int64_t slot = static_cast<int64_t>(block_table[j / s.block_size]) * s.block_size +
                         j % s.block_size;
    const float* v = v_cache + slot * row_stride + static_cast<int64_t>(kv_head) * d;
    for (int g = 0; g < group; ++g) {
      const float w = scratch[static_cast<int64_t>(g) * n_ctx + j];
      float* o = out + static_cast<int64_t>(g) * d;
      for (int i = 0; i < d; ++i) o[i] += w * v[i];
    }
  }
}

}  // namespace

void PagedAttention(const DeviceBatch& batch, const AttentionShape& shape, const float* q,
                    const float* k_cache, const float* v_cache, float* out, ThreadPool& pool) {
  const int group = shape.num_heads / shape.num_kv_heads;
  std::vector<int32_t> token_seq(batch.num_tokens);
  for (int s = 0; s < batch.num_seqs; ++s) {
    for (int t = batch.query_start[s]; t < batch.query_start[s + 1]; ++t) token_seq[t] = s;
  }
  const int64_t q_stride = static_cast<int64_t>(shape.num_heads) * shape.head_dim;
  const int64_t items = static_cast<int64_t>(batch.num_tokens) * shape.num_kv_heads;
  pool.ParallelFor(items, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch;
    for (int64_t item = begin; item < end; ++item) {
      const int t = static_cast<int>(item / shape.num_kv_heads);
      const int kv_head = static_cast<int>(item % shape.num_kv_heads);
      const int s = token_seq[t];
      const int n_ctx = batch.positions[t] + 1;
      scratch.resize(static_cast<size_t>(group) * n_ctx);
      const int64_t head_offset = static_cast<int64_t>(kv_head) * group * shape.head_dim;
      AttendGroup(q + t * q_stride + head_offset, k_cache, v_cache,
                  batch.block_tables + static_cast<int64_t>(s) * batch.max_blocks_per_seq, n_ctx,
                  group, kv_head, shape, scratch.data(), out + t * q_stride + head_offset);
    }
  });
}

}  // namespace alignserve::cpu
