// Paged causal attention for steps with prefill chunks: tiled, so that each
// K/V row read from the cache serves many query rows (flash-attention style,
// on CUDA cores; phase 2 of the attention work, tensor cores come next).
//
// One block of 4 warps per (sequence, query tile, kv head). The block's 64
// query rows are kTileTokens = 64 / G consecutive tokens of the sequence
// times the G query heads that share the kv head (GQA), row = token * G + g;
// warp w owns rows [16w, 16w + 16). For each tile of 32 keys the block
// stages K and V in shared memory (rows padded so that lanes reading
// different rows hit different banks); lane l scores key l against its
// warp's 16 rows (K row in registers, Q rows broadcast from shared memory),
// the warp updates each row's online softmax (max and sum by shuffles), and
// writes the row's probabilities to shared memory, from which every lane
// accumulates its D/32 output dims of the 16 rows. Keys past a token's
// position are masked (causal), so every row sees exactly keys [0, pos].
//
// Requirements (else the caller uses the phase-1 kernel): head_dim 64 or
// 128, G divides 64.
#include <cmath>

#include "kernels/cuda/cuda_device_utils.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace alignserve::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kRows = 64;  // query rows per block
constexpr int kRowsPerWarp = kRows / kWarps;
constexpr int kKeys = 32;  // keys per tile: one per lane

template <int D>
struct TileSmem {
  float q[kRows][D];                   // pre-scaled queries
  __nv_bfloat162 k[kKeys][D / 2 + 1];  // +1 word: lane l reads row l bank-conflict free
  __nv_bfloat162 v[kKeys][D / 2];
  float p[kWarps][kRowsPerWarp][kKeys];  // probabilities of the tile, per warp
};

template <int D, typename T>
__global__ void __launch_bounds__(kWarps * 32)
    TiledAttentionKernel(AttentionArgs a, int group, int tiles_per_seq) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  TileSmem<D>& sm = *reinterpret_cast<TileSmem<D>*>(smem_raw);
  const int seq = blockIdx.x / tiles_per_seq;
  const int tile = blockIdx.x % tiles_per_seq;
  const int kv_head = blockIdx.y;
  const int tile_tokens = kRows / group;
  const int q_begin = a.batch.query_start[seq];
  const int q_len = a.batch.query_start[seq + 1] - q_begin;
  const int t0 = tile * tile_tokens;  // first token of the tile, within the sequence's chunk
  if (t0 >= q_len) return;
  const int tokens = min(tile_tokens, q_len - t0);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int32_t* table =
      a.batch.block_tables + static_cast<int64_t>(seq) * a.batch.max_blocks_per_seq;
  const int max_ctx = a.batch.max_blocks_per_seq * a.block_size;

  // Stage the queries: row r = token * group + g (head kv_head * group + g).
  const T* q = static_cast<const T*>(a.q);
  for (int i = threadIdx.x; i < kRows * D; i += kWarps * 32) {
    const int r = i / D, d = i % D;
    const int tok = r / group, g = r % group;
    float value = 0.0f;
    if (tok < tokens) {
      const int64_t row = q_begin + t0 + tok;
      value = ToF32(q[(row * a.num_heads + kv_head * group + g) * D + d]) * a.scale;
    }
    sm.q[r][d] = value;
  }
  // Keys this block needs: up to the last token's position.
  const int last_pos = a.batch.positions[q_begin + t0 + tokens - 1];
  const int n_keys = min(last_pos + 1, max_ctx);

  // Per row of this warp: position (for the causal mask), m, l, and the
  // output dims [lane * D/32, ...) accumulated in registers.
  constexpr int kDims = D / 32;
  int row_pos[kRowsPerWarp];
  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][kDims];
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    const int r = warp * kRowsPerWarp + i;
    const int tok = r / group;
    row_pos[i] = tok < tokens ? a.batch.positions[q_begin + t0 + tok] : -1;
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int d = 0; d < kDims; ++d) acc[i][d] = 0.0f;
  }
  const bool warp_active = warp * kRowsPerWarp < tokens * group;

  const __nv_bfloat162* k_cache = static_cast<const __nv_bfloat162*>(a.k_cache);
  const __nv_bfloat162* v_cache = static_cast<const __nv_bfloat162*>(a.v_cache);
  for (int k0 = 0; k0 < n_keys; k0 += kKeys) {
    __syncthreads();  // the previous tile's K/V and probabilities are consumed
    // Stage K and V rows k0 .. k0 + 31 (zeros past n_keys or a bad block).
    for (int i = threadIdx.x; i < kKeys * (D / 2); i += kWarps * 32) {
      const int key = i / (D / 2), w = i % (D / 2);
      const int j = k0 + key;
      __nv_bfloat162 kv = __floats2bfloat162_rn(0.0f, 0.0f), vv = kv;
      if (j < n_keys) {
        const int32_t block = table[j / a.block_size];
        if (block >= 0 && block < a.num_blocks) {
          const int64_t slot = static_cast<int64_t>(block) * a.block_size + j % a.block_size;
          const int64_t offset = (slot * a.num_kv_heads + kv_head) * (D / 2) + w;
          kv = k_cache[offset];
          vv = v_cache[offset];
        }
      }
      sm.k[key][w] = kv;
      sm.v[key][w] = vv;
    }
    __syncthreads();
    if (!warp_active) continue;
    // Scores of key k0 + lane against the warp's rows.
    const int j = k0 + lane;
    float s[kRowsPerWarp];
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) s[i] = 0.0f;
#pragma unroll 4
    for (int w = 0; w < D / 2; ++w) {
      const float2 kf = __bfloat1622float2(sm.k[lane][w]);
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) {
        const float2 qf = *reinterpret_cast<const float2*>(&sm.q[warp * kRowsPerWarp + i][2 * w]);
        s[i] = fmaf(qf.x, kf.x, fmaf(qf.y, kf.y, s[i]));
      }
    }
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const bool visible = j <= row_pos[i] && j < n_keys;
      float correction;
      const float p = WarpOnlineSoftmax(visible ? s[i] : -INFINITY, m[i], l[i], &correction);
