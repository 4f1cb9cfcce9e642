#include "alignment/stopping_rules.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace alignserve {
namespace {

// sum_{j=lo}^{hi} C(n, j) / 2^n, each term from lgamma (terms of a short
// tail sum are all small relative to 1, so no cancellation).
double BinomialHalfSum(int64_t n, int64_t lo, int64_t hi) {
  const double log_norm = std::lgamma(static_cast<double>(n) + 1) - n * std::log(2.0);
  double sum = 0;
  for (int64_t j = lo; j <= hi; ++j) {
    sum += std::exp(log_norm - std::lgamma(static_cast<double>(j) + 1) -
                    std::lgamma(static_cast<double>(n - j) + 1));
  }
  return sum;
}

}  // namespace

double RegularizedIncompleteBetaHalf(int64_t a, int64_t b) {
  a = std::max<int64_t>(a, 1);
  b = std::max<int64_t>(b, 1);
  // I_x(a, b) = P(Binomial(a + b - 1, x) >= a).
  const int64_t n = a + b - 1;
  if (2 * a > n) return BinomialHalfSum(n, a, n);  // the upper tail is the small one
  return 1.0 - BinomialHalfSum(n, 0, a - 1);
}

double BetaMajorityProbability(int64_t v1, int64_t v2) {
  return RegularizedIncompleteBetaHalf(v2 + 1, v1 + 1);
}

EscRule::EscRule(int32_t window) : window_(std::max(window, 1)) {}

bool EscRule::ShouldStop(std::span<const std::optional<std::string>> answers_so_far) const {
  const size_t w = static_cast<size_t>(window_);
  const size_t complete = answers_so_far.size() / w;
  if (complete == 0) return false;
  const auto latest = answers_so_far.subspan((complete - 1) * w, w);
  if (!latest[0].has_value()) return false;
  return std::all_of(latest.begin(), latest.end(),
                     [&](const std::optional<std::string>& a) { return a == latest[0]; });
}

bool AdaptiveConsistencyRule::ShouldStop(
    std::span<const std::optional<std::string>> answers_so_far) const {
  absl::flat_hash_map<std::string, int64_t> counts;
  for (const std::optional<std::string>& answer : answers_so_far) {
    if (answer.has_value()) ++counts[*answer];
  }
  int64_t v1 = 0;
  int64_t v2 = 0;
  for (const auto& [answer, count] : counts) {
    if (count > v1) {
      v2 = v1;
      v1 = count;
    } else if (count > v2) {
      v2 = count;
    }
  }
  if (v1 == 0) return false;
  return BetaMajorityProbability(v1, v2) >= threshold_;
}

absl::StatusOr<std::unique_ptr<StoppingRule>> MakeStoppingRule(std::string_view rule,
                                                               int32_t window) {
  if (rule == "none") return std::unique_ptr<StoppingRule>(new NeverStopRule());
  if (rule == "esc") return std::unique_ptr<StoppingRule>(new EscRule(window));
  if (rule == "beta") return std::unique_ptr<StoppingRule>(new AdaptiveConsistencyRule());
  return absl::InvalidArgumentError(absl::StrCat("unknown self-consistency stopping rule '",
                                                 std::string(rule),
                                                 "'; expected none, esc or beta"));
}

}  // namespace alignserve
