// Device building blocks of the row sampler (cuda_sample_rows.cu), all of
// them deterministic: the same inputs give the same bits whatever the
// scheduling, because every floating-point sum runs in a fixed order (a
// fixed shuffle tree, or one thread in sequence) and only integers are
// combined with atomics.
//
//   Order keys: a logit as a uint32 whose unsigned order is the float order
//     (NaN -> 0, below -inf; -0 -> +0), and (key, id) packed in a uint64
//     whose descending order is "logit descending, then id ascending", the
//     order of top-k, top-p and the top logprobs.
//   ExpNonPositive: the host sampler's softmax weight (kernels/cpu/
//     exp_approx.h, ExpNonPositive in engine/logits_processors.cc) to the
//     bit, with every operation rounded on its own (no FMA contraction), so
//     device and host weights of a row are identical.
//   Block reductions and an exclusive scan for blocks of kSampleThreads.
//   A bitonic sort of uint64 in shared memory.
// Thread-safety: pure device functions; the block functions contain
// __syncthreads and must be called by every thread of the block.
#ifndef ALIGNSERVE_KERNELS_CUDA_CUDA_SAMPLING_PRIMITIVES_CUH_
#define ALIGNSERVE_KERNELS_CUDA_CUDA_SAMPLING_PRIMITIVES_CUH_

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cpu/exp_approx.h"

namespace alignserve::cuda::sampling {

// 1024: 32 warps per SM hide the passes' latency best (measured on an
// H100 against 512 threads with twice the registers).
constexpr int kSampleThreads = 1024;
constexpr int kSampleWarps = kSampleThreads / 32;
static_assert(kSampleThreads % 32 == 0 && kSampleWarps <= 32);
constexpr unsigned kFullMask = 0xffffffffu;

using u64 = unsigned long long;

// ---- Order keys ----

__device__ __forceinline__ uint32_t OrderKey(float x) {
  if (isnan(x)) return 0;
  uint32_t bits = __float_as_uint(x);
  if (bits == 0x80000000u) bits = 0;  // -0 == +0 on the host: one key
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

// The inverse of OrderKey for key != 0.
__device__ __forceinline__ float KeyValue(uint32_t key) {
  return __uint_as_float((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}

// Larger means earlier in "logit descending, then id ascending".
__device__ __forceinline__ u64 OrderComp(uint32_t key, int32_t id) {
  return (static_cast<u64>(key) << 32) | static_cast<uint32_t>(~id);
}

__device__ __forceinline__ int32_t CompId(u64 comp) {
  return static_cast<int32_t>(~static_cast<uint32_t>(comp));
}

// ---- The host's softmax weight ----

namespace exp_constants {
constexpr float kLog2e = exp_approx::kLog2e;
constexpr float kLn2Hi = exp_approx::kLn2Hi;
constexpr float kLn2Lo = exp_approx::kLn2Lo;
constexpr float kP0 = exp_approx::kPoly[0];
constexpr float kP1 = exp_approx::kPoly[1];
constexpr float kP2 = exp_approx::kPoly[2];
constexpr float kP3 = exp_approx::kPoly[3];
constexpr float kP4 = exp_approx::kPoly[4];
constexpr float kP5 = exp_approx::kPoly[5];
}  // namespace exp_constants

// exp(-|x|): 0 for |x| > 87.3, -inf and NaN; otherwise ExpInRange(-|x|)
// with the host's operation order.
__device__ __forceinline__ float ExpNonPositive(float x) {
  using namespace exp_constants;
  const int32_t magnitude = __float_as_int(x) & 0x7fffffff;
  if (magnitude > __float_as_int(87.3f)) return 0.0f;
  const float c = -__int_as_float(magnitude);
  const float shifted = __fadd_rn(__fmul_rn(c, kLog2e), 12582912.0f);
  const int32_t n = __float_as_int(shifted) - 0x4b400000;
  const float nf = __fsub_rn(shifted, 12582912.0f);
  const float r = __fadd_rn(__fsub_rn(c, __fmul_rn(nf, kLn2Hi)), __fmul_rn(nf, kLn2Lo));
  float y = kP0;
  y = __fadd_rn(__fmul_rn(y, r), kP1);
  y = __fadd_rn(__fmul_rn(y, r), kP2);
  y = __fadd_rn(__fmul_rn(y, r), kP3);
  y = __fadd_rn(__fmul_rn(y, r), kP4);
  y = __fadd_rn(__fmul_rn(y, r), kP5);
  y = __fadd_rn(__fadd_rn(__fmul_rn(__fmul_rn(y, r), r), r), 1.0f);
  return __fmul_rn(y, __int_as_float((n + 127) << 23));
}

// exp((x - max) * inv_t) as the host's ExpShifted computes it.
struct SoftmaxWeight {
  float max;
  float inv_t;
  __device__ __forceinline__ float operator()(float x) const {
    return ExpNonPositive(__fmul_rn(__fsub_rn(x, max), inv_t));
  }
};

// ---- Warp and block reductions (fixed trees) ----

// Shared scratch of the block functions; one per block.
struct BlockScratch {
  double d[kSampleWarps + 1];
  u64 u[kSampleWarps + 1];
  float f[kSampleWarps + 1];
  int32_t i[kSampleWarps + 1];
};

// The sum of v over the warp by a fixed tree, the same bits in every lane.
__device__ __forceinline__ double WarpSumBroadcast(double v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(kFullMask, v, offset);
  return __shfl_sync(kFullMask, v, 0);
}

__device__ __forceinline__ int32_t WarpMax(int32_t v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v = max(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

__device__ __forceinline__ double BlockSum(double v, BlockScratch& s) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(kFullMask, v, offset);
  __syncthreads();  // earlier readers of s are done
  if (lane == 0) s.d[warp] = v;
  __syncthreads();
  if (warp == 0) {
    double t = lane < kSampleWarps ? s.d[lane] : 0.0;
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) t += __shfl_down_sync(kFullMask, t, offset);
    if (lane == 0) s.d[kSampleWarps] = t;
  }
  __syncthreads();
  return s.d[kSampleWarps];
}

__device__ __forceinline__ int32_t BlockSum(int32_t v, BlockScratch& s) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullMask, v, offset);
  __syncthreads();
  if (lane == 0) s.i[warp] = v;
  __syncthreads();
  if (warp == 0) {
    int32_t t = lane < kSampleWarps ? s.i[lane] : 0;
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) t += __shfl_xor_sync(kFullMask, t, offset);
    if (lane == 0) s.i[kSampleWarps] = t;
  }
  __syncthreads();
  return s.i[kSampleWarps];
}

// The largest value, NaN ignored (-inf when there is none).
__device__ __forceinline__ float BlockMax(float v, BlockScratch& s) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  __syncthreads();
  if (lane == 0) s.f[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float t = lane < kSampleWarps ? s.f[lane] : -INFINITY;
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2)
      t = fmaxf(t, __shfl_xor_sync(kFullMask, t, offset));
    if (lane == 0) s.f[kSampleWarps] = t;
  }
  __syncthreads();
  return s.f[kSampleWarps];
}

