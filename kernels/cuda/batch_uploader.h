// BatchUploader: puts one step's BatchLayout on the GPU. The layout's index
// arrays are packed into one page-locked staging buffer and sent with a
// single cudaMemcpyAsync into one persistent device buffer; both grow to the
// largest step seen and are then reused, so steady-state steps allocate
// nothing. The upload is validated first (ValidateLayout), and the extremes
// of its indices are kept on the host (StepBounds) so that each op can
// check e.g. "every slot < num_slots" in O(1) instead of trusting the
// device data.
//
// Invariants: the staging buffer is rewritten only after the previous
// upload's copy has finished (an event recorded after it); the device buffer
// is overwritten in stream order, after every op that read the last step.
// Thread-safety: one driving thread.
#ifndef ALIGNSERVE_KERNELS_CUDA_BATCH_UPLOADER_H_
#define ALIGNSERVE_KERNELS_CUDA_BATCH_UPLOADER_H_

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "kernels/batch_layout.h"
#include "kernels/cuda/cuda_memory.h"

namespace alignserve::cuda {

// Extremes of a step's indices (max < min when the step has none).
struct StepBounds {
  int32_t min_token = 0, max_token = -1;
  int32_t max_position = -1;
  int64_t min_slot = 0, max_slot = -1;
  int32_t min_block = 0, max_block = -1;  // over every block table entry
  int32_t max_query_len = 0;
  int32_t max_context_len = 0;
};

// Checks the layout's structure (array sizes, query_start monotone from 0
// to num_tokens, 0 <= position < context_len of the token's sequence,
// logits indices inside the batch) and returns its bounds. Plain host code.
absl::StatusOr<StepBounds> ValidateLayout(const BatchLayout& layout);

class BatchUploader {
 public:
  static absl::StatusOr<std::unique_ptr<BatchUploader>> Create(cudaStream_t stream);
  ~BatchUploader();
  BatchUploader(const BatchUploader&) = delete;
  BatchUploader& operator=(const BatchUploader&) = delete;

  // Validates and enqueues the upload; the DeviceBatch is valid on the
  // stream until the next Upload.
  absl::StatusOr<DeviceBatch> Upload(const BatchLayout& layout);

  // The last upload's bounds; FailedPrecondition if `batch` is not the last
  // upload's result (a stale batch whose device arrays were overwritten).
  absl::StatusOr<StepBounds> BoundsOf(const DeviceBatch& batch) const;

 private:
  BatchUploader(cudaStream_t stream, cudaEvent_t staging_free)
      : stream_(stream), staging_free_(staging_free) {}

  cudaStream_t stream_;
  cudaEvent_t staging_free_;  // recorded after each upload's copy
  GrowingPinnedBuffer staging_;
  GrowingDeviceBuffer device_;
  bool has_current_ = false;
  DeviceBatch current_;
  StepBounds bounds_;
};

}  // namespace alignserve::cuda

#endif  // ALIGNSERVE_KERNELS_CUDA_BATCH_UPLOADER_H_
