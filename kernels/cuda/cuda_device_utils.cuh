// Device-side helpers shared by the .cu files of the CUDA backend: loads and
// stores that convert between storage types (f32, f16, bf16) and the f32 the
// kernels compute in, warp and block reductions, and the run-time dispatch
// from a DType to a template instantiation.
// Thread-safety: pure device functions.
#ifndef ALIGNSERVE_KERNELS_CUDA_CUDA_DEVICE_UTILS_CUH_
#define ALIGNSERVE_KERNELS_CUDA_CUDA_DEVICE_UTILS_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/dtype.h"

namespace alignserve::cuda {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float ToF32(float v) { return v; }
__device__ __forceinline__ float ToF32(bf16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float ToF32(__half v) { return __half2float(v); }

template <typename T>
__device__ __forceinline__ T FromF32(float v);
template <>
__device__ __forceinline__ float FromF32<float>(float v) {
  return v;
}
// Round to nearest even, as the host's F32ToBf16 (kernels/cpu/fp16.h).
template <>
__device__ __forceinline__ bf16 FromF32<bf16>(float v) {
  return __float2bfloat16_rn(v);
}

__device__ __forceinline__ uint32_t SmemAddress(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes from global to shared memory, asynchronously; zeros if !valid
// (src is then not read). A thread's copies complete in commit-group order:
// CpAsyncWait<N> waits until at most N of its groups are still in flight;
// other threads see the data after a barrier (__syncwarp / __syncthreads).
__device__ __forceinline__ void CpAsync16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ void CpAsyncWaitAll() { CpAsyncWait<0>(); }

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// One tile of an online softmax across a warp, lane l holding the score of
// key l of the tile (-inf for a key it must not see): updates the running
// max m and sum l (the same in every lane) and returns this lane's
// probability; *correction is the factor the accumulated output must be
// scaled by. A row that has seen no visible key yet keeps m = -inf and gets
// p = 0, correction = 1 (no NaN from inf - inf).
__device__ __forceinline__ float WarpOnlineSoftmax(float score, float& m, float& l,
                                                   float* correction) {
  float tile_max = score;
#pragma unroll
  for (int o = 16; o > 0; o /= 2)
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, o));
  const float m_new = fmaxf(m, tile_max);
  const float p = m_new == -INFINITY ? 0.0f : expf(score - m_new);
  *correction = m_new == -INFINITY ? 1.0f : expf(m - m_new);
  l = l * *correction + WarpSum(p);
  m = m_new;
  return p;
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024);
// every thread gets the result. Contains __syncthreads: call from all threads.
__device__ __forceinline__ float BlockSum(float v) {
  __shared__ float partial[32];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  v = WarpSum(v);
  __syncthreads();  // partial may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  const int warps = blockDim.x / 32;
  float total = lane < warps ? partial[lane] : 0.0f;
  return WarpSum(total);
}

}  // namespace alignserve::cuda

// Runs the statement after ActT (a kernel launch) with the type name ActT
// bound to the C++ type of an activation DType (float or bf16) and
// evaluates to the launch's cudaGetLastError(); cudaErrorInvalidValue for
// other dtypes.
#define ALIGNSERVE_DISPATCH_ACT(dtype, ActT, ...) \
  [&]() -> cudaError_t {                          \
    switch (dtype) {                              \
      case ::alignserve::DType::kF32: {           \
        using ActT = float;                       \
        __VA_ARGS__;                              \
        return cudaGetLastError();                \
      }                                           \
      case ::alignserve::DType::kBF16: {          \
        using ActT = ::alignserve::cuda::bf16;    \
        __VA_ARGS__;                              \
        return cudaGetLastError();                \
      }                                           \
      default:                                    \
        return cudaErrorInvalidValue;             \
    }                                             \
  }()

#endif  // ALIGNSERVE_KERNELS_CUDA_CUDA_DEVICE_UTILS_CUH_
