#include "alignment/deepconf.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace alignserve {

double TokenConfidence(std::span<const float> top_logprobs) {
  double sum = 0;
  int count = 0;
  for (float lp : top_logprobs) {
    if (!std::isfinite(lp)) continue;
    sum += lp;
    ++count;
  }
  return count == 0 ? 0.0 : -sum / count;
}

GroupConfidenceWindow::GroupConfidenceWindow(int32_t window)
    : ring_(static_cast<size_t>(std::max(window, 1)), 0.0) {}

void GroupConfidenceWindow::Add(double token_confidence) {
  const double evicted = ring_[next_];  // 0 while the ring is still filling
  ring_[next_] = token_confidence;
  next_ = next_ + 1 == ring_.size() ? 0 : next_ + 1;
  ++tokens_;
  if (next_ == 0) {
    // The ring just wrapped: re-sum it exactly so drift stays bounded.
    window_sum_ = 0;
    for (double c : ring_) window_sum_ += c;
  } else {
    window_sum_ += token_confidence - evicted;
  }
  // Kahan summation for the whole-trace mean (traces run to 10^5 tokens).
  const double y = token_confidence - total_carry_;
  const double t = total_sum_ + y;
  total_carry_ = (t - total_sum_) - y;
  total_sum_ = t;
  if (full()) {
    const double mean = current_mean();
    if (!lowest_.has_value() || mean < *lowest_) lowest_ = mean;
  }
}

double GroupConfidenceWindow::current_mean() const {
  if (tokens_ == 0) return 0;
  const int64_t live = std::min<int64_t>(tokens_, static_cast<int64_t>(ring_.size()));
  return window_sum_ / static_cast<double>(live);
}

double GroupConfidenceWindow::LowestGroupConfidence() const {
  if (lowest_.has_value()) return *lowest_;
  return MeanTokenConfidence();  // shorter than the window: one group
}

double GroupConfidenceWindow::MeanTokenConfidence() const {
  return tokens_ == 0 ? 0.0 : total_sum_ / static_cast<double>(tokens_);
}

absl::StatusOr<double> DeepConfThreshold(std::span<const double> warmup_lowest_confidences,
                                         double percentile) {
  if (!(percentile > 0 && percentile < 100)) {
    return absl::InvalidArgumentError(
        absl::StrCat("deepconf percentile must be in (0, 100), got ", percentile));
  }
  if (warmup_lowest_confidences.empty()) {
    return absl::InvalidArgumentError("deepconf threshold needs at least one warm-up trace");
  }
  std::vector<double> sorted(warmup_lowest_confidences.begin(), warmup_lowest_confidences.end());
  for (double v : sorted) {
    if (!std::isfinite(v)) {
      return absl::InvalidArgumentError("deepconf warm-up confidence is not finite");
    }
  }
  std::sort(sorted.begin(), sorted.end());
  // numpy "linear": rank = p/100 * (n - 1), interpolate between neighbours.
  const double rank = percentile / 100.0 * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = rank - static_cast<double>(lo);
  return sorted[lo] + frac * (sorted[hi] - sorted[lo]);
}

double TraceConfidence(const GroupConfidenceWindow& trace, TraceConfidenceKind kind) {
  switch (kind) {
    case TraceConfidenceKind::kLowestGroup:
      return trace.LowestGroupConfidence();
    case TraceConfidenceKind::kMeanToken:
      return trace.MeanTokenConfidence();
  }
  return trace.LowestGroupConfidence();
}

}  // namespace alignserve
