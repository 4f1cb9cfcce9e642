#include "alignment/reward_selection.h"

#include <cmath>
#include <random>

namespace alignserve {
namespace {

// Uniform double in [0, 1) from the generator's top 53 bits.
double Uniform01(std::mt19937_64& gen) { return static_cast<double>(gen() >> 11) * 0x1.0p-53; }

}  // namespace

std::optional<size_t> BestOfN(std::span<const double> rewards) {
  std::optional<size_t> best;
  for (size_t i = 0; i < rewards.size(); ++i) {
    if (std::isnan(rewards[i])) continue;
    if (!best.has_value() || rewards[i] > rewards[*best]) best = i;
  }
  return best;
}

std::vector<double> SoftBestOfNProbabilities(std::span<const double> rewards, double lambda) {
  std::vector<double> probs(rewards.size(), 0.0);
  const std::optional<size_t> best = BestOfN(rewards);
  if (!best.has_value()) return probs;
  const double max_reward = rewards[*best];
  // The lambda -> 0 limit, and the degenerate all -inf case, are argmax.
  if (!(lambda >= kSoftBestOfNArgmaxLambda) || max_reward == -INFINITY) {
    probs[*best] = 1.0;
    return probs;
  }
  if (max_reward == INFINITY) {
    size_t infinite = 0;
    for (double r : rewards) infinite += r == INFINITY;
    for (size_t i = 0; i < rewards.size(); ++i) {
      if (rewards[i] == INFINITY) probs[i] = 1.0 / static_cast<double>(infinite);
    }
    return probs;
  }
  double sum = 0;
  for (size_t i = 0; i < rewards.size(); ++i) {
    if (std::isnan(rewards[i])) continue;
    // <= 0 by construction, so exp never overflows; the max contributes 1.
    probs[i] = std::exp((rewards[i] - max_reward) / lambda);
    if (std::isnan(probs[i])) probs[i] = 0;  // -inf / +inf lambda
    sum += probs[i];
  }
  for (double& p : probs) p /= sum;
  return probs;
}

std::optional<size_t> SoftBestOfN(std::span<const double> rewards, double lambda, uint64_t seed) {
  const std::vector<double> probs = SoftBestOfNProbabilities(rewards, lambda);
  std::optional<size_t> last_positive;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] > 0) last_positive = i;
  }
  if (!last_positive.has_value()) return std::nullopt;
  std::mt19937_64 gen(seed);
  const double u = Uniform01(gen);
  double cumulative = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    cumulative += probs[i];
    if (probs[i] > 0 && u < cumulative) return i;
  }
  return last_positive;  // u landed in the rounding gap below 1
}

}  // namespace alignserve
