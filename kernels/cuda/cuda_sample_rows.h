// The launcher of the device row sampler (cuda_sample_rows.cu): one thread
// block per DeviceSamplingRow draws that row's token and computes its
// logprobs with the semantics of kernels/device_sampling.h, and writes one
// DeviceSampleResult per row. CudaBackend::SampleRows
// (cuda_backend_sampling.cc) validates and uploads the arguments, and
// copies the results back.
//
// Like every launcher in cuda_kernels.h it checks nothing: the arguments
// must already satisfy the preconditions below.
// Thread-safety: stateless; ordering is the stream's.
#ifndef ALIGNSERVE_KERNELS_CUDA_CUDA_SAMPLE_ROWS_H_
#define ALIGNSERVE_KERNELS_CUDA_CUDA_SAMPLE_ROWS_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/device_sampling.h"

namespace alignserve::cuda {

// The widest vocabulary the sampler takes: each block keeps a bitmap of the
// row's adjusted tokens (vocab / 8 bytes) in shared memory.
inline constexpr int64_t kMaxSampleRowsVocab = int64_t{1} << 19;

struct SampleRowsArgs {
  const float* logits = nullptr;  // f32 [num_logit_rows, vocab], device
  int64_t num_logit_rows = 0;
  int32_t vocab = 0;  // in [1, kMaxSampleRowsVocab]
  // [num_rows], device; each valid (logits_row in range, parameters in
  // their ranges, adjustments inside the array).
  const DeviceSamplingRow* rows = nullptr;
  int32_t num_rows = 0;
  // Device; each row's range sorted by token, tokens in [0, vocab) and
  // distinct within the row.
  const LogitAdjustment* adjustments = nullptr;
  DeviceSampleResult* results = nullptr;  // [num_rows], device; every field written
};

// Shared memory one block needs for `vocab` (for tests and diagnostics).
size_t SampleRowsSharedBytes(int32_t vocab);

cudaError_t LaunchSampleRows(const SampleRowsArgs& args, cudaStream_t stream);

}  // namespace alignserve::cuda

#endif  // ALIGNSERVE_KERNELS_CUDA_CUDA_SAMPLE_ROWS_H_
