// Matrix products of the CUDA backend through cuBLAS: y[m, n] = x[m, k] *
// w[n, k]^T (+ bias[n]), always with f32 accumulation.
//
// Paths, chosen per call from the dtypes:
//  - bf16 x and bf16 w (the steady state): one cublasGemmEx on the tensor
//    cores, written straight into y (bf16, or f32 for logits). A bias, or
//    bf16 output with a bias, goes through an f32 scratch and one store
//    kernel, so y is rounded once.
//  - anything else (f32 or f16 weights as a loader uploads them raw, f32
//    activations): x is widened to f32 and w to f32 in row chunks of at
//    most kWeightChunkBytes, then an exact f32 GEMM (no TF32). Correct but
//    slow; UploadWeight converts weights to bf16 so the model avoids it.
// Quantized weights are refused: they must be dequantized at upload.
// Thread-safety: one driving thread (the cuBLAS handle and scratch are
// reused without locking).
#ifndef ALIGNSERVE_KERNELS_CUDA_CUDA_MATMUL_H_
#define ALIGNSERVE_KERNELS_CUDA_CUDA_MATMUL_H_

#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_memory.h"
#include "kernels/tensor.h"

namespace alignserve::cuda {

class CudaGemm {
 public:
  static constexpr size_t kWeightChunkBytes = size_t{64} << 20;

  // A cuBLAS handle bound to `stream`.
  static absl::StatusOr<std::unique_ptr<CudaGemm>> Create(cudaStream_t stream);
  ~CudaGemm();
  CudaGemm(const CudaGemm&) = delete;
  CudaGemm& operator=(const CudaGemm&) = delete;

  // x: [m, k] f32 or bf16; w: [n, k] bf16, f16 or f32; bias: f32 [n] or
  // null; y: [m, n] f32 or bf16.
  absl::Status MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y);

 private:
  CudaGemm(cublasHandle_t handle, cudaStream_t stream) : handle_(handle), stream_(stream) {}

  absl::Status Bf16MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y);
  absl::Status F32MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y);
  // cublasGemmEx for row-major y = x * w^T: in cuBLAS's column-major terms
  // y^T [n, m] = w [k, n]^T * x^T [k, m].
  absl::Status Gemm(int64_t m, int64_t n, int64_t k, const void* x, const void* w, int ab_type,
                    void* y, int64_t ldy, int y_type);

  cublasHandle_t handle_;
  cudaStream_t stream_;
  GrowingDeviceBuffer scratch_;
  // cuBLAS's workspace, set once: without it cuBLAS may allocate inside a
  // graph capture, which capture forbids.
  std::unique_ptr<CudaBuffer> workspace_;
  // bf16 products of at most kMaxGemvRows rows go to LaunchGemv. Off by
  // default: its reduction order differs from cuBLAS's, so a sequence
  // decoded alone (m = 1, GEMV) and in a batch of 5+ (cuBLAS) could round
  // differently and a greedy near-tie flip (tests/gpu/cuda_engine_test),
  // for ~4% of single-stream speed (benchmarks/RESULTS.md, run F). It
  // becomes the default once one kernel with one reduction order serves
  // every decode batch size.
  bool gemv_ = false;
};

}  // namespace alignserve::cuda

#endif  // ALIGNSERVE_KERNELS_CUDA_CUDA_MATMUL_H_
