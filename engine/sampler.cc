#include "engine/sampler.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <utility>

#include "kernels/philox.h"

namespace alignserve {
namespace {

// How far below the top weight the first top-p candidate prefix reaches,
// and how much further each retry goes. 1e-4 of the top token's weight
// holds 90% of the mass for ordinary LLM rows, so one pass usually suffices.
constexpr float kFirstNucleusThreshold = 1e-4f;
constexpr float kNucleusThresholdStep = 1e-4f;
// Above this k a heap stops paying off against nth_element.
constexpr int kMaxHeapTopK = 4096;
// Larger top-p candidate sets are cut by buckets instead of a full sort.
constexpr size_t kMaxSortedNucleus = 2048;

bool ByLogitThenId(int32_t a_id, float a, int32_t b_id, float b) {
  return a > b || (a == b && a_id < b_id);
}

}  // namespace

uint64_t ResolveSeed(const SamplingParams& params) {
  if (params.seed) return *params.seed;
  std::random_device device;
  return (uint64_t{device()} << 32) ^ device();
}

double UniformForStep(uint64_t seed, uint64_t step) { return PhiloxUniform(seed, step); }

int32_t Argmax(std::span<const float> logits) {
  // Packed max, then the first index holding it: two cheap passes instead of
  // one branchy one.
  const float best = RowMax(logits);
  for (size_t i = 0; i < logits.size(); ++i) {
    if (logits[i] == best) return static_cast<int32_t>(i);
  }
  return 0;  // all NaN
}

BatchSampler::BatchSampler(std::vector<int32_t> eos_token_ids)
    : eos_token_ids_(std::move(eos_token_ids)) {}

bool BatchSampler::ArgmaxSuffices(const SamplingParams& p, int64_t num_output_tokens) {
  return p.greedy() && !p.logprobs && p.logit_bias.empty() && !p.has_penalties() &&
         num_output_tokens >= p.min_tokens;
}

void BatchSampler::SampleBatch(std::span<const SamplingRow> rows, std::vector<SampleResult>* out) {
  out->resize(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) SampleOne(rows[i], &(*out)[i]);
}

std::span<const float> BatchSampler::Adjust(const SamplingRow& row) {
  const SamplingParams& p = *row.params;
  mask_ids_.clear();
  if (static_cast<int64_t>(row.output_tokens.size()) < p.min_tokens) {
    mask_ids_ = p.stop_token_ids;
    if (!p.ignore_eos) {
      mask_ids_.insert(mask_ids_.end(), eos_token_ids_.begin(), eos_token_ids_.end());
    }
  }
  const bool penalties = p.has_penalties();
  if (p.logit_bias.empty() && mask_ids_.empty() && !penalties) return row.logits;
  work_.assign(row.logits.begin(), row.logits.end());
  std::span<float> x(work_);
  ApplyLogitBias(x, p.logit_bias);
  MaskTokens(x, mask_ids_);
  ApplyRepetitionPenalty(x, row.prompt_tokens, row.output_tokens, p.repetition_penalty, counts_);
  ApplyPresenceFrequencyPenalties(x, row.output_tokens, p.presence_penalty, p.frequency_penalty,
                                  counts_);
  return x;
}

void BatchSampler::SampleOne(const SamplingRow& row, SampleResult* out) {
  const SamplingParams& p = *row.params;
  const std::span<const float> x = Adjust(row);
  if (p.greedy() || x.size() <= 1) {
    out->token = Argmax(x);
  } else {
    const double total = Truncate(x, p);
    const double u = UniformForStep(row.seed, row.output_tokens.size());
    // A row of NaN or all -inf has no mass to draw from: fall back to argmax
    // rather than return garbage.
    out->token = total > 0.0 && std::isfinite(total) ? Draw(total, u) : Argmax(x);
  }
  if (p.logprobs) ComputePositionLogprobs(row.logits, out->token, *p.logprobs, &out->logprobs);
}

double BatchSampler::Truncate(std::span<const float> x, const SamplingParams& p) {
  const float max_logit = RowMax(x);
  const float t = p.temperature;
  all_tokens_ = false;
  candidates_.clear();
  double total = 0.0;
  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < x.size()) {
    SelectTopK(x, p.top_k, max_logit, t);  // sorted, with weights
    for (const Candidate& c : candidates_) total += c.weight;
    if (p.top_p < 1.0f) {
      double before = 0.0;
      size_t keep = 0;
      while (keep < candidates_.size() && before < p.top_p * total)
        before += candidates_[keep++].weight;
      candidates_.resize(keep);
      total = before;
    }
  } else if (p.top_p < 1.0f) {
    total = SelectNucleus(x, p.top_p, max_logit, t);
  } else if (p.min_p > 0.0f) {
    SelectMinP(x, p.min_p, max_logit, t);
    total = 0.0;
    for (const Candidate& c : candidates_) total += c.weight;
    return total;
  } else {
    weights_.resize(x.size());
    all_tokens_ = true;
    return ExpShifted(x, max_logit, 1.0f / t, weights_, &block_sums_);
  }
  // min-p after top-k / top-p: the top token has weight 1 and survives.
  if (p.min_p > 0.0f) {
    const double min_p = p.min_p;
    std::erase_if(candidates_, [&](const Candidate& c) {
      if (c.weight >= min_p) return false;
      total -= c.weight;
      return true;
    });
  }
  return total;
}

