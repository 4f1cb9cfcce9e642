// BatchLayout: the flattened, variable-length batch of one engine step, as
// the model runner builds it on the host. Prefill chunks and decodes of many
// sequences share one forward pass: sequence s owns the token rows
// [query_start[s], query_start[s + 1]) and appends their K/V after the
// context it already has in the paged KV cache.
//
// DeviceBatch is the same layout after Backend::UploadBatch: pointers valid
// on the backend's device for the duration of one step. Every op of a
// forward pass takes it explicitly (no global step context).
// Thread-safety: plain values.
#ifndef ALIGNSERVE_KERNELS_BATCH_LAYOUT_H_
#define ALIGNSERVE_KERNELS_BATCH_LAYOUT_H_

#include <cstdint>
#include <vector>

namespace alignserve {

// A slot_mapping entry whose token's K/V is not stored: the padding rows
// that fill a decode step up to a captured graph's batch size
// (models/decode_graphs.h). Every backend skips it in WriteKv.
inline constexpr int64_t kPaddingSlot = -1;

struct BatchLayout {
  std::vector<int32_t> token_ids;     // [num_tokens]
  std::vector<int32_t> positions;     // [num_tokens] absolute position of each token
  std::vector<int32_t> query_start;   // [num_seqs + 1] row offsets, first 0, last num_tokens
  std::vector<int32_t> context_lens;  // [num_seqs] KV length of seq s after this step (old + new)
  std::vector<int32_t> block_tables;  // [num_seqs * max_blocks_per_seq] row s: seq s's block ids,
                                      // padded with 0 past its last block
  int32_t max_blocks_per_seq = 0;
  std::vector<int64_t> slot_mapping;    // [num_tokens] block_id * block_size + offset of each
                                        // token's K/V slot, or kPaddingSlot
  std::vector<int32_t> logits_indices;  // [num_logits] token rows whose logits are wanted

  int32_t num_tokens() const { return static_cast<int32_t>(token_ids.size()); }
  int32_t num_seqs() const { return static_cast<int32_t>(context_lens.size()); }

  // Appends one sequence's chunk: `tokens` at positions start_pos.., whose
  // KV slots are given; `blocks` is the sequence's whole block table.
  // Marks the chunk's last token for logits when want_logits is set, every
  // token of the chunk when all_logits is (prompt logprobs).
  void AddSequence(const std::vector<int32_t>& tokens, int32_t start_pos,
                   const std::vector<int32_t>& blocks, int32_t block_size, bool want_logits,
                   bool all_logits = false);

  // Pads block_tables rows to max_blocks_per_seq once all sequences are in.
  void Finish();

 private:
  std::vector<std::vector<int32_t>> pending_tables_;
};

struct DeviceBatch {
  int32_t num_tokens = 0;
  int32_t num_seqs = 0;
  int32_t num_logits = 0;
  int32_t max_blocks_per_seq = 0;
  int32_t max_query_len = 0;
  int32_t max_context_len = 0;
  const int32_t* token_ids = nullptr;       // [num_tokens]
  const int32_t* positions = nullptr;       // [num_tokens]
  const int32_t* query_start = nullptr;     // [num_seqs + 1]
  const int32_t* context_lens = nullptr;    // [num_seqs]
  const int32_t* block_tables = nullptr;    // [num_seqs * max_blocks_per_seq]
  const int64_t* slot_mapping = nullptr;    // [num_tokens]
  const int32_t* logits_indices = nullptr;  // [num_logits]
};

}  // namespace alignserve

#endif  // ALIGNSERVE_KERNELS_BATCH_LAYOUT_H_
