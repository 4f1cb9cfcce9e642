#include "kernels/cpu/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace alignserve::cpu {
namespace {

// A slice of one token's attention for one KV head: positions [begin, end)
// of its context. Long contexts are cut into several slices (split-K, as in
// flash-decoding) so that a decode step, with few (token, head) pairs, still
// keeps every thread busy; slices are merged afterwards in a fixed order.
struct Slice {
  int token;
  int kv_head;
  int begin;
  int end;
};

// Unnormalized partial result of a slice for its `group` query heads:
// acc[g * d + i] = sum_j exp(s_gj - max_g) v_j[i], with max_g and
// sum_g = sum_j exp(s_gj - max_g).
struct Partial {
  float* acc;
  float* max;
  float* sum;
};

// Calls fn(first_position, count, first_slot) for each run of positions in
// [begin, end) that lies in one KV block (contiguous slots), so the inner
// loops need no division by the block size.
template <typename Fn>
inline void ForEachBlockRun(const int32_t* block_table, int block_size, int begin, int end,
                            Fn&& fn) {
  for (int j = begin; j < end;) {
    const int offset = j % block_size;
    const int count = std::min(block_size - offset, end - j);
    fn(j, count, static_cast<int64_t>(block_table[j / block_size]) * block_size + offset);
    j += count;
  }
}

constexpr int kLanes = 16;  // one AVX-512 register of floats
constexpr int kChunk = 64;  // head-dim elements accumulated at once (4 registers)

// q . k over d elements with kChunk independent partial sums (4 vector
// chains instead of one), reduced once at the end.
inline float DotChunked(const float* q, const float* k, int d) {
  float acc[kChunk] = {};
  int i = 0;
  for (; i + kChunk <= d; i += kChunk) {
    for (int l = 0; l < kChunk; ++l) acc[l] += q[i + l] * k[i + l];
  }
  for (; i + kLanes <= d; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += q[i + l] * k[i + l];
  }
  for (int l = 0; l < kLanes; ++l) {
    acc[l] += acc[l + kLanes] + acc[l + 2 * kLanes] + acc[l + 3 * kLanes];
  }
  float dot = 0.0f;
  for (int l = 0; l < kLanes; ++l) dot += acc[l];
  for (; i < d; ++i) dot += q[i] * k[i];
  return dot;
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
void AttendSlice(const float* q, const float* k_cache, const float* v_cache,
                 const int32_t* block_table, int begin, int end, int group, int kv_head,
                 const AttentionShape& s, float* scores, Partial out) {
  const int d = s.head_dim;
  const int n = end - begin;
  const int64_t row_stride = static_cast<int64_t>(s.num_kv_heads) * d;
  const int64_t head_offset = static_cast<int64_t>(kv_head) * d;
  ForEachBlockRun(block_table, s.block_size, begin, end, [&](int j0, int count, int64_t slot) {
    for (int jj = 0; jj < count; ++jj) {
      const float* k = k_cache + (slot + jj) * row_stride + head_offset;
      for (int g = 0; g < group; ++g) {
        scores[static_cast<int64_t>(g) * n + (j0 - begin + jj)] =
            DotChunked(q + static_cast<int64_t>(g) * d, k, d) * s.scale;
      }
    }
  });
  for (int g = 0; g < group; ++g) {
    float* p = scores + static_cast<int64_t>(g) * n;
    float max_score = -std::numeric_limits<float>::infinity();
    for (int j = 0; j < n; ++j) max_score = std::max(max_score, p[j]);
    float sum = 0.0f;
    for (int j = 0; j < n; ++j) {
      p[j] = std::exp(p[j] - max_score);
      sum += p[j];
    }
    out.max[g] = max_score;
    out.sum[g] = sum;
    std::fill(out.acc + static_cast<int64_t>(g) * d, out.acc + static_cast<int64_t>(g + 1) * d,
              0.0f);
  }
  // acc[g, i] += w[g, j] * v_j[i], a kChunk-wide slice of the output held in
  // registers across all positions of a block run.
  ForEachBlockRun(block_table, s.block_size, begin, end, [&](int j0, int count, int64_t slot) {
    for (int g = 0; g < group; ++g) {
      const float* w = scores + static_cast<int64_t>(g) * n + (j0 - begin);
      float* o = out.acc + static_cast<int64_t>(g) * d;
      for (int i0 = 0; i0 < d; i0 += kChunk) {
        const int width = std::min(kChunk, d - i0);
        float acc[kChunk];
        for (int l = 0; l < kChunk; ++l) acc[l] = l < width ? o[i0 + l] : 0.0f;
        for (int jj = 0; jj < count; ++jj) {
          const float* v = v_cache + (slot + jj) * row_stride + head_offset + i0;
          if (width == kChunk) {
            for (int l = 0; l < kChunk; ++l) acc[l] += w[jj] * v[l];
          } else {
            for (int l = 0; l < width; ++l) acc[l] += w[jj] * v[l];
          }
        }
        for (int l = 0; l < width; ++l) o[i0 + l] = acc[l];
      }
    }
  });
}

// Combines the slices [first, last) of one (token, kv head) into `out`
// (group * d floats), rescaling each by exp(max_i - max).
void MergeSlices(const std::vector<Partial>& partials, size_t first, size_t last, int group,
                 int d, float* out) {
  for (int g = 0; g < group; ++g) {
    float m = -std::numeric_limits<float>::infinity();
    for (size_t i = first; i < last; ++i) m = std::max(m, partials[i].max[g]);
    float total = 0.0f;
    float* o = out + static_cast<int64_t>(g) * d;
    std::fill(o, o + d, 0.0f);
    for (size_t i = first; i < last; ++i) {
      const float w = std::exp(partials[i].max[g] - m);
      total += w * partials[i].sum[g];
      const float* a = partials[i].acc + static_cast<int64_t>(g) * d;
      for (int x = 0; x < d; ++x) o[x] += w * a[x];
    }
    const float inv = 1.0f / total;
    for (int x = 0; x < d; ++x) o[x] *= inv;
  }
}

// Slices per (token, kv head), from the token's own context length only:
// a token's attention is then computed the same way (same slices, same
// summation order) whatever else shares the batch, so batched and alone
// agree bit for bit. kSliceLen keeps decode steps parallel once the
// context is long enough to matter.
constexpr int kSliceLen = 256;

int SlicesFor(int n_ctx) { return std::max(1, (n_ctx + kSliceLen - 1) / kSliceLen); }

}  // namespace

void PagedAttention(const DeviceBatch& batch, const AttentionShape& shape, const float* q,
                    const float* k_cache, const float* v_cache, float* out, ThreadPool& pool) {
  const int group = shape.num_heads / shape.num_kv_heads;
  const int d = shape.head_dim;
  const int64_t q_stride = static_cast<int64_t>(shape.num_heads) * d;
  // Work list: slices in (token, kv head) order, so each pair's are adjacent.
  // Scratch is reused across calls; the references are what the workers use
  // (a thread_local named inside the lambda would be the worker's own).
  static thread_local std::vector<Slice> slice_store;
  static thread_local std::vector<int32_t> token_seq_store;
  static thread_local std::vector<float> partial_store;
  std::vector<Slice>& slices = slice_store;
  std::vector<int32_t>& token_seq = token_seq_store;
  slices.clear();
  token_seq.resize(batch.num_tokens);
  for (int s = 0; s < batch.num_seqs; ++s) {
    for (int t = batch.query_start[s]; t < batch.query_start[s + 1]; ++t) token_seq[t] = s;
  }
  for (int t = 0; t < batch.num_tokens; ++t) {
    const int n_ctx = batch.positions[t] + 1;
    const int pieces = SlicesFor(n_ctx);
    for (int h = 0; h < shape.num_kv_heads; ++h) {
      for (int p = 0; p < pieces; ++p) {
        slices.push_back({t, h, static_cast<int>(static_cast<int64_t>(n_ctx) * p / pieces),
                          static_cast<int>(static_cast<int64_t>(n_ctx) * (p + 1) / pieces)});
      }
    }
  }
  const int64_t per_partial = static_cast<int64_t>(group) * (d + 2);
  partial_store.resize(slices.size() * per_partial);
  std::vector<Partial> partials(slices.size());
  for (size_t i = 0; i < slices.size(); ++i) {
    float* base = partial_store.data() + i * per_partial;
    partials[i] = {base, base + static_cast<int64_t>(group) * d,
                   base + static_cast<int64_t>(group) * (d + 1)};
  }
  // Slices differ in cost (causal prefill: later tokens see more context);
  // the pool's threads claim chunks of them dynamically.
  pool.ParallelFor(static_cast<int64_t>(slices.size()), 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    for (int64_t i = begin; i < end; ++i) {
      const Slice& sl = slices[i];
      scores.resize(static_cast<size_t>(group) * (sl.end - sl.begin));
      const int64_t head_offset = static_cast<int64_t>(sl.kv_head) * group * d;
      AttendSlice(q + sl.token * q_stride + head_offset, k_cache, v_cache,
                  batch.block_tables +
                      static_cast<int64_t>(token_seq[sl.token]) * batch.max_blocks_per_seq,
                  sl.begin, sl.end, group, sl.kv_head, shape, scores.data(), partials[i]);
    }
  });
  // Merge each (token, kv head)'s adjacent slices into its output rows.
  for (size_t first = 0; first < slices.size();) {
    size_t last = first + 1;
    while (last < slices.size() && slices[last].token == slices[first].token &&
           slices[last].kv_head == slices[first].kv_head) {
      ++last;
    }
    const Slice& sl = slices[first];
    MergeSlices(partials, first, last, group, d,
                out + sl.token * q_stride + static_cast<int64_t>(sl.kv_head) * group * d);
    first = last;
  }
}

}  // namespace alignserve::cpu
