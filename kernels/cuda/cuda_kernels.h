// Host-side launchers of the CUDA backend's kernels (defined in the .cu files
// of this folder). Each one enqueues work on `stream` and returns the launch
// error (cudaGetLastError()), so callers wrap them in CUDA_RETURN_IF_ERROR.
// They check nothing about their arguments: CudaBackend validates shapes,
// dtypes and index ranges on the host first. Kernels still guard every
// indirect index (token id, slot, block id) so that a bad value skips work
// instead of touching memory out of bounds.
//
// Activations (`act`) are f32 or bf16, chosen at run time by a DType; the
// KV cache is bf16; norm weights, biases and RoPE tables are f32. All math
// is f32.
// Thread-safety: stateless; ordering is the stream's.
#ifndef ALIGNSERVE_KERNELS_CUDA_CUDA_KERNELS_H_
#define ALIGNSERVE_KERNELS_CUDA_CUDA_KERNELS_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/batch_layout.h"
#include "kernels/dtype.h"

namespace alignserve::cuda {

// out[t, :] = table[ids[t], :]; table is f32, f16 or bf16 [vocab, dim].
cudaError_t LaunchEmbedding(const int32_t* ids, int num_tokens, const void* table, DType table_type,
                            int64_t vocab, int64_t dim, void* out, DType out_type,
                            cudaStream_t stream);

// out = x / rms(x) * weight row by row; x and out may alias (same type).
cudaError_t LaunchRmsNorm(const void* x, DType x_type, const float* weight, float eps, int64_t rows,
                          int64_t cols, void* out, DType out_type, cudaStream_t stream);

// residual += x (rounded to the residual's type); out = RmsNorm(residual).
// residual, x and out share `type`.
cudaError_t LaunchAddRmsNorm(void* residual, const void* x, const float* weight, float eps,
                             int64_t rows, int64_t cols, void* out, DType type,
                             cudaStream_t stream);

struct RopeArgs {
  const int32_t* positions;  // [num_tokens], each in [0, max_positions)
  const float* cos;          // [max_positions, rotary_dim / 2]
  const float* sin;
  int num_tokens;
  int rotary_dim;
  bool interleaved;
  int head_dim;
  int q_heads;  // q is [num_tokens, q_heads * head_dim]
  int k_heads;  // k is [num_tokens, k_heads * head_dim]
};
cudaError_t LaunchRope(const RopeArgs& args, void* q, void* k, DType type, cudaStream_t stream);

// out = silu(gate) * up, elementwise over n values of `type`.
cudaError_t LaunchSiluMul(const void* gate, const void* up, int64_t n, void* out, DType type,
                          cudaStream_t stream);

// x += y over n values of `type`.
cudaError_t LaunchAdd(void* x, const void* y, int64_t n, DType type, cudaStream_t stream);

// k_cache[slot[t], :] = k[t, :] (and v) for t < num_tokens, converted to
// bf16; rows are `row` elements; slots outside [0, num_slots) are skipped.
cudaError_t LaunchWriteKv(const int64_t* slots, int num_tokens, const void* k, const void* v,
                          DType type, int64_t row, int64_t num_slots, void* k_cache, void* v_cache,
                          cudaStream_t stream);
// Rope and WriteKv in one pass: q rotated in place; k rotated on its way
// into the cache (k itself is left as it was) and v copied there. A
// padding row (slot < 0) rotates q and writes nothing.
cudaError_t LaunchRopeWriteKv(const RopeArgs& args, const int64_t* slots, void* q, const void* k,
                              const void* v, DType type, int64_t num_slots, void* k_cache,
                              void* v_cache, cudaStream_t stream);

// out[i, :] = x[indices[i], :] as raw rows of row_bytes bytes.
cudaError_t LaunchGatherRows(const int32_t* indices, int count, const void* x, int64_t x_rows,
                             size_t row_bytes, void* out, cudaStream_t stream);

// dst[i] = float(src[i]) for n values of src_type (f32, f16 or bf16).
cudaError_t LaunchToF32(const void* src, DType src_type, int64_t n, float* dst,
                        cudaStream_t stream);

// dst[r, c] = src[r, c] + bias[c] (bias may be null), stored as dst_type;
// src and dst may alias when dst_type is f32.
cudaError_t LaunchStoreRows(const float* src, const float* bias, int64_t rows, int64_t cols,
                            void* dst, DType dst_type, cudaStream_t stream);

// y[m, n] = x[m, k] * w[n, k]^T (+ bias[n] f32 if not null) for bf16 x and
// w and a few rows (cuda_gemv.cu): decode steps of up to kMaxGemvRows
// sequences, where streaming the weights is the whole cost. y is f32 or
// bf16. Needs GemvSupports(m, k, x, w).
inline constexpr int kMaxGemvRows = 4;
bool GemvSupports(int64_t m, int64_t k, const void* x, const void* w);
cudaError_t LaunchGemv(const void* x, const void* w, const float* bias, int m, int n, int k,
                       void* y, DType y_type, cudaStream_t stream);

// ids[r] = argmax of row r of logits [rows, cols] (lowest column on ties;
// NaN never wins; an all-NaN row gives 0).
cudaError_t LaunchArgMax(const float* logits, int64_t rows, int64_t cols, int32_t* ids,
                         cudaStream_t stream);

struct AttentionArgs {
  DeviceBatch batch;
  const void* q;        // [num_tokens, num_heads * head_dim] of q_type
  const void* k_cache;  // bf16 [num_blocks, block_size, num_kv_heads, head_dim]
  const void* v_cache;
  void* out;  // q's shape and type
  int num_heads;
  int num_kv_heads;
  int head_dim;  // at most 256
  int block_size;
  int num_blocks;
  float scale;
};
// Causal attention of every (token, head) over its sequence's cached K/V.
// Phase 1 (cuda_attention.cu): one block per (token, head); any head_dim up
// to 256; best for decode-only steps.
cudaError_t LaunchPagedAttention(const AttentionArgs& args, DType q_type, cudaStream_t stream);
// The same result, tiled on tensor cores (cuda_attention_tiled.cu): one
// block per (sequence, 64 query rows, kv head) so each K/V row serves every
// query row of the tile; for steps with prefill chunks. Needs
// TiledAttentionSupports(args): head_dim 64 or 128, num_heads / num_kv_heads
// dividing 64, 16-byte aligned q, out and caches.
bool TiledAttentionSupports(const AttentionArgs& args);

// Decode-only steps (cuda_attention_decode.cu): one block per (sequence, kv
// head, split of the keys), each K/V row read once for its whole GQA group;
// splits > 1 write partials to a workspace that a second kernel merges. The
// split count depends only on the batch shape (sequences, and the longest
// context the block tables can hold), never on the contexts themselves:
// each block sizes its split from its sequence's context on the device, so
// one launch configuration (and a CUDA graph of it) serves every step of
// that shape.
// Each warp streams 16-key K/V tiles into shared memory with cp.async, two
// stages deep.
struct DecodeSplit {
  int num_splits = 1;
};
bool DecodeAttentionSupports(const AttentionArgs& args);
DecodeSplit PlanDecodeSplit(int num_seqs, int num_kv_heads, int max_context_len,
                            int multiprocessors);
size_t DecodeWorkspaceBytes(const AttentionArgs& args, const DecodeSplit& split);
cudaError_t LaunchDecodePagedAttention(const AttentionArgs& args, DType q_type,
                                       const DecodeSplit& split, float* workspace,
                                       cudaStream_t stream);
cudaError_t LaunchTiledPagedAttention(const AttentionArgs& args, DType q_type, cudaStream_t stream);

}  // namespace alignserve::cuda

#endif  // ALIGNSERVE_KERNELS_CUDA_CUDA_KERNELS_H_
