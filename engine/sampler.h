// Sampler: turns each running sequence's logits row into its next token, once
// per engine step for the whole batch (BatchSampler::SampleBatch), under the
// sequence's SamplingParams.
//
// Per row, in vLLM's order: logit_bias and the min_tokens mask, repetition
// then presence/frequency penalties (engine/logits_processors.h), then
// greedy argmax (lowest id on ties) or temperature, top-k, top-p, min-p and
// a draw. Logprobs come from the raw row (engine/logprobs.h).
//
// Randomness is counter-based: the draw for a sequence's step s is one
// uniform from Philox4x32-10 keyed by the sequence's seed with counter s
// (s = number of tokens it has already generated). A sequence therefore
// draws the same tokens whatever else shares the batch, and a preempted
// sequence that recomputes redraws exactly what it drew before. Unseeded
// requests get a random seed once, at admission (ResolveSeed).
//
// Cost: no allocation once scratch has grown to the vocabulary; no sort of
// the vocabulary: top-k selects with a bounded heap, top-p sorts only the
// prefix of tokens above a probability threshold that already holds top_p
// of the mass (or, when that prefix is large, only the one log-weight
// bucket where the cut falls), min-p filters in logit space, and
// untruncated sampling draws by a cumulative scan in id order. Survivors
// are drawn from in a fixed but unspecified order; the kept set and its
// probabilities are what HF's warpers give.
// Thread-safety: a BatchSampler (or Sampler) holds scratch; one thread at a
// time. Rows of a batch are independent.
#ifndef ALIGNSERVE_ENGINE_SAMPLER_H_
#define ALIGNSERVE_ENGINE_SAMPLER_H_

#include <cstdint>
#include <span>
#include <vector>

#include "engine/logits_processors.h"
#include "engine/logprobs.h"
#include "engine/sampling_params.h"

namespace alignserve {

// One sequence's input to a step. Spans must stay valid during the call.
struct SamplingRow {
  std::span<const float> logits;           // [vocab_size] raw model logits
  const SamplingParams* params = nullptr;  // validated
  std::span<const int32_t> prompt_tokens;  // for repetition_penalty
  std::span<const int32_t> output_tokens;  // generated so far; its size is the step
  uint64_t seed = 0;                       // ResolveSeed(params), fixed per sequence
};

struct SampleResult {
  int32_t token = 0;
  PositionLogprobs logprobs;  // filled only when params->logprobs is set
};

struct TokenProb {
  int32_t token = 0;
  double prob = 0.0;
};

class BatchSampler {
 public:
  // eos_token_ids: masked while min_tokens is unmet (unless ignore_eos).
  explicit BatchSampler(std::vector<int32_t> eos_token_ids = {});

  // One call per engine step; (*out)[i] is rows[i]'s token. Rows are
  // independent: a row's result depends only on that row.
  void SampleBatch(std::span<const SamplingRow> rows, std::vector<SampleResult>* out);
  // True when this row's choice is exactly the argmax of its raw logits
  // (lowest id on ties): greedy, no logprobs, and nothing that changes the
  // logits at this step (no bias, penalties or min_tokens mask). Such a row
  // can be sampled on the device: only the id need reach the host.
  static bool ArgmaxSuffices(const SamplingParams& p, int64_t num_output_tokens);
  void SampleOne(const SamplingRow& row, SampleResult* out);
  // Masked while min_tokens is unmet (unless ignore_eos).
  const std::vector<int32_t>& eos_token_ids() const { return eos_token_ids_; }

  // The distribution a non-greedy row draws from: surviving tokens with
  // renormalized probabilities, by probability descending then id. For tests
  // and for policies that inspect it; not used on the sampling path.
  void Distribution(const SamplingRow& row, std::vector<TokenProb>* out);

 private:
  static constexpr int kBucketsPerNat = 16;
  static constexpr float kMaxBucketNats = 64.0f;  // the last bucket takes the rest
  static constexpr int kNumBuckets = 64 * kBucketsPerNat + 1;

  struct Candidate {
    int32_t id;
    float logit;
    double weight;  // exp((logit - max) / temperature)
  };

  // The row after bias, min_tokens mask and penalties: the raw row itself
  // when none applies, else work_.
  std::span<const float> Adjust(const SamplingRow& row);
  // Fills candidates_ with the survivors of top-k / top-p / min-p (or, when
  // nothing truncates, weights_ with the whole row's weights and
  // all_tokens_ = true). Returns the survivors' total weight.
  double Truncate(std::span<const float> x, const SamplingParams& p);
  void SelectTopK(std::span<const float> x, int k, float max_logit, float temperature);
  double SelectNucleus(std::span<const float> x, float top_p, float max_logit, float temperature);
  // For large candidate sets: the top_p cut without sorting them all.
  double CutNucleusByBuckets(double target, float max_logit, float temperature);
  void SelectMinP(std::span<const float> x, float min_p, float max_logit, float temperature);
  int32_t Draw(double total, double uniform) const;

  std::vector<int32_t> eos_token_ids_;
  // Scratch, grown once to the vocabulary and reused every row.
  std::vector<float> work_;         // [vocab] adjusted logits
  std::vector<float> weights_;      // [vocab] exp((x - max) / T), untruncated and top-p paths
  std::vector<double> block_sums_;  // [vocab / kExpBlock] sums of weights_ blocks
  std::vector<float> heap_;         // [top_k] min-heap of the k largest logits
  std::vector<Candidate> candidates_;
  std::vector<Candidate> tail_;      // the top-p crossing bucket
  std::vector<double> bucket_mass_;  // [kNumBuckets]
  std::vector<uint16_t> bucket_of_;  // [candidates]
  std::vector<int32_t> mask_ids_;
  bool all_tokens_ = false;
  TokenCounts counts_;
};

// One sequence sampled on its own (the generate CLI, tests): keeps the
// sequence's prompt, output history and seed, and a BatchSampler's scratch.
class Sampler {
 public:
  explicit Sampler(const SamplingParams& params, std::vector<int32_t> prompt_tokens = {},
                   std::vector<int32_t> eos_token_ids = {});
  // Draws the next token and appends it to the output history.
  int32_t Sample(std::span<const float> logits);
  const std::vector<int32_t>& output_tokens() const { return output_; }
  const PositionLogprobs& last_logprobs() const { return last_.logprobs; }
  uint64_t seed() const { return seed_; }

 private:
  SamplingParams params_;
  uint64_t seed_;
  std::vector<int32_t> prompt_;
  std::vector<int32_t> output_;
  BatchSampler batch_;
  SampleResult last_;
};

// params.seed, or 64 random bits from std::random_device.
uint64_t ResolveSeed(const SamplingParams& params);
// The uniform in [0, 1) that a sequence with `seed` draws at `step`
// (Philox4x32-10, key = seed, counter = step; 53 random bits).
double UniformForStep(uint64_t seed, uint64_t step);
// Index of the largest value, lowest index on ties; NaN never wins.
int32_t Argmax(std::span<const float> logits);

}  // namespace alignserve

#endif  // ALIGNSERVE_ENGINE_SAMPLER_H_
