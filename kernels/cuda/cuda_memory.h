// Device and pinned host memory of the CUDA backend: plain cudaMalloc
// allocations (never managed memory) as DeviceBuffers, and buffers that grow
// on demand and are then reused, so that steady-state steps allocate nothing.
// Thread-safety: none; owned by the backend's driving thread.
#ifndef ALIGNSERVE_KERNELS_CUDA_CUDA_MEMORY_H_
#define ALIGNSERVE_KERNELS_CUDA_CUDA_MEMORY_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace alignserve::cuda {

// cudaMalloc of `bytes` (at least 1); an out-of-memory error says how many
// bytes were asked for and how many were free.
absl::StatusOr<void*> DeviceMalloc(size_t bytes);

// A cudaMalloc allocation; freed (cudaFree) on destruction.
class CudaBuffer final : public DeviceBuffer {
 public:
  CudaBuffer(void* data, size_t size) : data_(data), size_(size) {}
  ~CudaBuffer() override;
  CudaBuffer(const CudaBuffer&) = delete;
  CudaBuffer& operator=(const CudaBuffer&) = delete;

  void* data() override { return data_; }
  size_t size() const override { return size_; }

 private:
  void* data_;
  size_t size_;
};

absl::StatusOr<std::unique_ptr<CudaBuffer>> AllocateCudaBuffer(size_t bytes);

// Device memory reused across calls; grows (never shrinks) to the largest
// request. Growing first waits for `stream`, since work still queued there
// may read the old allocation.
class GrowingDeviceBuffer {
 public:
  GrowingDeviceBuffer() = default;
  ~GrowingDeviceBuffer();
  GrowingDeviceBuffer(const GrowingDeviceBuffer&) = delete;
  GrowingDeviceBuffer& operator=(const GrowingDeviceBuffer&) = delete;

  // A buffer of at least `bytes`, valid until the next Reserve.
  absl::StatusOr<void*> Reserve(size_t bytes, cudaStream_t stream);
  size_t capacity() const { return capacity_; }

  // Counts the moves of every GrowingDeviceBuffer of the process: a CUDA
  // graph captured before the count last changed may point at freed memory.
  static uint64_t Generation();

 private:
  void* data_ = nullptr;
  size_t capacity_ = 0;
};

// Page-locked host memory (cudaHostAlloc) for asynchronous uploads; same
// growth rule as GrowingDeviceBuffer.
class GrowingPinnedBuffer {
 public:
  GrowingPinnedBuffer() = default;
  ~GrowingPinnedBuffer();
  GrowingPinnedBuffer(const GrowingPinnedBuffer&) = delete;
  GrowingPinnedBuffer& operator=(const GrowingPinnedBuffer&) = delete;

  absl::StatusOr<void*> Reserve(size_t bytes, cudaStream_t stream);

 private:
  void* data_ = nullptr;
  size_t capacity_ = 0;
};

}  // namespace alignserve::cuda

#endif  // ALIGNSERVE_KERNELS_CUDA_CUDA_MEMORY_H_
