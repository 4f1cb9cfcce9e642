// StoppingRule: when self-consistency may stop sampling because more samples
// would not change the vote.
//
//   EscRule (Li et al. 2024, "Escape Sky-high Cost: Early-stopping
//   Self-Consistency"): samples come in windows of w; after each complete
//   window, stop if all w answers of that window are the same answer. A
//   window holding a missing answer (nullopt) never agrees. Between window
//   boundaries the rule judges the latest complete window, so asking again
//   mid-window gives the same answer as at the boundary.
//
//   AdaptiveConsistencyRule (Aggarwal et al. 2023, "Let's Sample Step by
//   Step", the Beta stopping criterion): with v1 >= v2 the counts of the two
//   most frequent answers (v2 = 0 with one distinct answer; missing answers
//   are not counted), stop when
//       P(p1 > p2) = 1 - I_{1/2}(v1 + 1, v2 + 1) = I_{1/2}(v2 + 1, v1 + 1)
//   reaches the threshold (0.95). For integer parameters the regularized
//   incomplete beta is an exact binomial tail,
//       I_{1/2}(a, b) = sum_{j=a}^{a+b-1} C(a+b-1, j) / 2^(a+b-1),
//   summed here from the small side in log space (accurate to ~1e-14 for
//   any count a self-consistency run reaches).
//
//   NeverStopRule: run all n samples (rule "none").
//
// Thread-safety: rules are immutable; ShouldStop is const and may be called
// concurrently.
#ifndef ALIGNSERVE_ALIGNMENT_STOPPING_RULES_H_
#define ALIGNSERVE_ALIGNMENT_STOPPING_RULES_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace alignserve {

class StoppingRule {
 public:
  virtual ~StoppingRule() = default;
  // `answers_so_far` in sampling order; nullopt where a sample had no answer.
  virtual bool ShouldStop(std::span<const std::optional<std::string>> answers_so_far) const = 0;
  virtual std::string_view name() const = 0;
};

class NeverStopRule : public StoppingRule {
 public:
  bool ShouldStop(std::span<const std::optional<std::string>>) const override { return false; }
  std::string_view name() const override { return "none"; }
};

class EscRule : public StoppingRule {
 public:
  // window >= 1 (clamped).
  explicit EscRule(int32_t window);
  bool ShouldStop(std::span<const std::optional<std::string>> answers_so_far) const override;
  std::string_view name() const override { return "esc"; }

 private:
  int32_t window_;
};

class AdaptiveConsistencyRule : public StoppingRule {
 public:
  static constexpr double kDefaultThreshold = 0.95;
  explicit AdaptiveConsistencyRule(double threshold = kDefaultThreshold) : threshold_(threshold) {}
  bool ShouldStop(std::span<const std::optional<std::string>> answers_so_far) const override;
  std::string_view name() const override { return "beta"; }

 private:
  double threshold_;
};

// I_{1/2}(a, b) for integers a, b >= 1.
double RegularizedIncompleteBetaHalf(int64_t a, int64_t b);

// P(p1 > p2) under Beta(v1 + 1, v2 + 1), v1 >= v2 >= 0 counts.
double BetaMajorityProbability(int64_t v1, int64_t v2);

// "none", "esc" (with `window`) or "beta"; anything else is InvalidArgument.
absl::StatusOr<std::unique_ptr<StoppingRule>> MakeStoppingRule(std::string_view rule,
                                                               int32_t window);

}  // namespace alignserve

#endif  // ALIGNSERVE_ALIGNMENT_STOPPING_RULES_H_
