// Matrix-vector products for decode steps of a few sequences: y[m, n] =
// x[m, k] * w[n, k]^T (+ bias) for m <= 4 bf16 rows, the shape where
// reading the weights once at full memory bandwidth is the whole cost.
// cuBLAS picks split-K kernels plus a reduction kernel for these shapes
// (two launches, ~75% of bandwidth on an H100); here one warp streams one
// weight row with 16-byte loads, four in flight per lane, and keeps the m
// dot products in registers; x (m * k bf16, a few KB) comes from L1/L2.
//
// A row's result does not depend on m (each dot product is reduced in the
// same order), but it differs from cuBLAS's, which serves m > 4: so the
// backend uses it only under ALIGNSERVE_CUDA_GEMV=1 (cuda_matmul.h).
//
// Grid: ceil(n / 8) blocks of 8 warps, warp w of block b owns output
// feature 8b + w. Requirements (GemvSupports): 1 <= m <= 4, k a multiple of
// 8, 16-byte aligned x and w.
#include "kernels/cuda/cuda_device_utils.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace alignserve::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kInFlight = 4;  // 16-byte weight loads in flight per lane

__device__ __forceinline__ float Dot8(const uint4& a, const uint4& b) {
  const __nv_bfloat162* pa = reinterpret_cast<const __nv_bfloat162*>(&a);
  const __nv_bfloat162* pb = reinterpret_cast<const __nv_bfloat162*>(&b);
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 fa = __bfloat1622float2(pa[i]);
    const float2 fb = __bfloat1622float2(pb[i]);
    s = fmaf(fa.x, fb.x, s);
    s = fmaf(fa.y, fb.y, s);
  }
  return s;
}

template <int M, typename OutT>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    GemvKernel(const bf16* __restrict__ x, const bf16* __restrict__ w, const float* bias, int n,
               int k, OutT* __restrict__ y) {
  const int lane = threadIdx.x % 32;
  const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
  if (row >= n) return;
  const bf16* w_row = w + static_cast<int64_t>(row) * k;
  float acc[M];
#pragma unroll
  for (int r = 0; r < M; ++r) acc[r] = 0.0f;
  constexpr int kStride = 32 * 8;  // elements one warp-wide load covers
  for (int c0 = lane * 8; c0 < k; c0 += kStride * kInFlight) {
    uint4 wv[kInFlight];
#pragma unroll
    for (int u = 0; u < kInFlight; ++u) {
      const int c = c0 + u * kStride;
      wv[u] = c < k ? __ldg(reinterpret_cast<const uint4*>(w_row + c)) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kInFlight; ++u) {
      const int c = c0 + u * kStride;
      if (c >= k) break;
#pragma unroll
      for (int r = 0; r < M; ++r) {
        const uint4 xv = __ldg(reinterpret_cast<const uint4*>(x + static_cast<int64_t>(r) * k + c));
        acc[r] += Dot8(wv[u], xv);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < M; ++r) {
    const float sum = WarpSum(acc[r]);
    if (lane == 0) {
      y[static_cast<int64_t>(r) * n + row] =
          FromF32<OutT>(sum + (bias != nullptr ? bias[row] : 0.0f));
    }
  }
}

template <int M>
cudaError_t LaunchGemvRows(const bf16* x, const bf16* w, const float* bias, int n, int k, void* y,
                           DType y_type, cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>((n + kWarpsPerBlock - 1) / kWarpsPerBlock);
  return ALIGNSERVE_DISPATCH_ACT(y_type, OutT,
                                 GemvKernel<M, OutT><<<blocks, kWarpsPerBlock * 32, 0, stream>>>(
                                     x, w, bias, n, k, static_cast<OutT*>(y)));
}

}  // namespace

bool GemvSupports(int64_t m, int64_t k, const void* x, const void* w) {
  auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return m >= 1 && m <= kMaxGemvRows && k % 8 == 0 && k > 0 && k <= INT32_MAX && aligned(x) &&
         aligned(w);
}

cudaError_t LaunchGemv(const void* x, const void* w, const float* bias, int m, int n, int k,
                       void* y, DType y_type, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const bf16* xb = static_cast<const bf16*>(x);
  const bf16* wb = static_cast<const bf16*>(w);
  switch (m) {
    case 1:
      return LaunchGemvRows<1>(xb, wb, bias, n, k, y, y_type, stream);
    case 2:
      return LaunchGemvRows<2>(xb, wb, bias, n, k, y, y_type, stream);
    case 3:
      return LaunchGemvRows<3>(xb, wb, bias, n, k, y, y_type, stream);
    case 4:
      return LaunchGemvRows<4>(xb, wb, bias, n, k, y, y_type, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace alignserve::cuda
