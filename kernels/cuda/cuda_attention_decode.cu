// Paged attention for decode-only steps (one query token per sequence),
// flash-decoding style: the keys of each (sequence, kv head) are split
// across blocks when the batch alone would not fill the GPU, and every K/V
// row is read once for all G query heads of its GQA group.
//
// Grid (num_seqs, num_kv_heads, num_splits); block of 4 warps. The split
// count is planned on the host from the batch shape alone (PlanDecodeSplit),
// and each block derives its sequence's split length on the device from
// the sequence's own context, so a CUDA graph captured for one batch shape
// stays valid whatever the contexts grow to. The 4 warps of a block share
// its split's keys tile by tile, then merge in shared memory; with one split
// the block writes the output, otherwise it writes (m, l, acc) to a
// workspace that MergeSplitsKernel combines.
//
// Warp w takes 16-key tiles w, w + 4, ... of the split; it streams each
// tile's K and V rows into its own shared-memory stage with cp.async
// (16-byte copies, two rows per warp instruction, so coalesced), two stages
// deep, so the next tile's bytes are in flight while this one computes and
// no registers hold them (a first kernel that loaded K rows and V slices
// into registers was 1.24x slower on a 256-sequence step: RESULTS.md).
// 16-byte chunks of a row are XOR-swizzled by key, so the 8 lanes of a
// quarter warp that read 8 keys' rows at one offset hit 8 different bank
// groups. Lanes l and l + 16 score key l % 16 over half of the dims each
// (one shuffle joins them); the online softmax reduces over 16 lanes; for
// P V each lane owns D/32 dims and takes each key's probability by shuffle.
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
constexpr int kMaxGroup = 8;
constexpr int kTileKeys = 16;  // keys per warp tile
constexpr int kStages = 2;     // cp.async stages per warp
// A split covers at least one tile per warp: shorter splits leave warps idle
// and cost a merge for nothing.
constexpr int kMinSplitKeys = kWarps * kTileKeys;

// Partial result of one split: m, l, then D accumulated values, per head.
__device__ __forceinline__ float* PartialOf(float* workspace, int seq, int head, int split,
                                            int num_heads, int num_splits, int d) {
  return workspace +
         ((static_cast<int64_t>(seq) * num_heads + head) * num_splits + split) * (d + 2);
}

// Keys per split for a sequence of n_ctx keys: a multiple of a tile, at
// least kMinSplitKeys, so that num_splits splits cover it.
__device__ __forceinline__ int SplitLen(int n_ctx, int num_splits) {
  const int per_split = (n_ctx + num_splits - 1) / num_splits;
  return max(kMinSplitKeys, (per_split + kTileKeys - 1) / kTileKeys * kTileKeys);
}

// The element offset of a key's K/V row in the cache (-1: a block id
// outside the cache, which the host has validated against already).
__device__ __forceinline__ int64_t CacheRowOffset(const AttentionArgs& a, const int32_t* table,
                                                  int j, int kv_head, int d) {
  const int32_t block = table[j / a.block_size];
  if (block < 0 || block >= a.num_blocks) return -1;
  const int64_t slot = static_cast<int64_t>(block) * a.block_size + j % a.block_size;
  return (slot * a.num_kv_heads + kv_head) * d;
}

template <int D, int G>
struct DecodeSmem {
  // Per warp and stage, a tile's K rows then its V rows, [kTileKeys][D]
  // bf16 each, 16-byte chunks swizzled (SwizzledChunk). After the loop the
  // same bytes hold the warps' partials for the merge.
  union {
    bf16 kv[kWarps][kStages][2][kTileKeys * D];
    struct {
      float acc[kWarps][G][D];
      float m[kWarps][G];
      float l[kWarps][G];
    } merge;
  };
  // Pre-scaled queries, each head's two halves of dims padded apart so the
  // two addresses a warp reads at once fall in different banks.
  float q[G][2][D / 2 + 4];
};

// Element offset of 16-byte chunk c of key `key`'s row in a tile.
template <int D>
__device__ __forceinline__ int SwizzledChunk(int key, int c) {
  return key * D + ((c ^ (key & 7)) << 3);
}

