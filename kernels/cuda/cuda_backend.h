// CudaBackend: the Backend on one NVIDIA GPU. Activations are bf16 with f32
// accumulation in every kernel; the KV cache is bf16
// [num_blocks, block_size, num_kv_heads, head_dim] per layer; norm weights,
// biases and RoPE tables are f32. Matrix products go through cuBLAS
// (cuda_matmul.h); MatMul writes f32 when y is f32 (logits).
//
// All work is queued on one CUDA stream owned by the backend; ops return as
// soon as it is queued, and asynchronous faults surface from a later op or
// from Synchronize(). CopyToHost and CopyToDevice are synchronous (their
// host memory is the caller's). Each op checks shapes and dtypes, and checks
// the step's indices (token ids, positions, slots, block ids) against bounds
// computed on the host in UploadBatch, so bad input is a Status, not a
// device fault.
//
// This header includes no CUDA header, so any code can include it; the
// backend exists only in builds with ALIGNSERVE_HAVE_CUDA (library
// alignserve_cuda).
// Thread-safety: one driving thread, like every Backend; it must be the
// thread that created it or one that selected the same device.
#ifndef ALIGNSERVE_KERNELS_CUDA_CUDA_BACKEND_H_
#define ALIGNSERVE_KERNELS_CUDA_CUDA_BACKEND_H_

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

// CUDA's opaque handle types (cudaStream_t is CUstream_st*), declared here so
// that this header needs no CUDA include.
struct CUstream_st;

namespace alignserve {

namespace cuda {
class BatchUploader;
class CudaGemm;
class GrowingDeviceBuffer;
class GrowingPinnedBuffer;
}  // namespace cuda

// True if a CUDA driver and at least one device are present.
bool CudaAvailable();

class CudaBackend final : public Backend {
 public:
  ~CudaBackend() override;

  std::string_view name() const override { return "cuda"; }
  DType activation_dtype() const override { return DType::kBF16; }
  int device() const { return device_; }

  absl::StatusOr<std::unique_ptr<DeviceBuffer>> Allocate(size_t bytes) override;
  absl::Status CopyToDevice(void* dst, const void* src, size_t bytes) override;
  absl::Status CopyToHost(void* dst, const void* src, size_t bytes) override;
  absl::Status Synchronize() override;
  // cudaMemGetInfo of the backend's device.
  absl::StatusOr<DeviceMemoryInfo> MemoryInfo() const override;
  // bf16 (fast), f16 and f32 (widened to f32 per call: slow). Quantized
  // types are false: UploadWeight dequantizes them to bf16.
  bool SupportsWeightType(DType dtype) const override;
  absl::StatusOr<std::unique_ptr<KvCache>> AllocateKvCache(const KvCacheSpec& spec) override;
  absl::StatusOr<DeviceBatch> UploadBatch(const BatchLayout& layout) override;

  absl::Status Embedding(const DeviceBatch& batch, const Tensor& table, Tensor& out) override;
  absl::Status RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) override;
  absl::Status AddRmsNorm(Tensor& residual, const Tensor& x, const Tensor& weight, float eps,
                          Tensor& out) override;
  absl::Status MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) override;
  absl::Status Rope(const DeviceBatch& batch, const RopeTable& rope, int head_dim, Tensor& q,
                    Tensor& k) override;
  absl::Status SiluMul(const Tensor& gate, const Tensor& up, Tensor& out) override;
  absl::Status Add(Tensor& x, const Tensor& y) override;
  absl::Status WriteKv(const DeviceBatch& batch, const Tensor& k, const Tensor& v, KvCache& cache,
                       int layer) override;
  // One kernel: q rotated in place, rotated k and v written to the cache.
  absl::Status RopeAndWriteKv(const DeviceBatch& batch, const RopeTable& rope, int head_dim,
                              Tensor& q, Tensor& k, const Tensor& v, KvCache& cache,
                              int layer) override;
  absl::Status PagedAttention(const DeviceBatch& batch, const Tensor& q, KvCache& cache, int layer,
                              int num_heads, float scale, Tensor& out) override;
  absl::Status GatherRows(const DeviceBatch& batch, const Tensor& x, Tensor& out) override;
  absl::Status CopyBlocks(std::span<const BlockCopy> copies, KvCache& cache) override;
  absl::Status ArgMax(const Tensor& logits, Tensor& ids) override;
  // cuda_sample_rows.cu: one block per row; only results cross to the host.
  // Vocabularies up to 2^19 (a per-row bitmap in shared memory).
  bool SupportsDeviceSampling(int64_t vocab_size) const override;
  absl::Status SampleRows(const Tensor& logits, std::span<const DeviceSamplingRow> rows,
                          std::span<const LogitAdjustment> adjustments,
                          std::span<DeviceSampleResult> results) override;

  // CUDA graphs of the backend's stream (cuda_graph.h). memory_epoch is
  // GrowingDeviceBuffer::Generation: the upload buffer, the attention
  // workspace and the GEMM scratch all grow through it.
  bool SupportsGraphs() const override { return true; }
  absl::Status BeginCapture() override;
  absl::StatusOr<std::unique_ptr<DeviceGraph>> EndCapture() override;
  uint64_t memory_epoch() const override;

  // Uploads a host weight tensor (any type ConvertsToBf16 accepts: f32, f16,
  // bf16 or a GGUF quantized type) as a bf16 tensor of the same shape:
  // bf16 (safetensors) is copied straight from the file's mapping, other
  // types are converted on the host in row chunks.
  absl::StatusOr<DeviceTensor> UploadWeight(const Tensor& host) override;

  // A backend on CUDA device `device`; Unavailable when no driver is
  // installed or the device does not exist.
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(int device = 0);

 private:
  explicit CudaBackend(int device);
  absl::Status Init();

  int device_;
  CUstream_st* stream_ = nullptr;
  std::unique_ptr<cuda::CudaGemm> gemm_;
  std::unique_ptr<cuda::BatchUploader> uploader_;
  // Attention: the tiled / split-K kernels (false: phase 1 everywhere, set
  // by ALIGNSERVE_CUDA_ATTENTION=phase1 for side-by-side measurements).
  bool attention_kernels_ = true;
  int multiprocessors_ = 1;
  std::unique_ptr<cuda::GrowingDeviceBuffer> attention_workspace_;  // split-K partials
  std::unique_ptr<cuda::GrowingDeviceBuffer> sampling_workspace_;   // SampleRows' rows and scratch
  std::unique_ptr<cuda::GrowingPinnedBuffer> sampling_staging_;     // SampleRows' host side
};

// CudaBackend::Create as a plain Backend.
absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(int device = 0);

}  // namespace alignserve

#endif  // ALIGNSERVE_KERNELS_CUDA_CUDA_BACKEND_H_