void BatchSampler::SelectTopK(std::span<const float> x, int k, float max_logit, float temperature) {
  // The k-th largest logit: a bounded min-heap in one pass (most entries fail
  // one comparison), or nth_element when k is a large share of the row.
  float kth;
  if (k <= kMaxHeapTopK) {
    heap_.clear();
    for (float v : x) {
      if (static_cast<int>(heap_.size()) < k) {
        heap_.push_back(v);
        std::push_heap(heap_.begin(), heap_.end(), std::greater<float>());
      } else if (v > heap_.front()) {
        std::pop_heap(heap_.begin(), heap_.end(), std::greater<float>());
        heap_.back() = v;
        std::push_heap(heap_.begin(), heap_.end(), std::greater<float>());
      }
    }
    kth = heap_.front();
  } else {
    heap_.assign(x.begin(), x.end());
    std::nth_element(heap_.begin(), heap_.begin() + (k - 1), heap_.end(), std::greater<float>());
    kth = heap_[k - 1];
  }
  // Every logit >= the k-th survives, ties included (HF TopKLogitsWarper).
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i] >= kth) {
      candidates_.push_back(
          {static_cast<int32_t>(i), x[i], std::exp((x[i] - max_logit) / temperature)});
    }
  }
  std::sort(candidates_.begin(), candidates_.end(), [](const Candidate& a, const Candidate& b) {
    return ByLogitThenId(a.id, a.logit, b.id, b.logit);
  });
}

double BatchSampler::SelectNucleus(std::span<const float> x, float top_p, float max_logit,
                                   float temperature) {
  weights_.resize(x.size());
  const double total = ExpShifted(x, max_logit, 1.0f / temperature, weights_);
  // The nucleus is a prefix of the tokens sorted by weight, so it lies inside
  // {w >= threshold} as soon as that set holds top_p of the mass.
  const double target = top_p * total;
  for (float threshold = kFirstNucleusThreshold;; threshold *= kNucleusThresholdStep) {
    if (threshold < 1e-30f) threshold = 0.0f;
    candidates_.clear();
    double mass = 0.0;
    for (size_t i = 0; i < x.size(); ++i) {
      if (weights_[i] >= threshold && weights_[i] > 0.0f) {
        candidates_.push_back({static_cast<int32_t>(i), x[i], weights_[i]});
        mass += weights_[i];
      }
    }
    if (mass >= target || threshold == 0.0f) break;
  }
  if (candidates_.size() > kMaxSortedNucleus)
    return CutNucleusByBuckets(target, max_logit, temperature);
  std::sort(candidates_.begin(), candidates_.end(), [](const Candidate& a, const Candidate& b) {
    return ByLogitThenId(a.id, a.logit, b.id, b.logit);
  });
  double before = 0.0;  // mass ranked above the current token
  size_t keep = 0;
  while (keep < candidates_.size() && before < target) before += candidates_[keep++].weight;
  candidates_.resize(keep);
  return before;
}

