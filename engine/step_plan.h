// StepPlan and StepOutput: what one engine step runs, and what it produced.
//
// Scheduler::Schedule returns a StepPlan: per scheduled sequence the chunk of
// tokens to run (a prefill chunk, a recompute chunk or one decode token), at
// which position, into which blocks, and whether its last token is sampled.
// The model runner executes `block_copies` (copy-on-write) first, then one
// forward pass over ToBatchLayout(). The sampler, stop checker and decoding
// policy turn the logits into a StepOutput for Scheduler::Update.
// Thread-safety: plain values.
#ifndef ALIGNSERVE_ENGINE_STEP_PLAN_H_
#define ALIGNSERVE_ENGINE_STEP_PLAN_H_

#include <cstdint>
#include <vector>

#include "engine/sequence.h"
#include "kernels/backend.h"
#include "kernels/batch_layout.h"

namespace alignserve {

struct ScheduledSequence {
  int64_t seq_id = 0;
  int64_t request_id = 0;
  std::vector<int32_t> token_ids;    // [chunk] the tokens to run this step
  int32_t start_pos = 0;             // position of token_ids[0] (num_computed_tokens)
  std::vector<int32_t> block_table;  // [ceil((start_pos + chunk) / block_size)]
  // True when the chunk ends at the sequence's last token, so its logits
  // give the next token: a decode or the last chunk of a (re)prefill.
  bool sample = false;
  // Logits for every token of the chunk, not only the sampled last one:
  // the request asked for prompt logprobs (set by the engine).
  bool all_logits = false;

  int32_t num_tokens() const { return static_cast<int32_t>(token_ids.size()); }
};

struct StepPlan {
  int32_t block_size = 0;
  // Running decodes first, then continued prefills, then new admissions.
  std::vector<ScheduledSequence> seqs;
  std::vector<BlockCopy> block_copies;  // copy-on-write, before the forward pass
  std::vector<int64_t> preempted;       // seq ids whose blocks were freed this step
  std::vector<int64_t> admitted;        // seq ids that left the waiting queue this step

  bool empty() const { return seqs.empty(); }
  int32_t num_tokens() const;
  int32_t num_sampled() const;
  // Logits rows of the forward pass, in seqs order: a whole chunk for an
  // all_logits sequence, else one row per sampled sequence.
  int32_t num_logits_rows() const;
  // The flattened batch for Backend::UploadBatch; logits rows follow the
  // order of the sampled entries of `seqs`.
  BatchLayout ToBatchLayout() const;
  // The same into `layout`, reusing its buffers (the model runner keeps one
  // across steps, so a steady decode step allocates nothing here). Equal to
  // BatchLayout::AddSequence for each entry followed by Finish, built
  // directly: each block table is copied once, into its padded row.
  void FillBatchLayout(BatchLayout& layout) const;
};

// One sampled sequence's result: the token to append and what happens next.
struct SequenceOutput {
  int64_t seq_id = 0;
  int32_t token_id = 0;
  // kNone: continue. kStop / kLength: append the token, then finish.
  // kAbort: drop the token and finish (a policy pruning the sequence).
  FinishReason finish = FinishReason::kNone;
  // Parallel sampling or a policy's fork: each entry creates a child that
  // shares this sequence's blocks (copy-on-write) and appends that token.
  std::vector<int32_t> fork_tokens;
};

struct StepOutput {
  // Exactly one entry per sampled sequence of the plan, any order; entries
  // of sequences aborted since the plan was made are ignored.
  std::vector<SequenceOutput> outputs;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_ENGINE_STEP_PLAN_H_
