// Sampling on the device: the engine describes each row's draw
// (DeviceSamplingRow, with the row's sparse per-token adjustments) and the
// backend returns only what the host needs, the token and the requested
// logprobs (DeviceSampleResult), instead of copying whole vocabulary rows
// to the host (Backend::SampleRows).
//
// The semantics are the host sampler's (engine/sampler.h), per row:
//   1. logprobs (when num_logprobs >= 0) from the raw row: the chosen token's
//      logprob and rank (1 + the number of strictly larger logits), and the
//      num_logprobs largest entries by value descending then id ascending;
//   2. adjustments, each token at most once, in this order: + bias; -inf if
//      masked (min_tokens); repetition penalty if repeated (logit > 0:
//      logit / penalty, else logit * penalty); logit -= frequency *
//      output_count + presence * (output_count > 0);
//   3. temperature < kDeviceGreedyEpsilon: the argmax of the adjusted row
//      (lowest id on ties, NaN never wins);
//   4. otherwise weights exp((x - max) * (1 / temperature)), rounded as the
//      host's untruncated path rounds them (its top-k and min-p paths divide
//      by the temperature, so a boundary there can differ by a rounding);
//      weights below 2^-40 of the top one count as no mass for top-p; top-k
//      keeps every logit >= the k-th largest (ties survive); top-p then
//      keeps, in order of logit descending then id ascending, each token
//      whose preceding mass is < top_p * the kept total; min-p then drops
//      weights < min_p
//      (the top token has weight 1); the draw takes u = PhiloxUniform(seed,
//      step) (kernels/philox.h) and returns the first surviving token in id
//      order whose cumulative weight exceeds u * the survivors' total. A
//      row without mass (NaN, all -inf) falls back to the argmax.
// The kept set and its probabilities are the host's; the order a draw walks
// differs where the host walks candidates by logit (truncated rows), so
// seeded truncated draws agree in distribution, untruncated ones token for
// token up to rounding.
// Thread-safety: plain data.
#ifndef ALIGNSERVE_KERNELS_DEVICE_SAMPLING_H_
#define ALIGNSERVE_KERNELS_DEVICE_SAMPLING_H_

#include <cstdint>

namespace alignserve {

// SamplingParams::kMaxLogprobs and kGreedyEpsilon, restated for kernels.
constexpr int kMaxDeviceLogprobs = 20;
constexpr float kDeviceGreedyEpsilon = 1e-5f;

// One token's adjustment for one row (step 2 above).
struct LogitAdjustment {
  int32_t token = 0;
  float bias = 0.0f;
  int32_t output_count = 0;  // occurrences among the generated tokens
  uint8_t masked = 0;        // min_tokens unmet: EOS / stop ids
  uint8_t repeated = 0;      // in prompt or output: repetition_penalty applies
};

struct DeviceSamplingRow {
  int32_t logits_row = 0;  // row of the logits tensor; rows may share one (n > 1)
  float temperature = 1.0f;
  int32_t top_k = 0;  // <= 0: off
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  uint64_t seed = 0;
  uint64_t step = 0;         // tokens the sequence has generated: the Philox counter
  int32_t adjust_begin = 0;  // this row's adjustments: [begin, begin + count)
  int32_t adjust_count = 0;
  int32_t num_logprobs = -1;  // -1: no logprobs; else 0..kMaxDeviceLogprobs alternatives
};

struct DeviceSampleResult {
  int32_t token = 0;
  float logprob = 0.0f;  // of token, raw row (when num_logprobs >= 0)
  int32_t rank = 0;
  int32_t num_top = 0;
  int32_t top_tokens[kMaxDeviceLogprobs] = {};
  float top_logprobs[kMaxDeviceLogprobs] = {};
};

}  // namespace alignserve

#endif  // ALIGNSERVE_KERNELS_DEVICE_SAMPLING_H_
