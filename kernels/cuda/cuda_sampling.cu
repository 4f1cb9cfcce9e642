// Device-side reductions over logits rows, so that greedy rows send one id to
// the host instead of a whole vocabulary row.
//
// ArgMax: one block of kThreads per row. Each thread scans the columns
// c = tid, tid + kThreads, ... keeping (value, column) with strict '>' so the
// first (lowest) column wins among its own; the block then reduces pairs,
// preferring the larger value and, on equal values, the lower column. NaN
// compares false against everything and never wins. Reads are coalesced;
// one pass over the row, so the cost is the row's bytes.
#include <cmath>

#include "kernels/cuda/cuda_device_utils.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/cuda_sampling_primitives.cuh"

namespace alignserve::cuda {
namespace {

constexpr int kThreads = 1024;

using sampling::Best;
using sampling::Better;  // larger value, then lower id; id -1 is "none yet"

__global__ void __launch_bounds__(kThreads)
    ArgMaxKernel(const float* logits, int64_t cols, int32_t* ids) {
  const float* row = logits + static_cast<int64_t>(blockIdx.x) * cols;
  Best best{-INFINITY, -1};
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
    const float v = row[c];
    // The first column seen (even -inf) is a candidate; later ones must be
    // strictly larger. NaN fails both tests.
    if (v > best.value || (best.id < 0 && v == best.value)) {
      best = {v, static_cast<int32_t>(c)};
    }
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    Best other{__shfl_down_sync(0xffffffffu, best.value, offset),
               __shfl_down_sync(0xffffffffu, best.id, offset)};
    best = Better(best, other);
  }
  __shared__ Best warp_best[kThreads / 32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_best[warp] = best;
  __syncthreads();
  if (warp != 0) return;
  best = lane < kThreads / 32 ? warp_best[lane] : Best{-INFINITY, -1};
  for (int offset = 16; offset > 0; offset /= 2) {
    Best other{__shfl_down_sync(0xffffffffu, best.value, offset),
               __shfl_down_sync(0xffffffffu, best.id, offset)};
    best = Better(best, other);
  }
  if (lane == 0) ids[blockIdx.x] = best.id < 0 ? 0 : best.id;
}

}  // namespace

cudaError_t LaunchArgMax(const float* logits, int64_t rows, int64_t cols, int32_t* ids,
                         cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (rows > INT32_MAX) return cudaErrorInvalidValue;
  ArgMaxKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(logits, cols, ids);
  return cudaGetLastError();
}

}  // namespace alignserve::cuda
