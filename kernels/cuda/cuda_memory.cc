#include "kernels/cuda/cuda_memory.h"

#include <algorithm>
#include <atomic>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_status.h"

namespace alignserve::cuda {
namespace {

// Growth headroom: a buffer that must grow takes 1.5x the request, so a
// slowly rising batch size does not reallocate every step.
size_t WithHeadroom(size_t bytes) { return std::max<size_t>(bytes + bytes / 2, 256); }

}  // namespace

absl::StatusOr<void*> DeviceMalloc(size_t bytes) {
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, std::max<size_t>(bytes, 1));
  if (err == cudaSuccess) return p;
  cudaGetLastError();  // clear the error so later calls do not see it
  if (err == cudaErrorMemoryAllocation) {
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    cudaGetLastError();
    return absl::ResourceExhaustedError(
        absl::StrCat("cudaMalloc of ", bytes, " bytes failed: out of device memory (", free_bytes,
                     " of ", total_bytes, " bytes free)"));
  }
  return CudaStatus(err, absl::StrCat("cudaMalloc(", bytes, " bytes)").c_str());
}

CudaBuffer::~CudaBuffer() { cudaFree(data_); }

absl::StatusOr<std::unique_ptr<CudaBuffer>> AllocateCudaBuffer(size_t bytes) {
  absl::StatusOr<void*> p = DeviceMalloc(bytes);
  if (!p.ok()) return p.status();
  return std::make_unique<CudaBuffer>(*p, bytes);
}

namespace {
std::atomic<uint64_t> device_buffer_generation{0};
}  // namespace

uint64_t GrowingDeviceBuffer::Generation() { return device_buffer_generation.load(); }

GrowingDeviceBuffer::~GrowingDeviceBuffer() { cudaFree(data_); }

absl::StatusOr<void*> GrowingDeviceBuffer::Reserve(size_t bytes, cudaStream_t stream) {
  if (bytes <= capacity_) return data_;
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  CUDA_RETURN_IF_ERROR(cudaFree(data_));
  data_ = nullptr;
  capacity_ = 0;
  device_buffer_generation.fetch_add(1);
  const size_t want = WithHeadroom(bytes);
  absl::StatusOr<void*> p = DeviceMalloc(want);
  if (!p.ok()) return p.status();
  data_ = *p;
  capacity_ = want;
  return data_;
}

GrowingPinnedBuffer::~GrowingPinnedBuffer() { cudaFreeHost(data_); }

absl::StatusOr<void*> GrowingPinnedBuffer::Reserve(size_t bytes, cudaStream_t stream) {
  if (bytes <= capacity_) return data_;
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  CUDA_RETURN_IF_ERROR(cudaFreeHost(data_));
  data_ = nullptr;
  capacity_ = 0;
  const size_t want = WithHeadroom(bytes);
  void* p = nullptr;
  const cudaError_t err = cudaHostAlloc(&p, want, cudaHostAllocDefault);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return absl::ResourceExhaustedError(
        absl::StrCat("cudaHostAlloc of ", want, " pinned bytes failed: ", cudaGetErrorString(err)));
  }
  data_ = p;
  capacity_ = want;
  return data_;
}

}  // namespace alignserve::cuda
