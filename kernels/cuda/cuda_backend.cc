// CudaBackend, part 1: device selection, memory, the KV cache, batch and
// weight upload. The compute ops are in cuda_backend_ops.cc.
#include "kernels/cuda/cuda_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/batch_uploader.h"
#include "kernels/cuda/cuda_graph.h"
#include "kernels/cuda/cuda_matmul.h"
#include "kernels/cuda/cuda_memory.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/weight_conversion.h"
#include "kernels/status_macros.h"

namespace alignserve {
namespace {

// Host rows converted per chunk in UploadWeight (bounds host memory).
constexpr size_t kUploadChunkBytes = size_t{32} << 20;

// One allocation for every layer: [layer][K or V][num_blocks, block_size,
// kv_heads, head_dim] in bf16.
class CudaKvCache final : public KvCache {
 public:
  CudaKvCache(const KvCacheSpec& spec, std::unique_ptr<cuda::CudaBuffer> buffer)
      : KvCache(spec), buffer_(std::move(buffer)) {}
  void* k(int layer) override { return At(2 * layer); }
  void* v(int layer) override { return At(2 * layer + 1); }

 private:
  void* At(int index) {
    const size_t per = spec_.bytes_per_block_per_layer() * spec_.num_blocks;
    return static_cast<char*>(buffer_->data()) + index * per;
  }
  std::unique_ptr<cuda::CudaBuffer> buffer_;
};

absl::Status CheckKvSpec(const KvCacheSpec& spec) {
  if (spec.dtype != DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat("cuda backend: the KV cache must be BF16, got ",
                                                   std::string(DTypeName(spec.dtype))));
  }
  if (spec.num_layers <= 0 || spec.num_blocks <= 0 || spec.block_size <= 0 ||
      spec.num_kv_heads <= 0 || spec.head_dim <= 0 || spec.head_dim > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("cuda backend: bad KV cache geometry: ", spec.num_layers, " layers, ",
                     spec.num_blocks, " blocks of ", spec.block_size, ", ", spec.num_kv_heads,
                     " kv heads of dim ", spec.head_dim, " (at most 256)"));
  }
  return absl::OkStatus();
}

}  // namespace

bool CudaAvailable() {
  static const bool available = [] {
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    cudaGetLastError();
    return err == cudaSuccess && count > 0;
  }();
  return available;
}

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(int device) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return absl::UnavailableError(
        absl::StrCat("no CUDA device: cudaGetDeviceCount failed: ", cudaGetErrorName(err), " (",
                     cudaGetErrorString(err), ")"));
  }
  if (device < 0 || device >= count) {
    return absl::UnavailableError(
        absl::StrCat("no CUDA device ", device, ": this machine has ", count));
  }
  auto backend = std::unique_ptr<CudaBackend>(new CudaBackend(device));
  RETURN_IF_ERROR(backend->Init());
  return backend;
}

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(int device) {
  ASSIGN_OR_RETURN(std::unique_ptr<CudaBackend> backend, CudaBackend::Create(device));
  return std::unique_ptr<Backend>(std::move(backend));
}

CudaBackend::CudaBackend(int device) : device_(device) {}

absl::Status CudaBackend::Init() {
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
  CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  ASSIGN_OR_RETURN(gemm_, cuda::CudaGemm::Create(stream_));
  ASSIGN_OR_RETURN(uploader_, cuda::BatchUploader::Create(stream_));
  attention_workspace_ = std::make_unique<cuda::GrowingDeviceBuffer>();
  sampling_workspace_ = std::make_unique<cuda::GrowingDeviceBuffer>();
  sampling_staging_ = std::make_unique<cuda::GrowingPinnedBuffer>();
  CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&multiprocessors_, cudaDevAttrMultiProcessorCount, device_));
  if (const char* mode = std::getenv("ALIGNSERVE_CUDA_ATTENTION")) {
    attention_kernels_ = std::string_view(mode) != "phase1";
  }
  return absl::OkStatus();
}

