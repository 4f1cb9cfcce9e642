// Paged attention for decode-only steps (one query token per sequence),
// flash-decoding style: the keys of each (sequence, kv head) are split
// across blocks when the batch alone would not fill the GPU, and every K/V
// row is read once for all G query heads of its GQA group.
//
// Grid (num_seqs, num_kv_heads, num_splits); block of 4 warps. The split
// count is planned on the host from the batch shape alone (PlanDecodeSplit),
// and each block derives its sequence's split length on the device from
// the sequence's own context, so a CUDA graph captured for one batch shape
// stays valid whatever the contexts grow to. A block owns keys
// [split * split_len, ...) of its sequence, in tiles of 32 keys; warp w
// takes tiles w, w + 4, ... For a tile, lane l reads key l's whole K row
// (every 16-byte load issued before the first use) and scores it against
// the G queries broadcast from shared memory; the warp updates G online
// softmaxes (max and sum by shuffles), publishes the probabilities in
// shared memory, then every lane loads its D/32 dims of 16 V rows at once
// (each V row read coalesced by the warp) and accumulates P V. The loads
// are unrolled so that a tile costs four memory round trips, not one per
// key; at most 128 registers keep 4 blocks on a multiprocessor. The 4 warps then merge in shared
// memory; with one split the block writes the output, otherwise it writes (m, l, acc) to a
// workspace that MergeSplitsKernel combines.
//
// G is a template parameter (1, 2, 4 or 8; a group of 3 runs as 4 with the
// extra heads idle), so registers hold only the group's accumulators.
// Requirements (else the caller uses the phase-1 kernel): head_dim 64 or
// 128, G = num_heads / num_kv_heads <= 8.
#include <algorithm>
#include <cmath>

#include "kernels/cuda/cuda_device_utils.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace alignserve::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kKeys = 32;
constexpr int kMaxGroup = 8;
// A split covers at least one tile per warp: shorter splits leave warps idle
// and cost a merge for nothing.
constexpr int kMinSplitKeys = kWarps * kKeys;

template <int D, int G>
struct DecodeSmem {
  float q[G][D];              // pre-scaled
  float p[kWarps][G][kKeys];  // a tile's probabilities, per warp
  float acc[kWarps][G][D];    // warp partials for the merge
  float m[kWarps][G];
  float l[kWarps][G];
};

// Partial result of one split: m, l, then D accumulated values, per head.
__device__ __forceinline__ float* PartialOf(float* workspace, int seq, int head, int split,
                                            int num_heads, int num_splits, int d) {
  return workspace +
         ((static_cast<int64_t>(seq) * num_heads + head) * num_splits + split) * (d + 2);
}

// Keys per split for a sequence of n_ctx keys: a multiple of 32, at least
// kMinSplitKeys, so that num_splits splits cover it.
__device__ __forceinline__ int SplitLen(int n_ctx, int num_splits) {
  const int per_split = (n_ctx + num_splits - 1) / num_splits;
  return max(kMinSplitKeys, (per_split + kKeys - 1) / kKeys * kKeys);
}

// Scores of this lane's key (its K row at k_off; -1: masked) against the G
// pre-scaled queries.
template <int D, int G>
__device__ __forceinline__ void ScoreKey(const bf16* k_cache, int64_t k_off, const float (&q)[G][D],
                                         int group, float (&s)[G]) {
#pragma unroll
  for (int g = 0; g < G; ++g) s[g] = 0.0f;
  if (k_off < 0) return;
  // Two round trips of D/16 16-byte loads each: all of the row at once
  // would take 64 registers for D = 128 and spill.
  constexpr int kPieces = D / 16;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    uint4 raw[kPieces];
#pragma unroll
    for (int c = 0; c < kPieces; ++c) {
      raw[c] = *reinterpret_cast<const uint4*>(k_cache + k_off + 8 * (half * kPieces + c));
    }
#pragma unroll
    for (int c = 0; c < kPieces; ++c) {
      const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&raw[c]);
      const int base = 8 * (half * kPieces + c);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float2 f = __bfloat1622float2(pairs[i]);
#pragma unroll
        for (int g = 0; g < G; ++g) {
          if (g < group)
            s[g] = fmaf(q[g][base + 2 * i + 1], f.y, fmaf(q[g][base + 2 * i], f.x, s[g]));
        }
      }
    }
  }
}