template <int D, int G, typename T>
__global__ void __launch_bounds__(kWarps * 32, 3)
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
    sm.q[g][d / (D / 2)][d % (D / 2)] =
        g < group
            ? ToF32(q[(static_cast<int64_t>(row) * a.num_heads + kv_head * group + g) * D + d]) *
                  a.scale
            : 0.0f;
  }

  const bf16* k_cache = static_cast<const bf16*>(a.k_cache);
  const bf16* v_cache = static_cast<const bf16*>(a.v_cache);
  constexpr int kChunks = D / 8;                            // 16-byte chunks per row
  constexpr int kCopiesPerLane = kTileKeys * kChunks / 32;  // per tile, for K and for V
  const int key = lane % kTileKeys;                         // the key this lane scores
  const int half = lane / kTileKeys;                        // and the half of its dims
  const int stride = kWarps * kTileKeys;
  const int first = k_begin + warp * kTileKeys;
  const int num_tiles = first < k_end ? (k_end - first + stride - 1) / stride : 0;

  // The cache offset of key `key` of the tile at t0 (-1: past the split or
  // an invalid block: zero-filled, masked).
  auto key_offset = [&](int t0) -> int64_t {
    const int j = t0 + key;
    return j < k_end ? CacheRowOffset(a, table, j, kv_head, D) : -1;
  };
  auto load_tile = [&](int t0, int stage) {
    const int64_t my_offset = key_offset(t0);
    bf16* ks = sm.kv[warp][stage][0];
    bf16* vs = sm.kv[warp][stage][1];
#pragma unroll
    for (int i = 0; i < kCopiesPerLane; ++i) {
      const int idx = i * 32 + lane;
      const int k = idx / kChunks, c = idx % kChunks;
      const int64_t off = __shfl_sync(~0u, my_offset, k);
      const bool valid = off >= 0;
      CpAsync16(SmemAddress(ks + SwizzledChunk<D>(k, c)), valid ? k_cache + off + 8 * c : k_cache,
                valid);
      CpAsync16(SmemAddress(vs + SwizzledChunk<D>(k, c)), valid ? v_cache + off + 8 * c : v_cache,
                valid);
    }
  };

#pragma unroll
  for (int st = 0; st < kStages; ++st) {
    if (st < num_tiles) load_tile(first + st * stride, st);
    CpAsyncCommit();  // empty groups too: the wait count below stays exact
  }
  __syncthreads();  // the queries

  constexpr int kDims = D / 32;
  float m[G], l[G], acc[G][kDims];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int d = 0; d < kDims; ++d) acc[g][d] = 0.0f;
  }

  for (int t = 0; t < num_tiles; ++t) {
    const int stage = t % kStages;
    const int t0 = first + t * stride;
    CpAsyncWait<kStages - 1>();  // this lane's copies of tile t
    __syncwarp();                // and every lane's
    const bool valid = key_offset(t0) >= 0;
    const bf16* ks = sm.kv[warp][stage][0];
    const bf16* vs = sm.kv[warp][stage][1];

    // Scores: this lane's half of the dims of its key, then the other half
    // from lane ^ 16.
    float s[G];
#pragma unroll
    for (int g = 0; g < G; ++g) s[g] = 0.0f;
#pragma unroll
    for (int c2 = 0; c2 < kChunks / 2; ++c2) {
      const uint4 raw =
          *reinterpret_cast<const uint4*>(ks + SwizzledChunk<D>(key, half * (kChunks / 2) + c2));
      const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&raw);
      float f[8];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float2 v = __bfloat1622float2(pairs[i]);
        f[2 * i] = v.x;
        f[2 * i + 1] = v.y;
      }
#pragma unroll
      for (int g = 0; g < G; ++g) {
        if (g >= group) continue;  // uniform across the warp
        const float4 qa = *reinterpret_cast<const float4*>(&sm.q[g][half][8 * c2]);
        const float4 qb = *reinterpret_cast<const float4*>(&sm.q[g][half][8 * c2 + 4]);
        s[g] = fmaf(qa.x, f[0], s[g]);
        s[g] = fmaf(qa.y, f[1], s[g]);
        s[g] = fmaf(qa.z, f[2], s[g]);
        s[g] = fmaf(qa.w, f[3], s[g]);
        s[g] = fmaf(qb.x, f[4], s[g]);
        s[g] = fmaf(qb.y, f[5], s[g]);
        s[g] = fmaf(qb.z, f[6], s[g]);
        s[g] = fmaf(qb.w, f[7], s[g]);
      }
    }

    // Online softmax over the tile's 16 keys (both halves of the warp hold
    // the same scores and reduce alike).
    float p[G];
