// Internal to paged_attention*.cc: one slice of one token's attention, and
// the per-ISA kernels that compute it. A slice is positions [begin, end) of
// the token's context for every query head; long contexts are cut into
// several slices (split-K, as in flash-decoding) so that a decode step with
// few tokens still keeps every thread busy, and the slices are merged
// afterwards in a fixed order. All KV heads of a slice are read together, so
// a block's K (then V) rows stream from memory as one contiguous run.
#ifndef ALIGNSERVE_KERNELS_CPU_PAGED_ATTENTION_SLICE_H_
#define ALIGNSERVE_KERNELS_CPU_PAGED_ATTENTION_SLICE_H_

#include <cstdint>

#include "kernels/cpu/paged_attention.h"
#include "kernels/dtype.h"

namespace alignserve::cpu::attention_internal {

// Unnormalized partial result of a slice, per query head h:
// acc[h * d + i] = sum_j exp(s_hj - max_h) v_j[i], max[h] = max_j s_hj and
// sum[h] = sum_j exp(s_hj - max_h).
struct Partial {
  float* acc;
  float* max;
  float* sum;
};

struct SliceArgs {
  const float* q;              // the token's query row: num_heads * head_dim
  const void* k_cache;         // [num_blocks, block_size, num_kv_heads, head_dim]
  const void* v_cache;         // of the KV element type the kernel is for
  const int32_t* block_table;  // the token's sequence
  int begin, end;              // positions, end > begin
  const AttentionShape* shape;
  float* scores;  // scratch: num_heads * (end - begin) floats
  Partial out;
};

// Computes one slice; the element type of the caches is the function's.
using SliceFn = void (*)(const SliceArgs& args);

// Portable kernels (any head_dim; compiled for several ISA levels).
SliceFn GenericSliceKernel(DType kv_type);
// AVX-512 F/BW/VL/DQ kernels (head_dim 32, 64, 80, 96 or 128); nullptr
// for other head dims. Callable only on such hardware.
SliceFn Avx512SliceKernel(DType kv_type, int head_dim);

// Calls fn(first_position, count, first_slot) for each run of positions in
// [begin, end) that lies in one KV block (contiguous slots), so the inner
// loops need no division by the block size.
template <typename Fn>
inline void ForEachBlockRun(const int32_t* block_table, int block_size, int begin, int end,
                            Fn&& fn) {
  for (int j = begin; j < end;) {
    const int offset = j % block_size;
    const int count = block_size - offset < end - j ? block_size - offset : end - j;
    fn(j, count, static_cast<int64_t>(block_table[j / block_size]) * block_size + offset);
    j += count;
  }
}

// The first slot of the block after the one holding position j, or -1 when
// [j, end) ends in j's block: what a kernel prefetches while working on j's.
inline int64_t NextBlockSlot(const int32_t* block_table, int block_size, int j, int end) {
  const int next = (j / block_size + 1) * block_size;
  return next < end ? static_cast<int64_t>(block_table[next / block_size]) * block_size : -1;
}

}  // namespace alignserve::cpu::attention_internal

#endif  // ALIGNSERVE_KERNELS_CPU_PAGED_ATTENTION_SLICE_H_
