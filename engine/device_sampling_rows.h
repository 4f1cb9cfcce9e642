// The engine's side of device sampling (kernels/device_sampling.h): turns
// one sequence's SamplingParams and token history into a DeviceSamplingRow
// and its LogitAdjustments, and a DeviceSampleResult back into the
// sampler's SampleResult. Pure host code, no CUDA: the engine builds rows
// the same way whatever backend draws them.
//
// Adjustments are sparse: one entry per distinct token that step 2 of the
// semantics touches at this step, i.e. logit_bias ids, the min_tokens mask
// (stop_token_ids, plus the EOS ids unless ignore_eos, while fewer than
// min_tokens tokens were generated), prompt and output tokens when
// repetition_penalty != 1, and output tokens (with their counts) when a
// presence or frequency penalty is set. Entries are sorted by token.
// ApplyLogitAdjustments states step 2 on the host, operation for operation
// as BatchSampler applies it (engine/logits_processors.h).
// Thread-safety: pure functions over their arguments.
#ifndef ALIGNSERVE_ENGINE_DEVICE_SAMPLING_ROWS_H_
#define ALIGNSERVE_ENGINE_DEVICE_SAMPLING_ROWS_H_

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "engine/sampler.h"
#include "engine/sampling_params.h"
#include "kernels/device_sampling.h"

namespace alignserve {

// One sequence's token history in the sorted form its penalty adjustments
// need, kept across steps so that a step costs a linear merge instead of a
// sort of the whole prompt: the prompt's distinct tokens once, the output's
// (token, count) pairs updated with each new token.
// Thread-safety: one thread (the engine's).
class PenaltyHistory {
 public:
  // Brings the history up to `output`, which should extend the output seen
  // last time with `prompt` unchanged (as a sequence's does); anything else
  // is noticed (the seen tokens are kept and compared, a memcmp) and
  // rebuilds it.
  void Sync(std::span<const int32_t> prompt, std::span<const int32_t> output);
  std::span<const int32_t> prompt_distinct() const { return prompt_distinct_; }  // sorted
  // Sorted by token.
  std::span<const std::pair<int32_t, int32_t>> output_counts() const { return output_counts_; }

 private:
  bool synced_ = false;
  std::vector<int32_t> prompt_;  // as last synced
  std::vector<int32_t> output_;  // the output counted so far
  std::vector<int32_t> prompt_distinct_;
  std::vector<std::pair<int32_t, int32_t>> output_counts_;
};

// Appends the row that draws `output.size()`-th token of a sequence from
// logits row `logits_row`, with its adjustments appended to *adjustments
// (the row's adjust_begin indexes that vector). Tokens outside [0,
// vocab_size) get no entry, as the host sampler ignores them (a sequence
// classifier's rows are num_labels wide, narrower than its vocabulary).
// `history`, when given, must be synced to (prompt, output); it spares the
// sort of the history the penalties read (the result is the same).
void AppendDeviceSamplingRow(const SamplingParams& params, std::span<const int32_t> prompt,
                             std::span<const int32_t> output, std::span<const int32_t> eos_ids,
                             int32_t vocab_size, uint64_t seed, int32_t logits_row,
                             std::vector<DeviceSamplingRow>* rows,
                             std::vector<LogitAdjustment>* adjustments,
                             const PenaltyHistory* history = nullptr);

// The sampler's result for a device draw; logprobs are filled only when
// wanted (as SampleOne leaves them untouched otherwise).
void ToSampleResult(const DeviceSampleResult& drawn, bool want_logprobs, SampleResult* out);

// Step 2 on a host copy of the row: for each adjustment of `row`, in the
// documented order, exactly BatchSampler's float arithmetic.
void ApplyLogitAdjustments(const DeviceSamplingRow& row,
                           std::span<const LogitAdjustment> adjustments, std::span<float> logits);

}  // namespace alignserve

#endif  // ALIGNSERVE_ENGINE_DEVICE_SAMPLING_ROWS_H_
