#include "kernels/cuda/cuda_matmul.h"

#include <cublas_v2.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/status_macros.h"

namespace alignserve::cuda {
namespace {

size_t Align256(size_t bytes) { return (bytes + 255) / 256 * 256; }

bool IsActivation(DType t) { return t == DType::kF32 || t == DType::kBF16; }

absl::Status CheckShapes(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) {
  if (x.cols() != w.cols() || y.cols() != w.rows() || y.rows() != x.rows()) {
    return absl::InvalidArgumentError(absl::StrCat("cuda backend: matmul shapes ", x.ShapeString(),
                                                   " x ", w.ShapeString(), "^T -> ",
                                                   y.ShapeString()));
  }
  if (!IsActivation(x.dtype) || !IsActivation(y.dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat("cuda backend: matmul activations must be F32 or BF16, got ", x.ShapeString(),
                     " -> ", y.ShapeString()));
  }
  if (w.dtype != DType::kBF16 && w.dtype != DType::kF16 && w.dtype != DType::kF32) {
    return absl::UnimplementedError(
        absl::StrCat("cuda backend: no matmul for ", std::string(DTypeName(w.dtype)),
                     " weights; quantized weights must be dequantized at upload (UploadWeight)"));
  }
  if (bias != nullptr && (bias->dtype != DType::kF32 || bias->elements() != w.rows())) {
    return absl::InvalidArgumentError(absl::StrCat("cuda backend: matmul bias must be F32 [",
                                                   w.rows(), "], got ", bias->ShapeString()));
  }
  if (x.rows() > INT_MAX || w.rows() > INT_MAX || w.cols() > INT_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat("cuda backend: matmul dimensions exceed cuBLAS's int range: ", x.ShapeString(),
                     " x ", w.ShapeString()));
  }
  return absl::OkStatus();
}

cudaDataType_t CudaType(DType t) {
  switch (t) {
    case DType::kBF16:
      return CUDA_R_16BF;
    case DType::kF16:
      return CUDA_R_16F;
    default:
      return CUDA_R_32F;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<CudaGemm>> CudaGemm::Create(cudaStream_t stream) {
  cublasHandle_t handle = nullptr;
  CUBLAS_RETURN_IF_ERROR(cublasCreate(&handle));
  auto gemm = std::unique_ptr<CudaGemm>(new CudaGemm(handle, stream));
  // ALIGNSERVE_CUDA_GEMV=1: the GEMV kernel for products of <= 4 rows.
  if (const char* gemv = std::getenv("ALIGNSERVE_CUDA_GEMV"))
    gemm->gemv_ = std::string(gemv) == "1";
  CUBLAS_RETURN_IF_ERROR(cublasSetStream(handle, stream));
  // 32 MiB, NVIDIA's recommendation for Hopper.
  constexpr size_t kWorkspaceBytes = size_t{32} << 20;
  ASSIGN_OR_RETURN(gemm->workspace_, AllocateCudaBuffer(kWorkspaceBytes));
  CUBLAS_RETURN_IF_ERROR(cublasSetWorkspace(handle, gemm->workspace_->data(), kWorkspaceBytes));
  // Pure f32 where f32 is asked for: no TF32 downgrade of the f32 path.
  CUBLAS_RETURN_IF_ERROR(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH));
  return gemm;
}

CudaGemm::~CudaGemm() { cublasDestroy(handle_); }

absl::Status CudaGemm::MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  RETURN_IF_ERROR(CheckShapes(x, w, bias, y));
  if (x.rows() == 0 || w.rows() == 0) return absl::OkStatus();
  if (x.dtype == DType::kBF16 && w.dtype == DType::kBF16) return Bf16MatMul(x, w, bias, y);
  return F32MatMul(x, w, bias, y);
}

absl::Status CudaGemm::Gemm(int64_t m, int64_t n, int64_t k, const void* x, const void* w,
                            int ab_type, void* y, int64_t ldy, int y_type) {
  const float alpha = 1.0f, beta = 0.0f;
  CUBLAS_RETURN_IF_ERROR(
      cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                   static_cast<int>(k), &alpha, w, static_cast<cudaDataType_t>(ab_type),
                   static_cast<int>(k), x, static_cast<cudaDataType_t>(ab_type),
                   static_cast<int>(k), &beta, y, static_cast<cudaDataType_t>(y_type),
                   static_cast<int>(ldy), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return absl::OkStatus();
}

absl::Status CudaGemm::Bf16MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  const int64_t m = x.rows(), n = w.rows(), k = w.cols();
  const float* bias_data = bias != nullptr ? bias->as<float>() : nullptr;
  if (gemv_ && GemvSupports(m, k, x.data, w.data)) {
    CUDA_RETURN_IF_ERROR(LaunchGemv(x.data, w.data, bias_data, static_cast<int>(m),
                                    static_cast<int>(n), static_cast<int>(k), y.data, y.dtype,
                                    stream_));
    return absl::OkStatus();
  }
  if (bias_data == nullptr || y.dtype == DType::kF32) {
    RETURN_IF_ERROR(Gemm(m, n, k, x.data, w.data, CUDA_R_16BF, y.data, n, CudaType(y.dtype)));
    if (bias_data != nullptr) {
      CUDA_RETURN_IF_ERROR(
          LaunchStoreRows(y.as<float>(), bias_data, m, n, y.data, DType::kF32, stream_));
    }
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(void* acc, scratch_.Reserve(m * n * sizeof(float), stream_));
  RETURN_IF_ERROR(Gemm(m, n, k, x.data, w.data, CUDA_R_16BF, acc, n, CUDA_R_32F));
  CUDA_RETURN_IF_ERROR(
      LaunchStoreRows(static_cast<const float*>(acc), bias_data, m, n, y.data, y.dtype, stream_));
  return absl::OkStatus();
}

absl::Status CudaGemm::F32MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  const int64_t m = x.rows(), n = w.rows(), k = w.cols();
  const int64_t chunk_rows =
      w.dtype == DType::kF32 ? n
                             : std::clamp<int64_t>(kWeightChunkBytes / (k * sizeof(float)), 1, n);
  // Scratch: [x as f32 | y as f32 | one chunk of w as f32], each part only
  // when the operand is not f32 already.
  const size_t x_bytes = x.dtype == DType::kF32 ? 0 : Align256(m * k * sizeof(float));
  const size_t y_bytes = y.dtype == DType::kF32 ? 0 : Align256(m * n * sizeof(float));
  const size_t w_bytes = w.dtype == DType::kF32 ? 0 : Align256(chunk_rows * k * sizeof(float));
  ASSIGN_OR_RETURN(void* scratch, scratch_.Reserve(x_bytes + y_bytes + w_bytes, stream_));
  char* base = static_cast<char*>(scratch);
  const float* x32 = x.as<float>();
  if (x.dtype != DType::kF32) {
    CUDA_RETURN_IF_ERROR(
        LaunchToF32(x.data, x.dtype, m * k, reinterpret_cast<float*>(base), stream_));
    x32 = reinterpret_cast<const float*>(base);
  }
  float* y32 = y.dtype == DType::kF32 ? y.as<float>() : reinterpret_cast<float*>(base + x_bytes);
  float* w32 = reinterpret_cast<float*>(base + x_bytes + y_bytes);
  const size_t w_row_bytes = w.row_bytes();
  for (int64_t n0 = 0; n0 < n; n0 += chunk_rows) {
    const int64_t rows = std::min(chunk_rows, n - n0);
    const void* w_chunk = static_cast<const char*>(w.data) + n0 * w_row_bytes;
    if (w.dtype != DType::kF32) {
      CUDA_RETURN_IF_ERROR(LaunchToF32(w_chunk, w.dtype, rows * k, w32, stream_));
      w_chunk = w32;
    }
    // Columns [n0, n0 + rows) of y: the column-major y^T starting at row n0.
    RETURN_IF_ERROR(Gemm(m, rows, k, x32, w_chunk, CUDA_R_32F, y32 + n0, n, CUDA_R_32F));
  }
  const float* bias_data = bias != nullptr ? bias->as<float>() : nullptr;
  if (y.dtype != DType::kF32 || bias_data != nullptr) {
    CUDA_RETURN_IF_ERROR(LaunchStoreRows(y32, bias_data, m, n, y.data, y.dtype, stream_));
  }
  return absl::OkStatus();
}

}  // namespace alignserve::cuda
