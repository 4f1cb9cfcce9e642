// DeepConf (Fu, Wang, Tian, Zhao 2025, "Deep Think with Confidence"), the
// arithmetic of its online mode; the policy that drives traces lives apart.
//
//   token confidence   C_i = -(1/k) * sum_{j=1..k} log P_i(j) over the top-k
//                      logprobs at step i (k = 20 in the paper). High means
//                      a peaked distribution, i.e. a confident step.
//   group confidence   the mean of C over a sliding window of the last
//                      `window` tokens (2048 in the paper's online runs).
//   lowest group conf. the minimum group confidence over the trace's full
//                      windows; a trace shorter than the window has one
//                      group, all of its tokens (as the reference code's
//                      compute_least_grouped does).
//   threshold s        from N_init warm-up traces run to completion:
//                      s = Percentile_p of their lowest group confidences,
//                      p = 100 - eta with eta the percent kept: p = 90
//                      ("DeepConf-low") keeps the top 10%, p = 10
//                      ("DeepConf-high") the top 90%. Percentile is
//                      numpy's default (linear interpolation between
//                      order statistics), as in the reference code.
//   online stop        a later trace stops at the first token whose group
//                      confidence (a full window) is < s. A trace shorter
//                      than the window cannot be stopped early; at its end
//                      it votes only if its lowest group confidence >= s
//                      (the reference filters these after generation).
//   vote weight        online mode weights each surviving trace by its
//                      lowest group confidence (the reference's min_conf);
//                      the offline variants' mean token confidence is
//                      available as TraceConfidenceKind::kMeanToken.
//
// Thread-safety: GroupConfidenceWindow is a plain value owned by one
// sequence's policy state (the engine thread); the free functions are pure.
#ifndef ALIGNSERVE_ALIGNMENT_DEEPCONF_H_
#define ALIGNSERVE_ALIGNMENT_DEEPCONF_H_

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"

namespace alignserve {

inline constexpr int32_t kDeepConfDefaultTopK = 20;
inline constexpr int32_t kDeepConfDefaultWindow = 2048;

// C_i from the top-k logprobs at one step (any order). Non-finite entries
// (-inf: the distribution had fewer than k live tokens) are left out of the
// mean; with no finite entry the confidence is 0.
double TokenConfidence(std::span<const float> top_logprobs);

// Sliding-window mean of token confidences, O(1) per token, O(window)
// memory. The running sum is recomputed from the ring every time the ring
// wraps (amortised O(1)), so rounding error never accumulates past one
// window's worth of additions.
class GroupConfidenceWindow {
 public:
  // window >= 1 (policy_params validates it; smaller values are clamped).
  explicit GroupConfidenceWindow(int32_t window = kDeepConfDefaultWindow);

  void Add(double token_confidence);

  int32_t window() const { return static_cast<int32_t>(ring_.size()); }
  int64_t tokens() const { return tokens_; }
  // True once `window` tokens were seen: group confidences are defined.
  bool full() const { return tokens_ >= static_cast<int64_t>(ring_.size()); }

  // Mean of the last min(tokens, window) confidences; 0 before any token.
  double current_mean() const;
  // Lowest full-window mean so far; nullopt until the window is full.
  std::optional<double> lowest() const { return lowest_; }
  // Lowest group confidence of the trace as it stands: lowest() once the
  // window filled, else the mean of all its tokens; 0 for an empty trace.
  double LowestGroupConfidence() const;
  // Mean token confidence over the whole trace; 0 for an empty trace.
  double MeanTokenConfidence() const;

  // The online stop test: the window is full and its mean is below s.
  bool ShouldStop(double threshold) const { return full() && current_mean() < threshold; }

 private:
  std::vector<double> ring_;  // [window] the last `window` confidences
  size_t next_ = 0;           // ring slot the next confidence goes to
  int64_t tokens_ = 0;
  double window_sum_ = 0;  // sum of the ring's live entries
  double total_sum_ = 0;   // sum of every confidence (Kahan-compensated)
  double total_carry_ = 0;
  std::optional<double> lowest_;
};

// s = Percentile_percentile(warm-up lowest group confidences), numpy's
// linear method. InvalidArgument if the span is empty, any value is not
// finite, or percentile is outside (0, 100).
absl::StatusOr<double> DeepConfThreshold(std::span<const double> warmup_lowest_confidences,
                                         double percentile);

enum class TraceConfidenceKind {
  kLowestGroup,  // the online default (DeepConf-low / -high)
  kMeanToken,    // average trace confidence (offline baseline)
};

// A finished trace's vote weight.
double TraceConfidence(const GroupConfidenceWindow& trace, TraceConfidenceKind kind);

}  // namespace alignserve

#endif  // ALIGNSERVE_ALIGNMENT_DEEPCONF_H_