CudaBackend::~CudaBackend() {
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  uploader_.reset();
  attention_workspace_.reset();
  sampling_workspace_.reset();
  sampling_staging_.reset();
  gemm_.reset();
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

absl::StatusOr<std::unique_ptr<DeviceBuffer>> CudaBackend::Allocate(size_t bytes) {
  ASSIGN_OR_RETURN(std::unique_ptr<cuda::CudaBuffer> buffer, cuda::AllocateCudaBuffer(bytes));
  return std::unique_ptr<DeviceBuffer>(std::move(buffer));
}

// Synchronous: the caller may free or reuse `src` as soon as this returns.
absl::Status CudaBackend::CopyToDevice(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return absl::OkStatus();
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

// Synchronous, after all queued work: the caller reads `dst` next.
absl::Status CudaBackend::CopyToHost(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return absl::OkStatus();
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

absl::StatusOr<DeviceMemoryInfo> CudaBackend::MemoryInfo() const {
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
  DeviceMemoryInfo info;
  CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&info.free_bytes, &info.total_bytes));
  return info;
}

absl::Status CudaBackend::Synchronize() {
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

absl::Status CudaBackend::BeginCapture() { return cuda::BeginStreamCapture(stream_); }

absl::StatusOr<std::unique_ptr<DeviceGraph>> CudaBackend::EndCapture() {
  return cuda::EndStreamCapture(stream_);
}

uint64_t CudaBackend::memory_epoch() const { return cuda::GrowingDeviceBuffer::Generation(); }

bool CudaBackend::SupportsWeightType(DType dtype) const {
  return dtype == DType::kBF16 || dtype == DType::kF16 || dtype == DType::kF32;
}

absl::StatusOr<std::unique_ptr<KvCache>> CudaBackend::AllocateKvCache(const KvCacheSpec& spec) {
  RETURN_IF_ERROR(CheckKvSpec(spec));
  ASSIGN_OR_RETURN(std::unique_ptr<cuda::CudaBuffer> buffer,
                   cuda::AllocateCudaBuffer(spec.total_bytes()));
  // Zeroed so that never-written slots hold finite values.
  CUDA_RETURN_IF_ERROR(cudaMemsetAsync(buffer->data(), 0, spec.total_bytes(), stream_));
  return std::unique_ptr<KvCache>(new CudaKvCache(spec, std::move(buffer)));
}

absl::StatusOr<DeviceBatch> CudaBackend::UploadBatch(const BatchLayout& layout) {
  return uploader_->Upload(layout);
}

absl::StatusOr<DeviceTensor> CudaBackend::UploadWeight(const Tensor& host) {
  if (!cuda::ConvertsToBf16(host.dtype)) {
    return absl::UnimplementedError(absl::StrCat("cuda backend: cannot upload ",
                                                 std::string(DTypeName(host.dtype)), " weights ",
                                                 host.ShapeString()));
  }
  const int64_t rows = host.rows(), cols = host.cols();
  DeviceTensor out;
  ASSIGN_OR_RETURN(out.buffer, Allocate(rows * cols * sizeof(uint16_t)));
  out.tensor = host;
  out.tensor.dtype = DType::kBF16;
  out.tensor.data = out.buffer->data();
  if (host.dtype == DType::kBF16) {
    // Already the device's type: straight from the (memory-mapped) file.
    RETURN_IF_ERROR(CopyToDevice(out.tensor.data, host.data, rows * cols * sizeof(uint16_t)));
    return out;
  }
  const int64_t chunk_rows =
      std::clamp<int64_t>(kUploadChunkBytes / std::max<int64_t>(cols * sizeof(uint16_t), 1), 1,
                          std::max<int64_t>(rows, 1));
  std::vector<uint16_t> chunk(static_cast<size_t>(std::min(chunk_rows, rows) * cols));
  for (int64_t r = 0; r < rows; r += chunk_rows) {
    const int64_t count = std::min(chunk_rows, rows - r);
    std::span<uint16_t> dst(chunk.data(), static_cast<size_t>(count * cols));
    RETURN_IF_ERROR(cuda::ConvertRowsToBf16(host, r, count, dst));
    RETURN_IF_ERROR(CopyToDevice(static_cast<uint16_t*>(out.tensor.data) + r * cols, dst.data(),
                                 dst.size_bytes()));
  }
  return out;
}

}  // namespace alignserve
