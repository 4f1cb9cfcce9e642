// Backend: the compute interface every model runs on. CpuBackend (always
// built) is the reference; CudaBackend implements the same ops on a GPU.
//
// Plan on the host, run on the device: once per step the runner uploads the
// BatchLayout (UploadBatch) and every op of the forward pass reads the
// resulting DeviceBatch. Ops are called once per layer per step, never per
// token; they may run asynchronously, and errors surface as Status from the
// op or from Synchronize().
//
// Activations are 2-D [rows, cols] tensors of activation_dtype() (f32 on the
// CPU). Weights are [out_features, in_features] in any dtype the backend
// supports (quantized GGUF types on the CPU).
// Thread-safety: one thread drives a backend (the engine thread).
#ifndef ALIGNSERVE_KERNELS_BACKEND_H_
#define ALIGNSERVE_KERNELS_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/batch_layout.h"
#include "kernels/device_sampling.h"
#include "kernels/tensor.h"

namespace alignserve {

// Memory owned by a backend; freed when destroyed.
class DeviceBuffer {
 public:
  virtual ~DeviceBuffer() = default;
  virtual void* data() = 0;
  virtual size_t size() const = 0;
};

// Geometry of the paged KV cache. Per layer, K and V are each
// [num_blocks, block_size, num_kv_heads, head_dim] in `dtype`; a token in
// slot s = block * block_size + offset has its K at row s.
struct KvCacheSpec {
  int num_layers = 0;
  int num_blocks = 0;
  int block_size = 16;
  int num_kv_heads = 0;
  int head_dim = 0;
  DType dtype = DType::kF32;

  size_t bytes_per_block_per_layer() const {
    return static_cast<size_t>(block_size) * num_kv_heads * head_dim * Info(dtype).block_bytes;
  }
  size_t total_bytes() const { return 2 * bytes_per_block_per_layer() * num_blocks * num_layers; }
};

// The KV memory of one model; block ids index into every layer alike.
class KvCache {
 public:
  virtual ~KvCache() = default;
  const KvCacheSpec& spec() const { return spec_; }
  virtual void* k(int layer) = 0;
  virtual void* v(int layer) = 0;

 protected:
  explicit KvCache(const KvCacheSpec& spec) : spec_(spec) {}
  KvCacheSpec spec_;
};

// Rotary position embedding, precomputed for positions [0, max_positions):
// cos/sin tables of [max_positions, rotary_dim / 2] f32 on the device.
// interleaved: rotate adjacent pairs (x[2i], x[2i+1]) as llama.cpp's GGUF
// llama weights expect; otherwise rotate halves (x[i], x[i + d/2]) as HF does.
struct RopeTable {
  const float* cos = nullptr;
  const float* sin = nullptr;
  int64_t max_positions = 0;
  int rotary_dim = 0;
  bool interleaved = false;
};

// A weight placed on a backend: the tensor, and the buffer that owns its
// memory (null when the tensor views host memory in place, e.g. a mapping).
struct DeviceTensor {
  Tensor tensor;
  std::unique_ptr<DeviceBuffer> buffer;
};

// A device's memory, as its driver reports it (all processes counted).
struct DeviceMemoryInfo {
  size_t free_bytes = 0;
  size_t total_bytes = 0;
};

// Device work recorded once (Backend::BeginCapture .. EndCapture) and
// replayed as one launch: a CUDA graph. It keeps the pointers and launch
// shapes of the capture, so a replay computes on whatever those buffers
// hold now.
class DeviceGraph {
 public:
  virtual ~DeviceGraph() = default;
  virtual absl::Status Replay() = 0;
};

struct BlockCopy {
  int32_t src;
  int32_t dst;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;
  virtual DType activation_dtype() const = 0;
  // True if host pointers are device pointers (weights then stay in place,
  // e.g. in a memory-mapped file, with no copy).
  virtual bool shares_host_memory() const { return false; }

  // Memory.
  virtual absl::StatusOr<std::unique_ptr<DeviceBuffer>> Allocate(size_t bytes) = 0;
  virtual absl::Status CopyToDevice(void* dst, const void* src, size_t bytes) = 0;
  virtual absl::Status CopyToHost(void* dst, const void* src, size_t bytes) = 0;
  virtual absl::Status Synchronize() = 0;
  // The device's free and total memory, for sizing the KV cache from what
  // the weights and a profiled step leave. Unimplemented on backends whose
  // memory is the host's (the CPU): those size the cache by a byte budget.
  virtual absl::StatusOr<DeviceMemoryInfo> MemoryInfo() const;
  // True if the backend can use `dtype` weights directly in MatMul.
  virtual bool SupportsWeightType(DType dtype) const = 0;
  virtual absl::StatusOr<std::unique_ptr<KvCache>> AllocateKvCache(const KvCacheSpec& spec) = 0;
  // The element type models give their KV cache (KvCacheSpec::dtype):
  // activation_dtype() unless SetKvCacheDtype chose another.
  DType kv_cache_dtype() const { return kv_cache_dtype_.value_or(activation_dtype()); }
  // Chooses the KV cache's element type before a model is loaded;
  // InvalidArgument (naming the types it takes) where the backend cannot
  // store or attend over it.
  absl::Status SetKvCacheDtype(DType dtype);
  // Whether AllocateKvCache and PagedAttention take caches of `dtype`.
  virtual bool SupportsKvCacheDtype(DType dtype) const { return dtype == activation_dtype(); }
  // Places a host weight matrix where MatMul and Embedding can read it,
  // converting its dtype if the backend needs another. The default keeps
  // the dtype: in place when shares_host_memory(), else copied; it fails
  // for a dtype SupportsWeightType rejects.
  virtual absl::StatusOr<DeviceTensor> UploadWeight(const Tensor& host);

