// Logits processors: the in-place transforms of one [vocab_size] logits row
// that SamplingParams asks for, each one plain function.
//
// Two groups:
//   Adjustments (bias, min_tokens mask, penalties): what the Sampler applies
//     to a copy of the model's row before any draw, greedy included. Cost is
//     O(entries or history), never O(vocab).
//   Warpers (temperature, top-k, top-p, min-p): full-vocabulary reference
//     versions that write -inf where HF's TemperatureLogitsWarper,
//     TopKLogitsWarper, TopPLogitsWarper and MinPLogitsWarper do. The
//     Sampler's draw reaches the same distribution without sorting the whole
//     vocabulary; these are its oracle and serve policies that want to read
//     the processed row.
// Thread-safety: functions are pure over their arguments; a TokenCounts is
// scratch for one thread.
#ifndef ALIGNSERVE_ENGINE_LOGITS_PROCESSORS_H_
#define ALIGNSERVE_ENGINE_LOGITS_PROCESSORS_H_

#include <cstdint>
#include <map>
#include <span>
#include <vector>

namespace alignserve {

// Counts of token ids over a history, reusable without clearing a
// vocab-sized array per call: entries are valid only when their stamp equals
// the current epoch. Ids outside [0, vocab) are ignored (never a crash).
class TokenCounts {
 public:
  // Counts `a` then `b`; distinct() lists each id seen once, in first-seen order.
  void Count(int vocab_size, std::span<const int32_t> a, std::span<const int32_t> b = {});
  const std::vector<int32_t>& distinct() const { return distinct_; }
  int32_t count(int32_t id) const { return stamp_[id] == epoch_ ? count_[id] : 0; }

 private:
  std::vector<uint32_t> stamp_;  // [vocab]
  std::vector<int32_t> count_;   // [vocab], valid where stamp_ == epoch_
  std::vector<int32_t> distinct_;
  uint32_t epoch_ = 0;
};

// logits[id] += bias for each entry (ids already validated in range).
void ApplyLogitBias(std::span<float> logits, const std::map<int32_t, float>& bias);

// logits[id] = -inf for each id in range: min_tokens keeps EOS and stop ids out.
void MaskTokens(std::span<float> logits, std::span<const int32_t> ids);

// HF RepetitionPenaltyLogitsProcessor over the distinct tokens of
// prompt + output: logit > 0 -> logit / penalty, else logit * penalty.
void ApplyRepetitionPenalty(std::span<float> logits, std::span<const int32_t> prompt,
                            std::span<const int32_t> output, float penalty, TokenCounts& scratch);

// OpenAI's formula over output tokens only:
// logit[t] -= frequency * count(t) + presence * (count(t) > 0).
void ApplyPresenceFrequencyPenalties(std::span<float> logits, std::span<const int32_t> output,
                                     float presence, float frequency, TokenCounts& scratch);

// The largest entry (-inf for an empty or all-NaN row), with eight
// independent lanes so it runs at about one element per cycle.
float RowMax(std::span<const float> x);

// out[i] = exp((x[i] - shift) * scale) for rows where that is <= 0 (shift =
// the row's max); returns the sum, accumulated in double. A vectorized
// polynomial exp (within 1.4 ulp of std::exp; exactly 0 below -87.3, for
// -inf and for NaN, so masked tokens get no mass): softmax weights of a 49k
// row in ~15 us instead of ~200 us with libm's scalar expf.
// block_sums, when given, receives the sum of each kExpBlock-entry block of
// out (the last one partial), so a draw can skip whole blocks.
constexpr size_t kExpBlock = 256;
double ExpShifted(std::span<const float> x, float shift, float scale, std::span<float> out,
                  std::vector<double>* block_sums = nullptr);
// The sum alone, through a small stack buffer (no allocation).
double SumExpShifted(std::span<const float> x, float shift, float scale);

// Reference warpers (full vocabulary; removed tokens become -inf).
void ApplyTemperature(std::span<float> logits, float temperature);
// Keeps every logit >= the k-th largest (ties at the boundary survive, as in HF).
void ApplyTopK(std::span<float> logits, int top_k);
// Keeps the highest-probability tokens whose mass before them is < top_p
// (HF: drops tokens whose ascending cumulative probability is <= 1 - top_p).
void ApplyTopP(std::span<float> logits, float top_p);
// Drops tokens whose probability is < min_p times the top probability.
void ApplyMinP(std::span<float> logits, float min_p);

}  // namespace alignserve

#endif  // ALIGNSERVE_ENGINE_LOGITS_PROCESSORS_H_