template <int D, int G, typename T>
__global__ void __launch_bounds__(kWarps * 32, 4)
    DecodeAttentionKernel(AttentionArgs a, int group, float* workspace) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  DecodeSmem<D, G>& sm = *reinterpret_cast<DecodeSmem<D, G>*>(smem_raw);
  const int seq = blockIdx.x, kv_head = blockIdx.y, split = blockIdx.z;
  const int num_splits = gridDim.z;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int row = a.batch.query_start[seq];  // the sequence's one query token
  const int max_ctx = a.batch.max_blocks_per_seq * a.block_size;
  const int n_ctx = min(a.batch.positions[row] + 1, max_ctx);
  const int split_len = SplitLen(n_ctx, num_splits);
  const int k_begin = split * split_len;
  const int k_end = min(n_ctx, k_begin + split_len);
  const int32_t* table =
      a.batch.block_tables + static_cast<int64_t>(seq) * a.batch.max_blocks_per_seq;

  const T* q = static_cast<const T*>(a.q);
  for (int i = threadIdx.x; i < G * D; i += kWarps * 32) {
    const int g = i / D, d = i % D;
    sm.q[g][d] =
        g < group
            ? ToF32(q[(static_cast<int64_t>(row) * a.num_heads + kv_head * group + g) * D + d]) *
                  a.scale
            : 0.0f;
  }
  __syncthreads();

  constexpr int kDims = D / 32;
  float m[G], l[G], acc[G][kDims];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int d = 0; d < kDims; ++d) acc[g][d] = 0.0f;
  }
  const bf16* k_cache = static_cast<const bf16*>(a.k_cache);
  const bf16* v_cache = static_cast<const bf16*>(a.v_cache);
  auto row_offset = [&](int j) -> int64_t {
    const int32_t block = table[j / a.block_size];
    if (block < 0 || block >= a.num_blocks) return -1;  // validated on the host
    const int64_t slot = static_cast<int64_t>(block) * a.block_size + j % a.block_size;
    return (slot * a.num_kv_heads + kv_head) * D;
  };

  for (int k0 = k_begin + warp * kKeys; k0 < k_end; k0 += kWarps * kKeys) {
    const int j = k0 + lane;
    const int64_t k_off = j < k_end ? row_offset(j) : -1;
    float s[G];
    ScoreKey<D, G>(k_cache, k_off, sm.q, group, s);
#pragma unroll
    for (int g = 0; g < G; ++g) {
      if (g >= group) continue;  // uniform across the warp
      float correction;
      const float p = WarpOnlineSoftmax(k_off >= 0 ? s[g] : -INFINITY, m[g], l[g], &correction);
#pragma unroll
      for (int d = 0; d < kDims; ++d) acc[g][d] *= correction;
      sm.p[warp][g][lane] = p;
    }
    __syncwarp();
    // Lane l's dims [l * kDims, ...) of the V rows, 16 keys per round trip
    // (all 16 loads issued before the first use); a masked key (its
    // probability is 0) reads nothing and adds zeros.
    constexpr int kBatch = 16;
#pragma unroll
    for (int key0 = 0; key0 < kKeys; key0 += kBatch) {
      float v[kBatch][kDims];
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int64_t v_off = __shfl_sync(~0u, k_off, key0 + u);
#pragma unroll
        for (int d = 0; d < kDims; d += 2) {
          float2 f = make_float2(0.0f, 0.0f);
          if (v_off >= 0) {
            f = __bfloat1622float2(
                *reinterpret_cast<const __nv_bfloat162*>(v_cache + v_off + lane * kDims + d));
          }
          v[u][d] = f.x;
          v[u][d + 1] = f.y;
        }
      }
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
#pragma unroll
        for (int g = 0; g < G; ++g) {
          if (g >= group) continue;
          const float p = sm.p[warp][g][key0 + u];
#pragma unroll
          for (int d = 0; d < kDims; ++d) acc[g][d] = fmaf(p, v[u][d], acc[g][d]);
        }
      }
    }
    __syncwarp();
  }

  // Merge the warps: each publishes (m, l, acc); then thread t combines
  // dims of every head.
#pragma unroll
  for (int g = 0; g < G; ++g) {
    if (lane == 0) {
      sm.m[warp][g] = m[g];
      sm.l[warp][g] = l[g];
    }
#pragma unroll
    for (int d = 0; d < kDims; ++d) sm.acc[warp][g][lane * kDims + d] = acc[g][d];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < group * D; i += kWarps * 32) {
    const int g = i / D, d = i % D;
    float m_all = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) m_all = fmaxf(m_all, sm.m[w][g]);
    float l_all = 0.0f, o = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      // A warp that saw no key has m = -inf and contributes nothing.
      const float weight = sm.m[w][g] == -INFINITY ? 0.0f : expf(sm.m[w][g] - m_all);
      l_all += sm.l[w][g] * weight;
      o += sm.acc[w][g][d] * weight;
    }
    const int head = kv_head * group + g;
    if (num_splits == 1) {
      T* out = static_cast<T*>(a.out);
      out[(static_cast<int64_t>(row) * a.num_heads + head) * D + d] =
          FromF32<T>(l_all > 0.0f ? o / l_all : 0.0f);
    } else {
      float* part = PartialOf(workspace, seq, head, split, a.num_heads, num_splits, D);
      if (d == 0) {
        part[0] = m_all;
        part[1] = l_all;
      }
      part[2 + d] = o;
    }
  }
}