  // Makes a per-step DeviceBatch from the host layout; valid until the next
  // call. May reuse internal buffers (no allocation in steady state).
  virtual absl::StatusOr<DeviceBatch> UploadBatch(const BatchLayout& layout) = 0;

  // out[t, :] = table[ids[t], :] for t < batch.num_tokens.
  virtual absl::Status Embedding(const DeviceBatch& batch, const Tensor& table, Tensor& out) = 0;
  // out = x / rms(x) * weight, row by row.
  virtual absl::Status RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) = 0;
  // residual += x; out = RmsNorm(residual). Fuses the block's skip connection.
  virtual absl::Status AddRmsNorm(Tensor& residual, const Tensor& x, const Tensor& weight,
                                  float eps, Tensor& out) = 0;
  // y[m, n] = x[m, k] * w[n, k]^T (+ bias[n] if given, f32).
  virtual absl::Status MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) = 0;
  // One product of MatMulShared: *y = x * w^T (+ *bias when not null).
  struct MatMulTarget {
    const Tensor* w;
    const Tensor* bias;
    Tensor* y;
  };
  // Several products of one input (a layer's Q/K/V, or gate and up), each
  // exactly what MatMul gives it. A backend may run them as one job (the CPU
  // splits all their columns over its threads at once); the default calls
  // MatMul for each.
  virtual absl::Status MatMulShared(const Tensor& x, std::span<const MatMulTarget> targets);
  // Rotates q [tokens, heads * head_dim] and k [tokens, kv_heads * head_dim]
  // in place by each token's position.
  virtual absl::Status Rope(const DeviceBatch& batch, const RopeTable& rope, int head_dim,
                            Tensor& q, Tensor& k) = 0;
  // out[t, i] = silu(gate[t, i]) * up[t, i].
  virtual absl::Status SiluMul(const Tensor& gate, const Tensor& up, Tensor& out) = 0;
  // x += y, elementwise.
  virtual absl::Status Add(Tensor& x, const Tensor& y) = 0;
  // Writes k, v [tokens, kv_heads * head_dim] into the layer's cache slots.
  virtual absl::Status WriteKv(const DeviceBatch& batch, const Tensor& k, const Tensor& v,
                               KvCache& cache, int layer) = 0;
  // Rope, then WriteKv of the rotated k and of v: one pass on backends that
  // fuse it (CUDA); k may or may not be left rotated (nothing reads it
  // after). The default runs the two ops.
  virtual absl::Status RopeAndWriteKv(const DeviceBatch& batch, const RopeTable& rope, int head_dim,
                                      Tensor& q, Tensor& k, const Tensor& v, KvCache& cache,
                                      int layer);
  // Causal attention of q [tokens, heads * head_dim] over each sequence's
  // cached K/V (which already holds this step's tokens); GQA maps query
  // head h to kv head h / (heads / kv_heads). out has q's shape.
  virtual absl::Status PagedAttention(const DeviceBatch& batch, const Tensor& q, KvCache& cache,
                                      int layer, int num_heads, float scale, Tensor& out) = 0;
  // out[i, :] = x[batch.logits_indices[i], :].
  virtual absl::Status GatherRows(const DeviceBatch& batch, const Tensor& x, Tensor& out) = 0;
  // Graph capture (CUDA graphs): ops queued between BeginCapture and
  // EndCapture are recorded, not run; host-side checks still run at capture.
  // Only device work may be queued meanwhile (no CopyToHost, no
  // Synchronize). Backends without graphs return Unimplemented.
  virtual bool SupportsGraphs() const { return false; }
  virtual absl::Status BeginCapture();
  virtual absl::StatusOr<std::unique_ptr<DeviceGraph>> EndCapture();
  // Changes whenever a buffer that ops use behind the caller's back (the
  // uploaded batch, workspaces) moves; a graph captured under another epoch
  // points at freed memory and must be captured again.
  virtual uint64_t memory_epoch() const { return 0; }

  // Copies whole blocks (every layer, K and V) for copy-on-write.
  virtual absl::Status CopyBlocks(std::span<const BlockCopy> copies, KvCache& cache) = 0;
  // ids[r] = the column of row r's largest value, the lowest on ties (NaN
  // never wins; a row of NaN gives 0), for logits f32 [rows, vocab] and ids
  // I32 [rows]. Greedy rows need only this on the host, not the whole row.
  virtual absl::Status ArgMax(const Tensor& logits, Tensor& ids) = 0;
  // Draws one token per row on the device (kernels/device_sampling.h) from
  // logits f32 [rows, vocab]; results[i] answers rows[i]. Synchronous: the
  // results are on the host when it returns. Only backends whose logits live
  // off the host implement it (the CPU samples on the host anyway).
  // True when SampleRows takes rows of `vocab_size` logits.
  virtual bool SupportsDeviceSampling(int64_t vocab_size) const { return false; }
  virtual absl::Status SampleRows(const Tensor& logits, std::span<const DeviceSamplingRow> rows,
                                  std::span<const LogitAdjustment> adjustments,
                                  std::span<DeviceSampleResult> results);

 private:
  std::optional<DType> kv_cache_dtype_;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_KERNELS_BACKEND_H_
