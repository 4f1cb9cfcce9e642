#include "engine/sampler.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace alignserve {

absl::Status SamplingParams::Validate(int vocab_size) const {
  if (!std::isfinite(temperature) || temperature < 0.0f || temperature > 100.0f) {
    return absl::InvalidArgumentError("temperature must be a finite number in [0, 100]");
  }
  if (top_k < -1 || top_k > vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_k must be -1, 0 or in [1, ", vocab_size, "]"));
  }
  if (!std::isfinite(top_p) || top_p <= 0.0f || top_p > 1.0f) {
    return absl::InvalidArgumentError("top_p must be in (0, 1]");
  }
  if (!std::isfinite(min_p) || min_p < 0.0f || min_p > 1.0f) {
    return absl::InvalidArgumentError("min_p must be in [0, 1]");
  }
  return absl::OkStatus();
}

int32_t Argmax(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

Sampler::Sampler(const SamplingParams& params)
    : params_(params), rng_(params.seed ? *params.seed : std::random_device{}()) {}

int32_t Sampler::Sample(std::span<const float> logits) {
  if (params_.greedy()) return Argmax(logits);
  candidates_.resize(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    candidates_[i] = {static_cast<int32_t>(i), logits[i] / params_.temperature};
  }
  auto by_logit = [](const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  size_t keep = candidates_.size();
  if (params_.top_k > 0) keep = std::min<size_t>(keep, params_.top_k);
  if (keep < candidates_.size()) {
    std::partial_sort(candidates_.begin(), candidates_.begin() + keep, candidates_.end(),
                      by_logit);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }
  candidates_.resize(keep);
  // Softmax over the survivors, in double for stable tails.
  probs_.resize(keep);
  const double max_logit = candidates_[0].logit;
  double sum = 0.0;
  for (size_t i = 0; i < keep; ++i) sum += probs_[i] = std::exp(candidates_[i].logit - max_logit);
  // top-p: the smallest prefix whose mass reaches top_p (at least one token).
  double mass = 0.0;
  size_t cut = keep;
  for (size_t i = 0; i < keep; ++i) {
    mass += probs_[i] / sum;
    if (mass >= params_.top_p) {
      cut = i + 1;
      break;
    }
  }
  // min-p: drop tokens below min_p times the top probability.
  const double floor = params_.min_p * probs_[0];
  while (cut > 1 && probs_[cut - 1] < floor) --cut;
  std::discrete_distribution<size_t> pick(probs_.begin(), probs_.begin() + cut);
  return candidates_[pick(rng_)].id;
}

}  // namespace alignserve