#pragma unroll
    for (int g = 0; g < G; ++g) {
      p[g] = 0.0f;
      if (g >= group) continue;
      // Every lane shuffles (a shuffle skipped by some lanes of the mask
      // never completes); a masked key's score is then dropped.
      const float other_half = __shfl_xor_sync(~0u, s[g], 16);
      const float score = valid ? s[g] + other_half : -INFINITY;
      float tile_max = score;
#pragma unroll
      for (int o = kTileKeys / 2; o > 0; o /= 2)
        tile_max = fmaxf(tile_max, __shfl_xor_sync(~0u, tile_max, o));
      const float m_new = fmaxf(m[g], tile_max);
      p[g] = m_new == -INFINITY ? 0.0f : expf(score - m_new);
      const float correction = m_new == -INFINITY ? 1.0f : expf(m[g] - m_new);
      float sum = p[g];
#pragma unroll
      for (int o = kTileKeys / 2; o > 0; o /= 2) sum += __shfl_xor_sync(~0u, sum, o);
      l[g] = l[g] * correction + sum;
      m[g] = m_new;
#pragma unroll
      for (int d = 0; d < kDims; ++d) acc[g][d] *= correction;
    }

    // P V: this lane's kDims dims of each key's V row (a masked key's row
    // is zeros and its probability 0).
    const int e0 = lane * kDims;
#pragma unroll
    for (int u = 0; u < kTileKeys; ++u) {
      const bf16* v_row = vs + SwizzledChunk<D>(u, e0 / 8) + e0 % 8;
      float v[kDims];
      if constexpr (kDims == 4) {
        const uint2 raw = *reinterpret_cast<const uint2*>(v_row);
        const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.x));
        const float2 hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.y));
        v[0] = lo.x;
        v[1] = lo.y;
        v[2] = hi.x;
        v[3] = hi.y;
      } else {
        const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(v_row));
        v[0] = f.x;
        v[1] = f.y;
      }
#pragma unroll
      for (int g = 0; g < G; ++g) {
        if (g >= group) continue;
        const float pu = __shfl_sync(~0u, p[g], u);
#pragma unroll
        for (int d = 0; d < kDims; ++d) acc[g][d] = fmaf(pu, v[d], acc[g][d]);
      }
    }
    __syncwarp();  // every lane is done with this stage before it refills
    if (t + kStages < num_tiles) load_tile(t0 + kStages * stride, stage);
    CpAsyncCommit();
  }
  CpAsyncWaitAll();
  __syncthreads();  // the stages become the merge area

#pragma unroll
  for (int g = 0; g < G; ++g) {
    if (lane == 0) {
      sm.merge.m[warp][g] = m[g];
      sm.merge.l[warp][g] = l[g];
    }
#pragma unroll
    for (int d = 0; d < kDims; ++d) sm.merge.acc[warp][g][lane * kDims + d] = acc[g][d];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < group * D; i += kWarps * 32) {
    const int g = i / D, d = i % D;
    float m_all = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) m_all = fmaxf(m_all, sm.merge.m[w][g]);
    float l_all = 0.0f, o = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      // A warp that saw no key has m = -inf and contributes nothing.
      const float weight = sm.merge.m[w][g] == -INFINITY ? 0.0f : expf(sm.merge.m[w][g] - m_all);
      l_all += sm.merge.l[w][g] * weight;
      o += sm.merge.acc[w][g][d] * weight;
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
  const dim3 grid(args.batch.num_seqs, args.num_kv_heads, split.num_splits);
  const size_t smem = sizeof(DecodeSmem<D, G>);
  const cudaError_t e =
      cudaFuncSetAttribute(DecodeAttentionKernel<D, G, T>,
                           cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  if (e != cudaSuccess) return e;
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
  // longest possible context fills with a tile per warp each. Shorter
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
