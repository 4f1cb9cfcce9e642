#include "kernels/cuda/cuda_graph.h"

#include "kernels/cuda/cuda_status.h"

namespace alignserve::cuda {

CudaGraph::~CudaGraph() { cudaGraphExecDestroy(exec_); }

absl::Status CudaGraph::Replay() {
  CUDA_RETURN_IF_ERROR(cudaGraphLaunch(exec_, stream_));
  return absl::OkStatus();
}

absl::Status BeginStreamCapture(cudaStream_t stream) {
  CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<DeviceGraph>> EndStreamCapture(cudaStream_t stream) {
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
  if (ended != cudaSuccess) {
    cudaGetLastError();  // an invalidated capture is not sticky: clear it
    if (graph != nullptr) cudaGraphDestroy(graph);
    CUDA_RETURN_IF_ERROR(ended);
  }
  cudaGraphExec_t exec = nullptr;
  const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  CUDA_RETURN_IF_ERROR(made);
  return std::unique_ptr<DeviceGraph>(new CudaGraph(exec, stream));
}

}  // namespace alignserve::cuda