// out[row(seq), head, :] = the softmax-weighted merge of the splits'
// partials. One block of D threads per (sequence, head).
template <typename T>
__global__ void MergeSplitsKernel(AttentionArgs a, int num_splits, const float* workspace) {
  const int seq = blockIdx.x, head = blockIdx.y, d = threadIdx.x;
  const int D = a.head_dim;
  float m_all = -INFINITY;
  for (int s = 0; s < num_splits; ++s) {
    m_all = fmaxf(m_all, PartialOf(const_cast<float*>(workspace), seq, head, s, a.num_heads,
                                   num_splits, D)[0]);
  }
  float l_all = 0.0f, o = 0.0f;
  for (int s = 0; s < num_splits; ++s) {
    const float* part =
        PartialOf(const_cast<float*>(workspace), seq, head, s, a.num_heads, num_splits, D);
    // A split past the sequence's end saw no key: m = -inf, no weight.
    const float weight = part[0] == -INFINITY ? 0.0f : expf(part[0] - m_all);
    l_all += part[1] * weight;
    o += part[2 + d] * weight;
  }
  const int row = a.batch.query_start[seq];
  T* out = static_cast<T*>(a.out);
  out[(static_cast<int64_t>(row) * a.num_heads + head) * D + d] =
      FromF32<T>(l_all > 0.0f ? o / l_all : 0.0f);
}

template <int D, int G, typename T>
cudaError_t LaunchDecodeFor(const AttentionArgs& args, const DecodeSplit& split, float* workspace,
                            cudaStream_t stream) {
  const int group = args.num_heads / args.num_kv_heads;
  const size_t smem = sizeof(DecodeSmem<D, G>);
  const cudaError_t e =
      cudaFuncSetAttribute(DecodeAttentionKernel<D, G, T>,
                           cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  if (e != cudaSuccess) return e;
  const dim3 grid(args.batch.num_seqs, args.num_kv_heads, split.num_splits);
  DecodeAttentionKernel<D, G, T><<<grid, kWarps * 32, smem, stream>>>(args, group, workspace);
  if (split.num_splits > 1) {
    const dim3 merge_grid(args.batch.num_seqs, args.num_heads);
    MergeSplitsKernel<T><<<merge_grid, D, 0, stream>>>(args, split.num_splits, workspace);
  }
  return cudaGetLastError();
}

// The smallest compiled group size that holds the model's group.
template <int D, typename T>
cudaError_t LaunchDecodeForGroup(const AttentionArgs& args, const DecodeSplit& split,
                                 float* workspace, cudaStream_t stream) {
  const int group = args.num_heads / args.num_kv_heads;
  if (group == 1) return LaunchDecodeFor<D, 1, T>(args, split, workspace, stream);
  if (group == 2) return LaunchDecodeFor<D, 2, T>(args, split, workspace, stream);
  if (group <= 4) return LaunchDecodeFor<D, 4, T>(args, split, workspace, stream);
  return LaunchDecodeFor<D, 8, T>(args, split, workspace, stream);
}

template <int D>
cudaError_t LaunchDecodeForType(const AttentionArgs& args, DType q_type, const DecodeSplit& split,
                                float* workspace, cudaStream_t stream) {
  switch (q_type) {
    case DType::kF32:
      return LaunchDecodeForGroup<D, float>(args, split, workspace, stream);
    case DType::kBF16:
      return LaunchDecodeForGroup<D, bf16>(args, split, workspace, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace

bool DecodeAttentionSupports(const AttentionArgs& args) {
  if (args.head_dim != 64 && args.head_dim != 128) return false;
  if (args.num_kv_heads <= 0 || args.num_heads % args.num_kv_heads != 0) return false;
  return args.num_heads / args.num_kv_heads <= kMaxGroup && args.batch.max_query_len <= 1;
}

DecodeSplit PlanDecodeSplit(int num_seqs, int num_kv_heads, int max_context_len,
                            int multiprocessors) {
  // Enough blocks for two per multiprocessor, but no more splits than the
  // longest possible context fills with kMinSplitKeys each. Shorter
  // sequences leave their trailing splits empty (the merge skips them).
  const int64_t blocks = std::max<int64_t>(1, static_cast<int64_t>(num_seqs) * num_kv_heads);
  const int64_t wanted = (2 * static_cast<int64_t>(multiprocessors) + blocks - 1) / blocks;
  const int by_len = (std::max(max_context_len, 1) + kMinSplitKeys - 1) / kMinSplitKeys;
  DecodeSplit split;
  split.num_splits = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(wanted, by_len)));
  return split;
}

size_t DecodeWorkspaceBytes(const AttentionArgs& args, const DecodeSplit& split) {
  if (split.num_splits <= 1) return 0;
  return static_cast<size_t>(args.batch.num_seqs) * args.num_heads * split.num_splits *
         (args.head_dim + 2) * sizeof(float);
}

cudaError_t LaunchDecodePagedAttention(const AttentionArgs& args, DType q_type,
                                       const DecodeSplit& split, float* workspace,
                                       cudaStream_t stream) {
  if (args.batch.num_seqs == 0) return cudaSuccess;
  if (!DecodeAttentionSupports(args) || split.num_splits < 1 ||
      (split.num_splits > 1 && workspace == nullptr)) {
    return cudaErrorInvalidValue;
  }
  return args.head_dim == 64 ? LaunchDecodeForType<64>(args, q_type, split, workspace, stream)
                             : LaunchDecodeForType<128>(args, q_type, split, workspace, stream);
}

}  // namespace alignserve::cuda
