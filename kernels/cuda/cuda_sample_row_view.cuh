// How the row sampler's block reads its logits row (cuda_sample_rows.cu):
//
//   ForEachLogit visits every id of the row, each thread its own ids
//     (groups of 4 consecutive ids, group g to thread g % kSampleThreads),
//     in a fixed order that does not depend on the row's address: a
//     thread's floating-point sums over its ids are reproducible. Groups
//     are loaded as float4 when the row is 16-byte aligned, else as four
//     coalesced scalars.
//   AdjustedRow gives a logit after step 2 of kernels/device_sampling.h
//     (bias, min_tokens mask, repetition, presence and frequency penalties)
//     without copying the row: a bitmap of the row's adjusted tokens in
//     shared memory answers "is id adjusted?" for every element, and only
//     the few that are binary-search the row's sorted adjustments. The
//     arithmetic is the host's (engine/logits_processors.cc) operation for
//     operation, each rounded on its own, so adjusted values are bitwise
//     the host's.
// Thread-safety: device functions; BuildAdjustedRow has barriers.
#ifndef ALIGNSERVE_KERNELS_CUDA_CUDA_SAMPLE_ROW_VIEW_CUH_
#define ALIGNSERVE_KERNELS_CUDA_CUDA_SAMPLE_ROW_VIEW_CUH_

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_sampling_primitives.cuh"
#include "kernels/device_sampling.h"

namespace alignserve::cuda::sampling {

// x[k] = row[first + k] for first + k < limit (0 beyond); first is a
// multiple of 4.
__device__ __forceinline__ void LoadGroup(const float* __restrict__ row, int32_t limit,
                                          int32_t first, bool aligned, float (&x)[4]) {
  if (aligned && first + 4 <= limit) {
    const float4 v = __ldg(reinterpret_cast<const float4*>(row + first));
    x[0] = v.x;
    x[1] = v.y;
    x[2] = v.z;
    x[3] = v.w;
    return;
  }
#pragma unroll
  for (int k = 0; k < 4; ++k) x[k] = first + k < limit ? __ldg(row + first + k) : 0.0f;
}

__device__ __forceinline__ bool Aligned16(const float* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15) == 0;
}

// f(raw_value, id) for each id of the row. Two groups per iteration keep
// two loads in flight per thread.
template <typename F>
__device__ __forceinline__ void ForEachLogit(const float* __restrict__ row, int32_t vocab, F&& f) {
  const int32_t groups = (vocab + 3) / 4;
  const bool aligned = Aligned16(row);
  for (int32_t g = threadIdx.x; g < groups; g += 2 * kSampleThreads) {
    const int32_t g2 = g + kSampleThreads;
    float a[4], b[4];
    LoadGroup(row, vocab, 4 * g, aligned, a);
    if (g2 < groups) LoadGroup(row, vocab, 4 * g2, aligned, b);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      if (4 * g + k < vocab) f(a[k], 4 * g + k);
    }
    if (g2 < groups) {
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        if (4 * g2 + k < vocab) f(b[k], 4 * g2 + k);
      }
    }
  }
}

// Step 2 for one token, in the host's order and rounding.
__device__ __forceinline__ float ApplyAdjustment(float x, const LogitAdjustment& a,
                                                 float repetition, float presence,
                                                 float frequency) {
  x = __fadd_rn(x, a.bias);
  if (a.masked) x = -INFINITY;
  if (a.repeated && repetition != 1.0f) {
    x = x > 0.0f ? __fdiv_rn(x, repetition) : __fmul_rn(x, repetition);
  }
  if (a.output_count > 0 && (presence != 0.0f || frequency != 0.0f)) {
    const float penalty =
        __fadd_rn(__fmul_rn(frequency, static_cast<float>(a.output_count)), presence);
    x = __fsub_rn(x, penalty);
  }
  return x;
}

// What the slow path of a lookup needs, kept in shared memory so that only
// two pointers stay in registers through the passes.
struct AdjustContext {
  const LogitAdjustment* adjustments;  // [count], sorted by token
  int32_t count;
  float repetition;
  float presence;
  float frequency;
};

struct AdjustedRow {
  const uint32_t* bitmap = nullptr;        // [ceil(vocab / 32)] shared; null: no adjustments
  const AdjustContext* context = nullptr;  // shared

  // The adjusted logit of `id`, whose raw logit is `raw`.
  __device__ __forceinline__ float operator()(int32_t id, float raw) const {
    if (bitmap == nullptr || ((bitmap[id >> 5] >> (id & 31)) & 1u) == 0) return raw;
    return Lookup(id, raw);
  }

  __device__ __forceinline__ float Lookup(int32_t id, float raw) const {
    const LogitAdjustment* adjustments = context->adjustments;
    int32_t lo = 0, hi = context->count - 1;
    while (lo < hi) {
      const int32_t mid = (lo + hi) / 2;
      if (adjustments[mid].token < id) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    const LogitAdjustment& a = adjustments[lo];
    if (a.token != id) return raw;
    return ApplyAdjustment(raw, a, context->repetition, context->presence, context->frequency);
  }
};

// Marks the row's adjusted tokens in `bitmap` (shared, ceil(vocab / 32)
// words) and fills *context (shared). Ends with a barrier.
__device__ __forceinline__ AdjustedRow BuildAdjustedRow(const DeviceSamplingRow& row,
                                                        const LogitAdjustment* all,
                                                        uint32_t* bitmap, AdjustContext* context,
                                                        int32_t vocab) {
  AdjustedRow view;
  if (row.adjust_count <= 0) return view;
  const LogitAdjustment* mine = all + row.adjust_begin;
  if (threadIdx.x == 0) {
    *context = AdjustContext{mine, row.adjust_count, row.repetition_penalty, row.presence_penalty,
                             row.frequency_penalty};
  }
  const int32_t words = (vocab + 31) / 32;
  for (int32_t i = threadIdx.x; i < words; i += kSampleThreads) bitmap[i] = 0;
  __syncthreads();
  for (int32_t i = threadIdx.x; i < row.adjust_count; i += kSampleThreads) {
    const int32_t token = mine[i].token;
    if (token >= 0 && token < vocab) atomicOr(&bitmap[token >> 5], 1u << (token & 31));
  }
  __syncthreads();
  view.bitmap = bitmap;
  view.context = context;
  return view;
}

}  // namespace alignserve::cuda::sampling

#endif  // ALIGNSERVE_KERNELS_CUDA_CUDA_SAMPLE_ROW_VIEW_CUH_
