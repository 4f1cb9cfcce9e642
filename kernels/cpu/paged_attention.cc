#include "kernels/cpu/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/paged_attention_slice.h"

namespace alignserve::cpu {
namespace attention_internal {
namespace {

// ---- the portable kernel ---------------------------------------------------

inline float ToFloat(float x) { return x; }
inline float ToFloat(uint16_t h) { return Fp16ToF32(h); }

constexpr int kLanes = 16;
constexpr int kChunk = 64;  // head-dim elements accumulated at once (4 vectors)

// q . k over d elements with kChunk independent partial sums, reduced once.
template <class T>
inline float DotChunked(const float* q, const T* k, int d) {
  float acc[kChunk] = {};
  int i = 0;
  for (; i + kChunk <= d; i += kChunk) {
    for (int l = 0; l < kChunk; ++l) acc[l] += q[i + l] * ToFloat(k[i + l]);
  }
  for (; i + kLanes <= d; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += q[i + l] * ToFloat(k[i + l]);
  }
  for (int l = 0; l < kLanes; ++l) {
    acc[l] += acc[l + kLanes] + acc[l + 2 * kLanes] + acc[l + 3 * kLanes];
  }
  float dot = 0.0f;
  for (int l = 0; l < kLanes; ++l) dot += acc[l];
  for (; i < d; ++i) dot += q[i] * ToFloat(k[i]);
  return dot;
}

template <class T>
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) void GenericSlice(
    const SliceArgs& a) {
  const AttentionShape& s = *a.shape;
  const int d = s.head_dim, heads = s.num_heads, group = s.num_heads / s.num_kv_heads;
  const int n = a.end - a.begin;
  const int64_t row = static_cast<int64_t>(s.num_kv_heads) * d;
  const T* k_cache = static_cast<const T*>(a.k_cache);
  const T* v_cache = static_cast<const T*>(a.v_cache);
  ForEachBlockRun(
      a.block_table, s.block_size, a.begin, a.end, [&](int j0, int count, int64_t slot) {
        for (int jj = 0; jj < count; ++jj) {
          const T* k_row = k_cache + (slot + jj) * row;
          for (int qh = 0; qh < heads; ++qh) {
            a.scores[static_cast<int64_t>(qh) * n + (j0 - a.begin + jj)] =
                DotChunked(a.q + static_cast<int64_t>(qh) * d, k_row + (qh / group) * d, d) *
                s.scale;
          }
        }
      });
  for (int qh = 0; qh < heads; ++qh) {
    float* p = a.scores + static_cast<int64_t>(qh) * n;
    float max_score = -std::numeric_limits<float>::infinity();
    for (int j = 0; j < n; ++j) max_score = std::max(max_score, p[j]);
    float sum = 0.0f;
    for (int j = 0; j < n; ++j) {
      p[j] = std::exp(p[j] - max_score);
      sum += p[j];
    }
    a.out.max[qh] = max_score;
    a.out.sum[qh] = sum;
  }
  std::fill(a.out.acc, a.out.acc + static_cast<int64_t>(heads) * d, 0.0f);
  // acc[h, i] += w[h, j] * v_j[i], a kChunk-wide slice of the output held in
  // registers across all positions of a block run.
  ForEachBlockRun(a.block_table, s.block_size, a.begin, a.end,
                  [&](int j0, int count, int64_t slot) {
                    for (int qh = 0; qh < heads; ++qh) {
                      const float* w = a.scores + static_cast<int64_t>(qh) * n + (j0 - a.begin);
                      float* o = a.out.acc + static_cast<int64_t>(qh) * d;
                      const int64_t head_offset = static_cast<int64_t>(qh / group) * d;
                      for (int i0 = 0; i0 < d; i0 += kChunk) {
                        const int width = std::min(kChunk, d - i0);
                        float acc[kChunk];
                        for (int l = 0; l < kChunk; ++l) acc[l] = l < width ? o[i0 + l] : 0.0f;
                        for (int jj = 0; jj < count; ++jj) {
                          const T* v = v_cache + (slot + jj) * row + head_offset + i0;
                          if (width == kChunk) {
                            for (int l = 0; l < kChunk; ++l) acc[l] += w[jj] * ToFloat(v[l]);
                          } else {
                            for (int l = 0; l < width; ++l) acc[l] += w[jj] * ToFloat(v[l]);
                          }
                        }
                        for (int l = 0; l < width; ++l) o[i0 + l] = acc[l];
                      }
                    }
                  });
}

}  // namespace

SliceFn GenericSliceKernel(DType kv_type) {
  if (kv_type == DType::kF32) return [](const SliceArgs& a) { GenericSlice<float>(a); };
  if (kv_type == DType::kF16) return [](const SliceArgs& a) { GenericSlice<uint16_t>(a); };
  return nullptr;
}

}  // namespace attention_internal

