// Causal attention over the paged KV cache on the CPU: the reference that
// the CUDA kernels are checked against.
//
// Every sequence's K/V for positions [0, context_len) live in the blocks of
// its block table; token t of the step (at position p) attends to positions
// [0, p]. Query heads sharing a KV head (GQA) are processed together so
// each K/V row is read once per group.
// Thread-safety: parallel over (token, kv head) pairs via the given pool.
#ifndef ALIGNSERVE_KERNELS_CPU_PAGED_ATTENTION_H_
#define ALIGNSERVE_KERNELS_CPU_PAGED_ATTENTION_H_

#include "kernels/batch_layout.h"
#include "kernels/thread_pool.h"

namespace alignserve::cpu {

struct AttentionShape {
  int num_heads;
  int num_kv_heads;
  int head_dim;
  int block_size;
  float scale;  // usually 1 / sqrt(head_dim)
};

// q, out: [num_tokens, num_heads * head_dim]; k_cache, v_cache:
// [num_blocks, block_size, num_kv_heads, head_dim].
void PagedAttention(const DeviceBatch& batch, const AttentionShape& shape, const float* q,
                    const float* k_cache, const float* v_cache, float* out, ThreadPool& pool);

}  // namespace alignserve::cpu

#endif  // ALIGNSERVE_KERNELS_CPU_PAGED_ATTENTION_H_