double BatchSampler::CutNucleusByBuckets(double target, float max_logit, float temperature) {
  // A flat row puts most of the vocabulary in the candidate set. Bucket the
  // candidates by -log(weight) (kBucketsPerNat per nat); whole buckets above
  // the one where the cumulative mass crosses target are kept unsorted, and
  // only that one bucket is sorted and cut. Bucket order is weight order, so
  // the kept set is exactly the sorted cut's.
  const float inv_t = 1.0f / temperature;
  bucket_mass_.assign(kNumBuckets, 0.0);
  bucket_of_.resize(candidates_.size());
  for (size_t i = 0; i < candidates_.size(); ++i) {
    const float d = (max_logit - candidates_[i].logit) * inv_t;
    const int b = d < kMaxBucketNats ? static_cast<int>(d * kBucketsPerNat) : kNumBuckets - 1;
    bucket_of_[i] = static_cast<uint16_t>(b);
    bucket_mass_[b] += candidates_[i].weight;
  }
  double before = 0.0;
  int crossing = 0;
  for (; crossing < kNumBuckets - 1; ++crossing) {
    if (before + bucket_mass_[crossing] >= target) break;
    before += bucket_mass_[crossing];
  }
  tail_.clear();
  size_t kept = 0;
  for (size_t i = 0; i < candidates_.size(); ++i) {
    if (bucket_of_[i] < crossing) candidates_[kept++] = candidates_[i];
    if (bucket_of_[i] == crossing) tail_.push_back(candidates_[i]);
  }
  candidates_.resize(kept);
  std::sort(tail_.begin(), tail_.end(), [](const Candidate& a, const Candidate& b) {
    return ByLogitThenId(a.id, a.logit, b.id, b.logit);
  });
  for (const Candidate& c : tail_) {
    if (before >= target) break;
    candidates_.push_back(c);
    before += c.weight;
  }
  return before;
}

void BatchSampler::SelectMinP(std::span<const float> x, float min_p, float max_logit,
                              float temperature) {
  // w = exp((x - max) / T) >= min_p, pre-filtered in logit space (with a
  // little slack for rounding) so only survivors pay for an exp.
  const float floor = max_logit + temperature * std::log(min_p) - 1e-3f * temperature;
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i] < floor) continue;
    const double w = std::exp((x[i] - max_logit) / temperature);
    if (w >= min_p) candidates_.push_back({static_cast<int32_t>(i), x[i], w});
  }
}

int32_t BatchSampler::Draw(double total, double uniform) const {
  const double target = uniform * total;
  double cumulative = 0.0;
  if (all_tokens_) {
    // Skip whole blocks by their sums, then scan the one block the target
    // falls in: ~200 + 256 additions instead of one chain over the vocabulary.
    size_t block = 0;
    while (block + 1 < block_sums_.size() && cumulative + block_sums_[block] <= target) {
      cumulative += block_sums_[block++];
    }
    int32_t last = -1;
    const size_t end = std::min(weights_.size(), (block + 1) * kExpBlock);
    for (size_t i = block * kExpBlock; i < end; ++i) {
      if (weights_[i] <= 0.0f) continue;
      cumulative += weights_[i];
      last = static_cast<int32_t>(i);
      if (cumulative > target) return last;
    }
    // Rounding left the target at the very top: the last token with weight.
    for (size_t i = weights_.size(); last < 0 && i-- > 0;) {
      if (weights_[i] > 0.0f) last = static_cast<int32_t>(i);
    }
    return std::max(last, 0);
  }
  for (const Candidate& c : candidates_) {
    cumulative += c.weight;
    if (cumulative > target) return c.id;
  }
  return candidates_.back().id;
}

void BatchSampler::Distribution(const SamplingRow& row, std::vector<TokenProb>* out) {
  out->clear();
  const std::span<const float> x = Adjust(row);
  const double total = Truncate(x, *row.params);
  if (all_tokens_) {
    for (size_t i = 0; i < weights_.size(); ++i) {
      if (weights_[i] > 0.0f) out->push_back({static_cast<int32_t>(i), weights_[i] / total});
    }
  } else {
    for (const Candidate& c : candidates_) out->push_back({c.id, c.weight / total});
  }
  std::sort(out->begin(), out->end(), [](const TokenProb& a, const TokenProb& b) {
    return a.prob > b.prob || (a.prob == b.prob && a.token < b.token);
  });
}

Sampler::Sampler(const SamplingParams& params, std::vector<int32_t> prompt_tokens,
                 std::vector<int32_t> eos_token_ids)
    : params_(params),
      seed_(ResolveSeed(params)),
      prompt_(std::move(prompt_tokens)),
      batch_(std::move(eos_token_ids)) {}

int32_t Sampler::Sample(std::span<const float> logits) {
  const SamplingRow row{logits, &params_, prompt_, output_, seed_};
  batch_.SampleOne(row, &last_);
  output_.push_back(last_.token);
  return last_.token;
}

}  // namespace alignserve