#pragma unroll
      for (int d = 0; d < kDims; ++d) acc[i][d] *= correction;
      sm.p[warp][i][lane] = p;
    }
    __syncwarp();
    // acc[i][d] += sum over keys of p[i][key] * V[key][lane * kDims + d].
    for (int key = 0; key < kKeys; ++key) {
      float v[kDims];
#pragma unroll
      for (int d = 0; d < kDims; d += 2) {
        const float2 vf = __bfloat1622float2(sm.v[key][(lane * kDims + d) / 2]);
        v[d] = vf.x;
        v[d + 1] = vf.y;
      }
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) {
        const float p = sm.p[warp][i][key];
#pragma unroll
        for (int d = 0; d < kDims; ++d) acc[i][d] = fmaf(p, v[d], acc[i][d]);
      }
    }
    __syncwarp();
  }
  if (!warp_active) return;
  T* out = static_cast<T*>(a.out);
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    if (row_pos[i] < 0) continue;
    const int r = warp * kRowsPerWarp + i;
    const int64_t row = q_begin + t0 + r / group;
    const int head = kv_head * group + r % group;
    const float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
#pragma unroll
    for (int d = 0; d < kDims; ++d) {
      out[(row * a.num_heads + head) * D + lane * kDims + d] = FromF32<T>(acc[i][d] * inv);
    }
  }
}

template <int D, typename T>
cudaError_t LaunchTiledFor(const AttentionArgs& args, cudaStream_t stream) {
  const int group = args.num_heads / args.num_kv_heads;
  const int tile_tokens = kRows / group;
  const int tiles_per_seq = (args.batch.max_query_len + tile_tokens - 1) / tile_tokens;
  const dim3 grid(args.batch.num_seqs * tiles_per_seq, args.num_kv_heads);
  const size_t smem = sizeof(TileSmem<D>);
  const cudaError_t e =
      cudaFuncSetAttribute(TiledAttentionKernel<D, T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(smem));
  if (e != cudaSuccess) return e;
  TiledAttentionKernel<D, T><<<grid, kWarps * 32, smem, stream>>>(args, group, tiles_per_seq);
  return cudaGetLastError();
}

template <int D>
cudaError_t LaunchTiledForType(const AttentionArgs& args, DType q_type, cudaStream_t stream) {
  switch (q_type) {
    case DType::kF32:
      return LaunchTiledFor<D, float>(args, stream);
    case DType::kBF16:
      return LaunchTiledFor<D, bf16>(args, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace

bool TiledAttentionSupports(const AttentionArgs& args) {
  if (args.head_dim != 64 && args.head_dim != 128) return false;
  if (args.num_kv_heads <= 0 || args.num_heads % args.num_kv_heads != 0) return false;
  const int group = args.num_heads / args.num_kv_heads;
  return group <= kRows && kRows % group == 0;
}

cudaError_t LaunchTiledPagedAttention(const AttentionArgs& args, DType q_type,
                                      cudaStream_t stream) {
  if (args.batch.num_tokens == 0 || args.batch.num_seqs == 0) return cudaSuccess;
  if (!TiledAttentionSupports(args)) return cudaErrorInvalidValue;
  return args.head_dim == 64 ? LaunchTiledForType<64>(args, q_type, stream)
                             : LaunchTiledForType<128>(args, q_type, stream);
}

}  // namespace alignserve::cuda
