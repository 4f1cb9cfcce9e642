// CUDA and cuBLAS results as absl::Status. Every runtime and cuBLAS call of
// the CUDA backend goes through these macros, so a failure names the call
// that failed (its source text), the error's symbolic name and its message.
// Out-of-memory is ResourceExhausted; a missing device or driver is
// Unavailable; everything else is Internal.
// Thread-safety: pure functions.
#ifndef ALIGNSERVE_KERNELS_CUDA_CUDA_STATUS_H_
#define ALIGNSERVE_KERNELS_CUDA_CUDA_STATUS_H_

#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include "absl/status/status.h"

namespace alignserve::cuda {

// OkStatus for cudaSuccess; otherwise an error whose message starts with
// `call`, after clearing the runtime's last (non-sticky) error.
absl::Status CudaStatus(cudaError_t err, const char* call);
absl::Status CublasStatus(cublasStatus_t err, const char* call);

}  // namespace alignserve::cuda

// Evaluates a cudaError_t expression once; returns its Status on failure.
#define CUDA_RETURN_IF_ERROR(expr)                                        \
  do {                                                                    \
    const cudaError_t alignserve_cuda_err_ = (expr);                      \
    if (alignserve_cuda_err_ != cudaSuccess) {                            \
      return ::alignserve::cuda::CudaStatus(alignserve_cuda_err_, #expr); \
    }                                                                     \
  } while (0)

// Evaluates a cublasStatus_t expression once; returns its Status on failure.
#define CUBLAS_RETURN_IF_ERROR(expr)                                          \
  do {                                                                        \
    const cublasStatus_t alignserve_cublas_err_ = (expr);                     \
    if (alignserve_cublas_err_ != CUBLAS_STATUS_SUCCESS) {                    \
      return ::alignserve::cuda::CublasStatus(alignserve_cublas_err_, #expr); \
    }                                                                         \
  } while (0)

#endif  // ALIGNSERVE_KERNELS_CUDA_CUDA_STATUS_H_