// An argmax candidate; id -1 is "none yet".
struct Best {
  float value;
  int32_t id;
};

// Larger value, then lower id; NaN is never a candidate (see ArgMax in
// cuda_sampling.cu).
__device__ __forceinline__ Best Better(Best a, Best b) {
  if (b.id < 0) return a;
  if (a.id < 0) return b;
  return (b.value > a.value || (b.value == a.value && b.id < a.id)) ? b : a;
}

__device__ __forceinline__ Best WarpBest(Best b) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    const Best other{__shfl_xor_sync(kFullMask, b.value, offset),
                     __shfl_xor_sync(kFullMask, b.id, offset)};
    b = Better(b, other);
  }
  return b;
}

__device__ __forceinline__ Best BlockBest(Best b, BlockScratch& s) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  b = WarpBest(b);
  __syncthreads();
  if (lane == 0) {
    s.f[warp] = b.value;
    s.i[warp] = b.id;
  }
  __syncthreads();
  if (warp == 0) {
    b = WarpBest(lane < kSampleWarps ? Best{s.f[lane], s.i[lane]} : Best{-INFINITY, -1});
    if (lane == 0) {
      s.f[kSampleWarps] = b.value;
      s.i[kSampleWarps] = b.id;
    }
  }
  __syncthreads();
  return Best{s.f[kSampleWarps], s.i[kSampleWarps]};
}

// Exclusive prefix sum of one value per thread in thread order; *total gets
// the block's sum. Integers: exact in any order.
__device__ __forceinline__ u64 BlockExclusiveScan(u64 v, BlockScratch& s, u64* total) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  u64 inclusive = v;
#pragma unroll
  for (int offset = 1; offset < 32; offset *= 2) {
    const u64 y = __shfl_up_sync(kFullMask, inclusive, offset);
    if (lane >= offset) inclusive += y;
  }
  __syncthreads();
  if (lane == 31) s.u[warp] = inclusive;
  __syncthreads();
  if (warp == 0) {
    const u64 mine = lane < kSampleWarps ? s.u[lane] : 0;
    u64 scanned = mine;
#pragma unroll
    for (int offset = 1; offset < 32; offset *= 2) {
      const u64 y = __shfl_up_sync(kFullMask, scanned, offset);
      if (lane >= offset) scanned += y;
    }
    if (lane < kSampleWarps) s.u[lane] = scanned - mine;
    if (lane == 31) s.u[kSampleWarps] = scanned;
  }
  __syncthreads();
  *total = s.u[kSampleWarps];
  return s.u[warp] + inclusive - v;
}

// Sorts values[0, size) descending; size a power of two. Starts and ends
// with a barrier.
__device__ __forceinline__ void BitonicSortDescending(u64* values, uint32_t size) {
  __syncthreads();
  for (uint32_t k = 2; k <= size; k *= 2) {
    for (uint32_t j = k / 2; j > 0; j /= 2) {
      for (uint32_t i = threadIdx.x; i < size; i += kSampleThreads) {
        const uint32_t partner = i ^ j;
        if (partner > i) {
          const u64 a = values[i], b = values[partner];
          const bool descending = (i & k) == 0;
          if (descending ? a < b : a > b) {
            values[i] = b;
            values[partner] = a;
          }
        }
      }
      __syncthreads();
    }
  }
}

}  // namespace alignserve::cuda::sampling

#endif  // ALIGNSERVE_KERNELS_CUDA_CUDA_SAMPLING_PRIMITIVES_CUH_
