// Causal attention over the paged KV cache on the CPU: the reference that
// the CUDA kernels are checked against.
//
// Every sequence's K/V for positions [0, context_len) live in the blocks of
// its block table; token t of the step (at position p) attends to positions
// [0, p]. All heads of a token are processed together, so each K/V row is
// read once (GQA: query heads sharing a KV head read it from cache).
// The cache holds f32 (exact) or f16 (half the bytes to read: at decode,
// reading the cache is what attention waits on).
// Batch invariance: a token's result depends only on its query, its
// context and the active ISA level, never on the rest of the batch.
// Thread-safety: parallel over slices of tokens' contexts via the pool.
#ifndef ALIGNSERVE_KERNELS_CPU_PAGED_ATTENTION_H_
#define ALIGNSERVE_KERNELS_CPU_PAGED_ATTENTION_H_

#include "kernels/batch_layout.h"
#include "kernels/dtype.h"
#include "kernels/thread_pool.h"

namespace alignserve::cpu {

struct AttentionShape {
  int num_heads;
  int num_kv_heads;
  int head_dim;
  int block_size;
  float scale;  // usually 1 / sqrt(head_dim)
};

// Whether PagedAttention reads caches of this element type (F32, F16).
bool PagedAttentionSupportsKv(DType kv_type);

// q, out: [num_tokens, num_heads * head_dim] f32; k_cache, v_cache:
// [num_blocks, block_size, num_kv_heads, head_dim] of kv_type, which
// PagedAttentionSupportsKv accepts (callers check; not re-checked here).
void PagedAttention(const DeviceBatch& batch, const AttentionShape& shape, const float* q,
                    const void* k_cache, const void* v_cache, DType kv_type, float* out,
                    ThreadPool& pool);

}  // namespace alignserve::cpu

#endif  // ALIGNSERVE_KERNELS_CPU_PAGED_ATTENTION_H_
