// CudaBackend, part 2: the compute ops of the forward pass. Each checks its
// tensors' shapes and dtypes and the step's index bounds on the host, then
// enqueues one kernel (cuda_kernels.h) or cuBLAS call (cuda_matmul.h).
#include <cuda_runtime.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/batch_uploader.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/cuda_matmul.h"
#include "kernels/cuda/cuda_memory.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/status_macros.h"

namespace alignserve {
namespace {

absl::Status Invalid(const char* op, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("cuda backend: ", op, ": ", what));
}

absl::Status CheckActivation(const Tensor& t, const char* op, const char* what) {
  if (t.dtype != DType::kF32 && t.dtype != DType::kBF16) {
    return Invalid(op, absl::StrCat(what, " must be F32 or BF16, got ",
                                    std::string(DTypeName(t.dtype)), " ", t.ShapeString()));
  }
  return absl::OkStatus();
}

absl::Status CheckSameShape(const Tensor& a, const Tensor& b, const char* op) {
  if (a.rows() != b.rows() || a.cols() != b.cols() || a.dtype != b.dtype) {
    return Invalid(
        op, absl::StrCat("operands differ: ", std::string(DTypeName(a.dtype)), " ", a.ShapeString(),
                         " vs ", std::string(DTypeName(b.dtype)), " ", b.ShapeString()));
  }
  return CheckActivation(a, op, "operand");
}

absl::Status CheckNormWeight(const Tensor& weight, int64_t cols, const char* op) {
  if (weight.dtype != DType::kF32 || weight.elements() != cols) {
    return Invalid(op,
                   absl::StrCat("weight must be F32 [", cols, "], got ",
                                std::string(DTypeName(weight.dtype)), " ", weight.ShapeString()));
  }
  return absl::OkStatus();
}

// t must hold at least `rows` rows of exactly `cols` columns.
absl::Status CheckRows(const Tensor& t, int64_t rows, int64_t cols, const char* op,
                       const char* what) {
  if (t.rows() < rows || t.cols() != cols) {
    return Invalid(
        op, absl::StrCat(what, " is ", t.ShapeString(), ", needs ", rows, " rows of ", cols));
  }
  return CheckActivation(t, op, what);
}

// K/V values per cache slot, and slots in the cache.
int64_t KvRow(const KvCacheSpec& spec) {
  return static_cast<int64_t>(spec.num_kv_heads) * spec.head_dim;
}
int64_t KvSlots(const KvCacheSpec& spec) {
  return static_cast<int64_t>(spec.num_blocks) * spec.block_size;
}

// Rope's host-side checks; the kernel's arguments when they pass.
absl::StatusOr<cuda::RopeArgs> CheckRope(const DeviceBatch& batch, const cuda::StepBounds& bounds,
                                         const RopeTable& rope, int head_dim, const Tensor& q,
                                         const Tensor& k) {
  if (head_dim <= 0 || q.cols() % head_dim != 0 || k.cols() % head_dim != 0 ||
      rope.rotary_dim % 2 != 0 || rope.rotary_dim > head_dim || rope.rotary_dim < 0) {
    return Invalid("rope", absl::StrCat("head_dim ", head_dim, ", rotary_dim ", rope.rotary_dim,
                                        ", q ", q.ShapeString(), ", k ", k.ShapeString()));
  }
  RETURN_IF_ERROR(CheckRows(q, batch.num_tokens, q.cols(), "rope", "q"));
  RETURN_IF_ERROR(CheckRows(k, batch.num_tokens, k.cols(), "rope", "k"));
  if (q.dtype != k.dtype) return Invalid("rope", "q and k differ in dtype");
  if (bounds.max_position >= rope.max_positions) {
    return absl::OutOfRangeError(absl::StrCat("position ", bounds.max_position,
                                              " is past the rope table of ", rope.max_positions,
                                              " positions"));
  }
  return cuda::RopeArgs{batch.positions,
                        rope.cos,
                        rope.sin,
                        batch.num_tokens,
                        rope.rotary_dim,
                        rope.interleaved,
                        head_dim,
                        static_cast<int>(q.cols() / head_dim),
                        static_cast<int>(k.cols() / head_dim)};
}

// WriteKv's host-side checks.
absl::Status CheckWriteKv(const DeviceBatch& batch, const cuda::StepBounds& bounds, const Tensor& k,
                          const Tensor& v, const KvCache& cache, int layer) {
  const KvCacheSpec& spec = cache.spec();
  const int64_t row = KvRow(spec), slots = KvSlots(spec);
  if (spec.dtype != DType::kBF16 || layer < 0 || layer >= spec.num_layers) {
    return Invalid("write_kv", absl::StrCat("needs a BF16 cache and a layer below ",
                                            spec.num_layers, ", got layer ", layer));
  }
  RETURN_IF_ERROR(CheckRows(k, batch.num_tokens, row, "write_kv", "k"));
  RETURN_IF_ERROR(CheckRows(v, batch.num_tokens, row, "write_kv", "v"));
  if (k.dtype != v.dtype) return Invalid("write_kv", "k and v differ in dtype");
  if (batch.num_tokens > 0 && (bounds.min_slot < kPaddingSlot || bounds.max_slot >= slots)) {
    return absl::OutOfRangeError(
        absl::StrCat("kv slot ", bounds.min_slot < 0 ? bounds.min_slot : bounds.max_slot,
                     " outside the cache of ", slots, " slots"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CudaBackend::Embedding(const DeviceBatch& batch, const Tensor& table, Tensor& out) {
  ASSIGN_OR_RETURN(const cuda::StepBounds bounds, uploader_->BoundsOf(batch));
  if (table.dtype != DType::kF32 && table.dtype != DType::kF16 && table.dtype != DType::kBF16) {
    return Invalid("embedding", absl::StrCat("table must be F32, F16 or BF16 (upload quantized "
                                             "tables with UploadWeight), got ",
                                             std::string(DTypeName(table.dtype))));
  }
  RETURN_IF_ERROR(CheckRows(out, batch.num_tokens, table.cols(), "embedding", "output"));
  if (bounds.min_token < 0 || bounds.max_token >= table.rows()) {
    return absl::InvalidArgumentError(
        absl::StrCat("token id ", bounds.min_token < 0 ? bounds.min_token : bounds.max_token,
                     " is outside the vocabulary of ", table.rows()));
  }
  CUDA_RETURN_IF_ERROR(cuda::LaunchEmbedding(batch.token_ids, batch.num_tokens, table.data,
                                             table.dtype, table.rows(), table.cols(), out.data,
                                             out.dtype, stream_));
  return absl::OkStatus();
}

absl::Status CudaBackend::RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  RETURN_IF_ERROR(CheckActivation(x, "rms_norm", "input"));
  RETURN_IF_ERROR(CheckRows(out, x.rows(), x.cols(), "rms_norm", "output"));
  if (out.rows() != x.rows()) return Invalid("rms_norm", "output rows differ from the input's");
  RETURN_IF_ERROR(CheckNormWeight(weight, x.cols(), "rms_norm"));
  if (x.data == out.data && x.dtype != out.dtype) {
    return Invalid("rms_norm", "in place needs one dtype");
  }
  CUDA_RETURN_IF_ERROR(cuda::LaunchRmsNorm(x.data, x.dtype, weight.as<float>(), eps, x.rows(),
                                           x.cols(), out.data, out.dtype, stream_));
  return absl::OkStatus();
}

absl::Status CudaBackend::AddRmsNorm(Tensor& residual, const Tensor& x, const Tensor& weight,
                                     float eps, Tensor& out) {
  RETURN_IF_ERROR(CheckSameShape(residual, x, "add_rms_norm"));
  RETURN_IF_ERROR(CheckSameShape(residual, out, "add_rms_norm"));
  RETURN_IF_ERROR(CheckNormWeight(weight, x.cols(), "add_rms_norm"));
  CUDA_RETURN_IF_ERROR(cuda::LaunchAddRmsNorm(residual.data, x.data, weight.as<float>(), eps,
                                              x.rows(), x.cols(), out.data, x.dtype, stream_));
  return absl::OkStatus();
}

absl::Status CudaBackend::MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  return gemm_->MatMul(x, w, bias, y);
}

absl::Status CudaBackend::Rope(const DeviceBatch& batch, const RopeTable& rope, int head_dim,
                               Tensor& q, Tensor& k) {
  ASSIGN_OR_RETURN(const cuda::StepBounds bounds, uploader_->BoundsOf(batch));
  ASSIGN_OR_RETURN(const cuda::RopeArgs args, CheckRope(batch, bounds, rope, head_dim, q, k));
  CUDA_RETURN_IF_ERROR(cuda::LaunchRope(args, q.data, k.data, q.dtype, stream_));
  return absl::OkStatus();
}

absl::Status CudaBackend::SiluMul(const Tensor& gate, const Tensor& up, Tensor& out) {
  RETURN_IF_ERROR(CheckSameShape(gate, up, "silu_mul"));
  RETURN_IF_ERROR(CheckSameShape(gate, out, "silu_mul"));
  CUDA_RETURN_IF_ERROR(
      cuda::LaunchSiluMul(gate.data, up.data, gate.elements(), out.data, gate.dtype, stream_));
  return absl::OkStatus();
}

absl::Status CudaBackend::Add(Tensor& x, const Tensor& y) {
  RETURN_IF_ERROR(CheckSameShape(x, y, "add"));
  CUDA_RETURN_IF_ERROR(cuda::LaunchAdd(x.data, y.data, x.elements(), x.dtype, stream_));
  return absl::OkStatus();
}

absl::Status CudaBackend::WriteKv(const DeviceBatch& batch, const Tensor& k, const Tensor& v,
                                  KvCache& cache, int layer) {
  ASSIGN_OR_RETURN(const cuda::StepBounds bounds, uploader_->BoundsOf(batch));
  RETURN_IF_ERROR(CheckWriteKv(batch, bounds, k, v, cache, layer));
  const KvCacheSpec& spec = cache.spec();
  CUDA_RETURN_IF_ERROR(cuda::LaunchWriteKv(batch.slot_mapping, batch.num_tokens, k.data, v.data,
                                           k.dtype, KvRow(spec), KvSlots(spec), cache.k(layer),
                                           cache.v(layer), stream_));
  return absl::OkStatus();
}

absl::Status CudaBackend::RopeAndWriteKv(const DeviceBatch& batch, const RopeTable& rope,
                                         int head_dim, Tensor& q, Tensor& k, const Tensor& v,
                                         KvCache& cache, int layer) {
  ASSIGN_OR_RETURN(const cuda::StepBounds bounds, uploader_->BoundsOf(batch));
  ASSIGN_OR_RETURN(const cuda::RopeArgs args, CheckRope(batch, bounds, rope, head_dim, q, k));
  RETURN_IF_ERROR(CheckWriteKv(batch, bounds, k, v, cache, layer));
  if (q.dtype != v.dtype) return Invalid("rope_write_kv", "q and v differ in dtype");
  const KvCacheSpec& spec = cache.spec();
  CUDA_RETURN_IF_ERROR(cuda::LaunchRopeWriteKv(args, batch.slot_mapping, q.data, k.data, v.data,
                                               q.dtype, KvSlots(spec), cache.k(layer),
                                               cache.v(layer), stream_));
  return absl::OkStatus();
}

absl::Status CudaBackend::PagedAttention(const DeviceBatch& batch, const Tensor& q, KvCache& cache,
                                         int layer, int num_heads, float scale, Tensor& out) {
  ASSIGN_OR_RETURN(const cuda::StepBounds bounds, uploader_->BoundsOf(batch));
  const KvCacheSpec& spec = cache.spec();
  if (spec.dtype != DType::kBF16 || layer < 0 || layer >= spec.num_layers || num_heads <= 0 ||
      num_heads % spec.num_kv_heads != 0) {
    return Invalid("paged_attention",
                   absl::StrCat("needs a BF16 cache, a layer below ", spec.num_layers,
                                " and heads a multiple of ", spec.num_kv_heads, "; got layer ",
                                layer, ", ", num_heads, " heads"));
  }
  const int64_t width = static_cast<int64_t>(num_heads) * spec.head_dim;
  RETURN_IF_ERROR(CheckRows(q, batch.num_tokens, width, "paged_attention", "q"));
  RETURN_IF_ERROR(CheckRows(out, batch.num_tokens, width, "paged_attention", "out"));
  if (q.dtype != out.dtype) return Invalid("paged_attention", "q and out differ in dtype");
  if (batch.num_seqs > 0 && (bounds.min_block < 0 || bounds.max_block >= spec.num_blocks)) {
    return absl::OutOfRangeError(
        absl::StrCat("block id ", bounds.min_block < 0 ? bounds.min_block : bounds.max_block,
                     " outside the KV cache of ", spec.num_blocks, " blocks"));
  }
  if (bounds.max_context_len > static_cast<int64_t>(batch.max_blocks_per_seq) * spec.block_size) {
    return Invalid("paged_attention", "block table shorter than the sequence");
  }
  cuda::AttentionArgs args{batch,
                           q.data,
                           cache.k(layer),
                           cache.v(layer),
                           out.data,
                           num_heads,
                           spec.num_kv_heads,
                           spec.head_dim,
                           spec.block_size,
                           spec.num_blocks,
                           scale};
  // Steps with prefill chunks take the tiled kernel (K/V reuse across query
  // rows), decode-only steps the split-K one (K/V read once per GQA group);
  // other shapes, or ALIGNSERVE_CUDA_ATTENTION=phase1, the phase-1 kernel.
  if (attention_kernels_ && batch.max_query_len > 1 && cuda::TiledAttentionSupports(args)) {
    CUDA_RETURN_IF_ERROR(cuda::LaunchTiledPagedAttention(args, q.dtype, stream_));
  } else if (attention_kernels_ && cuda::DecodeAttentionSupports(args)) {
    // Planned from the shape (the block tables' width), not the step's
    // contexts, so that a captured graph keeps a valid launch.
    const cuda::DecodeSplit split =
        cuda::PlanDecodeSplit(batch.num_seqs, spec.num_kv_heads,
                              batch.max_blocks_per_seq * spec.block_size, multiprocessors_);
    void* workspace = nullptr;
    if (const size_t bytes = cuda::DecodeWorkspaceBytes(args, split); bytes > 0) {
      ASSIGN_OR_RETURN(workspace, attention_workspace_->Reserve(bytes, stream_));
    }
    CUDA_RETURN_IF_ERROR(cuda::LaunchDecodePagedAttention(args, q.dtype, split,
                                                          static_cast<float*>(workspace), stream_));
  } else {
    CUDA_RETURN_IF_ERROR(cuda::LaunchPagedAttention(args, q.dtype, stream_));
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::GatherRows(const DeviceBatch& batch, const Tensor& x, Tensor& out) {
  RETURN_IF_ERROR(uploader_->BoundsOf(batch).status());
  if (out.rows() < batch.num_logits || out.cols() != x.cols() || out.dtype != x.dtype) {
    return Invalid("gather_rows", absl::StrCat("output ", out.ShapeString(), " for ",
                                               batch.num_logits, " rows of ", x.ShapeString()));
  }
  if (x.rows() < batch.num_tokens) {
    return Invalid("gather_rows", absl::StrCat("input ", x.ShapeString(), " has fewer rows than ",
                                               batch.num_tokens, " tokens"));
  }
  CUDA_RETURN_IF_ERROR(cuda::LaunchGatherRows(batch.logits_indices, batch.num_logits, x.data,
                                              x.rows(), x.row_bytes(), out.data, stream_));
  return absl::OkStatus();
}

absl::Status CudaBackend::ArgMax(const Tensor& logits, Tensor& ids) {
  if (logits.dtype != DType::kF32 || ids.dtype != DType::kI32 || ids.elements() < logits.rows() ||
      logits.cols() > INT32_MAX) {
    return Invalid("argmax", absl::StrCat(logits.ShapeString(), " into ", ids.ShapeString()));
  }
  if (logits.rows() == 0) return absl::OkStatus();
  CUDA_RETURN_IF_ERROR(cuda::LaunchArgMax(logits.as<float>(), logits.rows(), logits.cols(),
                                          ids.as<int32_t>(), stream_));
  return absl::OkStatus();
}

absl::Status CudaBackend::CopyBlocks(std::span<const BlockCopy> copies, KvCache& cache) {
  const KvCacheSpec& spec = cache.spec();
  for (const BlockCopy& c : copies) {
    if (c.src < 0 || c.src >= spec.num_blocks || c.dst < 0 || c.dst >= spec.num_blocks) {
      return absl::OutOfRangeError(absl::StrCat("block copy ", c.src, " -> ", c.dst,
                                                " outside the KV cache of ", spec.num_blocks,
                                                " blocks"));
    }
  }
  const size_t block_bytes = spec.bytes_per_block_per_layer();
  for (int layer = 0; layer < spec.num_layers; ++layer) {
    for (void* base : {cache.k(layer), cache.v(layer)}) {
      char* p = static_cast<char*>(base);
      for (const BlockCopy& c : copies) {
        CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(p + c.dst * block_bytes, p + c.src * block_bytes,
                                             block_bytes, cudaMemcpyDeviceToDevice, stream_));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace alignserve