namespace {

using attention_internal::Partial;
using attention_internal::SliceArgs;
using attention_internal::SliceFn;

// A slice of one token's context: positions [begin, end) for all heads.
struct Slice {
  int token;
  int begin;
  int end;
  bool whole;  // the token's only slice: merged by the thread that ran it
};

// Combines the slices [first, last) of one token into `out` (num_heads * d
// floats), rescaling each by exp(max_i - max).
void MergeSlices(const std::vector<Partial>& partials, size_t first, size_t last, int heads, int d,
                 float* out) {
  for (int h = 0; h < heads; ++h) {
    float m = -std::numeric_limits<float>::infinity();
    for (size_t i = first; i < last; ++i) m = std::max(m, partials[i].max[h]);
    float total = 0.0f;
    float* o = out + static_cast<int64_t>(h) * d;
    std::fill(o, o + d, 0.0f);
    for (size_t i = first; i < last; ++i) {
      const float w = std::exp(partials[i].max[h] - m);
      total += w * partials[i].sum[h];
      const float* a = partials[i].acc + static_cast<int64_t>(h) * d;
      for (int x = 0; x < d; ++x) o[x] += w * a[x];
    }
    const float inv = 1.0f / total;
    for (int x = 0; x < d; ++x) o[x] *= inv;
  }
}

// Slices per token, from the token's own context length only: a token's
// attention is then computed the same way (same slices, same summation
// order) whatever else shares the batch, so batched and alone agree bit for
// bit. kSliceLen keeps decode steps of few sequences parallel once the
// context is long enough to matter.
constexpr int kSliceLen = 128;

int SlicesFor(int n_ctx) { return std::max(1, (n_ctx + kSliceLen - 1) / kSliceLen); }

SliceFn KernelFor(DType kv_type, int head_dim) {
  if (ActiveCpuIsa() >= CpuIsa::kAvx512Bw) {
    if (SliceFn fn = attention_internal::Avx512SliceKernel(kv_type, head_dim)) return fn;
  }
  return attention_internal::GenericSliceKernel(kv_type);
}

}  // namespace

bool PagedAttentionSupportsKv(DType kv_type) {
  return kv_type == DType::kF32 || kv_type == DType::kF16;
}

void PagedAttention(const DeviceBatch& batch, const AttentionShape& shape, const float* q,
                    const void* k_cache, const void* v_cache, DType kv_type, float* out,
                    ThreadPool& pool) {
  const SliceFn kernel = KernelFor(kv_type, shape.head_dim);
  const int d = shape.head_dim;
  const int64_t q_stride = static_cast<int64_t>(shape.num_heads) * d;
  // Work list: slices in token order, so each token's are adjacent. Scratch
  // is reused across calls; the references are what the workers use (a
  // thread_local named inside the lambda would be the worker's own).
  static thread_local std::vector<Slice> slice_store;
  static thread_local std::vector<int32_t> token_seq_store;
  static thread_local std::vector<float> partial_store;
  static thread_local std::vector<Partial> partials_store;
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
    for (int p = 0; p < pieces; ++p) {
      slices.push_back({t, static_cast<int>(static_cast<int64_t>(n_ctx) * p / pieces),
                        static_cast<int>(static_cast<int64_t>(n_ctx) * (p + 1) / pieces),
                        pieces == 1});
    }
  }
  const int64_t per_partial = static_cast<int64_t>(shape.num_heads) * (d + 2);
  partial_store.resize(slices.size() * per_partial);
  std::vector<Partial>& partials = partials_store;
  partials.resize(slices.size());
  for (size_t i = 0; i < slices.size(); ++i) {
    float* base = partial_store.data() + i * per_partial;
    partials[i] = {base, base + q_stride, base + q_stride + shape.num_heads};
  }
  // Slices differ in cost (causal prefill: later tokens see more context);
  // the pool's threads claim chunks of them dynamically.
  pool.ParallelFor(static_cast<int64_t>(slices.size()), 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scores;
    for (int64_t i = begin; i < end; ++i) {
      const Slice& sl = slices[i];
      const size_t need = static_cast<size_t>(shape.num_heads) * (sl.end - sl.begin);
      if (scores.size() < need) scores.resize(need);
      const SliceArgs args{
          .q = q + sl.token * q_stride,
          .k_cache = k_cache,
          .v_cache = v_cache,
          .block_table = batch.block_tables +
                         static_cast<int64_t>(token_seq[sl.token]) * batch.max_blocks_per_seq,
          .begin = sl.begin,
          .end = sl.end,
          .shape = &shape,
          .scores = scores.data(),
          .out = partials[i],
      };
      kernel(args);
      if (sl.whole) {
        MergeSlices(partials, i, i + 1, shape.num_heads, d, out + sl.token * q_stride);
      }
    }
  });
  // Merge each remaining token's adjacent slices into its output row.
  for (size_t first = 0; first < slices.size();) {
    size_t last = first + 1;
    while (last < slices.size() && slices[last].token == slices[first].token) ++last;
    if (!slices[first].whole) {
      MergeSlices(partials, first, last, shape.num_heads, d, out + slices[first].token * q_stride);
    }
    first = last;
  }
}

}  // namespace alignserve::cpu
