#include "engine/step_plan.h"

namespace alignserve {

int32_t StepPlan::num_tokens() const {
  int32_t n = 0;
  for (const ScheduledSequence& s : seqs) n += s.num_tokens();
  return n;
}

int32_t StepPlan::num_logits_rows() const {
  int32_t n = 0;
  for (const ScheduledSequence& s : seqs) n += s.all_logits ? s.num_tokens() : (s.sample ? 1 : 0);
  return n;
}

int32_t StepPlan::num_sampled() const {
  int32_t n = 0;
  for (const ScheduledSequence& s : seqs) n += s.sample ? 1 : 0;
  return n;
}

BatchLayout StepPlan::ToBatchLayout() const {
  BatchLayout layout;
  for (const ScheduledSequence& s : seqs) {
    layout.AddSequence(s.token_ids, s.start_pos, s.block_table, block_size, s.sample, s.all_logits);
  }
  layout.Finish();
  return layout;
}

}  // namespace alignserve
