// Paged causal attention on the GPU, phase 1: correct and simple.
//
// One thread block per (token, query head), kWarps warps. Each warp walks
// the key positions j = warp, warp + kWarps, ... < position + 1 of the
// token's sequence, finding each K/V row through the block table, and keeps
// an online softmax (running max m, running sum l, running output acc).
// Lane `lane` owns head dims [lane * kPerLane, (lane + 1) * kPerLane), so a
// head of up to 32 * kPerLane dims fits in registers; a score is a warp sum.
// At the end the warps' partial states are merged through shared memory.
//
// kPerLane is 1, 2, 4 or 8: head_dim <= 32, 64 (e.g. 64), 128 (e.g. 80, 96,
// 128) or 256. No tiling, no tensor cores, one key per warp step: the
// later, fast kernel must match this one.
#include <cmath>

#include "kernels/cuda/cuda_device_utils.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace alignserve::cuda {
namespace {

constexpr int kWarps = 4;

// The sequence owning token row t: the last s with query_start[s] <= t.
__device__ __forceinline__ int SequenceOf(const int32_t* query_start, int num_seqs, int t) {
  int lo = 0, hi = num_seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (query_start[mid] <= t) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

template <int kPerLane, typename T>
__global__ void __launch_bounds__(kWarps * 32) PagedAttentionKernel(AttentionArgs a) {
  constexpr int kMaxDim = 32 * kPerLane;
  __shared__ float warp_m[kWarps];
  __shared__ float warp_l[kWarps];
  __shared__ float warp_acc[kWarps][kMaxDim];

  const int t = blockIdx.x;
  const int h = blockIdx.y;
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int d = a.head_dim;
  const int kv_head = h / (a.num_heads / a.num_kv_heads);
  const int s = SequenceOf(a.batch.query_start, a.batch.num_seqs, t);
  const int n_ctx = a.batch.positions[t] + 1;
  const int32_t* table =
      a.batch.block_tables + static_cast<int64_t>(s) * a.batch.max_blocks_per_seq;
  const int max_ctx = a.batch.max_blocks_per_seq * a.block_size;

  const T* q = static_cast<const T*>(a.q) + (static_cast<int64_t>(t) * a.num_heads + h) * d;
  float qv[kPerLane];
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int dim = lane * kPerLane + i;
    qv[i] = dim < d ? ToF32(q[dim]) * a.scale : 0.0f;
  }

  float m = -INFINITY, l = 0.0f;
  float acc[kPerLane] = {};
  const bf16* k_cache = static_cast<const bf16*>(a.k_cache);
  const bf16* v_cache = static_cast<const bf16*>(a.v_cache);
  for (int j = warp; j < n_ctx && j < max_ctx; j += kWarps) {
    const int32_t block = table[j / a.block_size];
    if (block < 0 || block >= a.num_blocks) continue;  // validated on the host
    const int64_t slot = static_cast<int64_t>(block) * a.block_size + j % a.block_size;
    const int64_t offset = (slot * a.num_kv_heads + kv_head) * d;
    float dot = 0.0f;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int dim = lane * kPerLane + i;
      if (dim < d) dot += qv[i] * ToF32(k_cache[offset + dim]);
    }
    const float score = WarpSum(dot);
    const float m_new = fmaxf(m, score);
    const float correction = expf(m - m_new);
    const float p = expf(score - m_new);
    l = l * correction + p;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int dim = lane * kPerLane + i;
      const float v = dim < d ? ToF32(v_cache[offset + dim]) : 0.0f;
      acc[i] = acc[i] * correction + p * v;
    }
    m = m_new;
  }

  if (lane == 0) {
    warp_m[warp] = m;
    warp_l[warp] = l;
  }
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) warp_acc[warp][lane * kPerLane + i] = acc[i];
  __syncthreads();
  if (warp != 0) return;

  float m_all = -INFINITY;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) m_all = fmaxf(m_all, warp_m[w]);
  float weight[kWarps];
  float l_all = 0.0f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    // A warp that saw no key has m = -inf and contributes nothing.
    weight[w] = warp_m[w] == -INFINITY ? 0.0f : expf(warp_m[w] - m_all);
    l_all += warp_l[w] * weight[w];
  }
  const float inv = 1.0f / l_all;
  T* out = static_cast<T*>(a.out) + (static_cast<int64_t>(t) * a.num_heads + h) * d;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int dim = lane * kPerLane + i;
    if (dim >= d) continue;
    float o = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) o += warp_acc[w][dim] * weight[w];
    out[dim] = FromF32<T>(o * inv);
  }
}

template <int kPerLane>
cudaError_t LaunchFor(const AttentionArgs& args, DType q_type, cudaStream_t stream) {
  const dim3 grid(args.batch.num_tokens, args.num_heads);
  return ALIGNSERVE_DISPATCH_ACT(
      q_type, T, PagedAttentionKernel<kPerLane, T><<<grid, kWarps * 32, 0, stream>>>(args));
}

}  // namespace

cudaError_t LaunchPagedAttention(const AttentionArgs& args, DType q_type, cudaStream_t stream) {
  if (args.batch.num_tokens == 0 || args.num_heads == 0) return cudaSuccess;
  if (args.head_dim <= 32) return LaunchFor<1>(args, q_type, stream);
  if (args.head_dim <= 64) return LaunchFor<2>(args, q_type, stream);
  if (args.head_dim <= 128) return LaunchFor<4>(args, q_type, stream);
  if (args.head_dim <= 256) return LaunchFor<8>(args, q_type, stream);
  return cudaErrorInvalidValue;
}

}  // namespace alignserve::cuda
