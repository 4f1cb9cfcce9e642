// CudaGraph: a CUDA graph captured from the backend's stream and replayed
// with one cudaGraphLaunch, so a decode step's ~400 kernel launches cost the
// host one call and leave no gaps between kernels on the device.
//
// Capture records the kernels with the pointers and launch shapes they were
// given; a replay reruns them on whatever those buffers hold now. The
// caller keeps the buffers in place (same scratch, same upload buffer, same
// workspaces) for the graph's life; Backend::memory_epoch tells it when
// they moved.
// Thread-safety: one driving thread, like the backend.
#ifndef ALIGNSERVE_KERNELS_CUDA_CUDA_GRAPH_H_
#define ALIGNSERVE_KERNELS_CUDA_CUDA_GRAPH_H_

#include <cuda_runtime_api.h>

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace alignserve::cuda {

class CudaGraph final : public DeviceGraph {
 public:
  CudaGraph(cudaGraphExec_t exec, cudaStream_t stream) : exec_(exec), stream_(stream) {}
  ~CudaGraph() override;
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Queues the whole graph on the stream it was captured from.
  absl::Status Replay() override;

 private:
  cudaGraphExec_t exec_;
  cudaStream_t stream_;
};

// Starts recording `stream` (this thread's work only: other threads' CUDA
// calls are not affected).
absl::Status BeginStreamCapture(cudaStream_t stream);
// Stops recording and instantiates the graph. If an op failed during the
// capture, the stream is still taken out of capture mode and the error
// returned, so the caller can fall back to running the ops directly.
absl::StatusOr<std::unique_ptr<DeviceGraph>> EndStreamCapture(cudaStream_t stream);

}  // namespace alignserve::cuda

#endif  // ALIGNSERVE_KERNELS_CUDA_CUDA_GRAPH_H_
