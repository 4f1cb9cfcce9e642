#include "engine/logits_processors.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <numeric>

#include "kernels/cpu/exp_approx.h"

namespace alignserve {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

bool InRange(int32_t id, size_t vocab) { return id >= 0 && static_cast<size_t>(id) < vocab; }

// Softmax weights exp(x - max) of a row, in double; -inf gives 0.
std::vector<double> Weights(std::span<const float> logits, double* total) {
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  std::vector<double> w(logits.size());
  *total = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) {
    w[i] = std::isinf(logits[i]) && logits[i] < 0 ? 0.0 : std::exp(double{logits[i]} - max_logit);
    *total += w[i];
  }
  return w;
}

// exp(-|x|) (the callers pass x <= 0), clamped without float compares or
// float-to-int conversions: under GCC's default -ftrapping-math either one
// stops the loops that call this from vectorizing. Within 1.4 ulp of exp on
// [-87.3, 0]; below that, and for -inf and NaN, exactly 0.
inline float ExpNonPositive(float x) {
  constexpr int32_t kLimit = std::bit_cast<int32_t>(87.3f);
  const int32_t magnitude = std::bit_cast<int32_t>(x) & 0x7FFFFFFF;
  const int32_t keep = ~((kLimit - magnitude) >> 31);  // all ones iff |x| <= 87.3
  const float clamped = -std::bit_cast<float>(magnitude < kLimit ? magnitude : kLimit);
  return std::bit_cast<float>(std::bit_cast<int32_t>(ExpInRange(clamped)) & keep);
}

double SumBlock(const float* values, size_t n) {
  // Eight independent chains keep the adders busy; each block sum is small
  // enough for float, the total is kept in double.
  float lanes[8] = {};
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) lanes[j] += values[i + j];
  }
  double total = 0.0;
  for (; i < n; ++i) total += values[i];
  for (float lane : lanes) total += lane;
  return total;
}

constexpr size_t kSumBlock = kExpBlock;

}  // namespace

float RowMax(std::span<const float> x) {
  float lanes[8];
  std::fill(lanes, lanes + 8, -std::numeric_limits<float>::infinity());
  size_t i = 0;
  for (; i + 8 <= x.size(); i += 8) {
    for (int j = 0; j < 8; ++j) lanes[j] = x[i + j] > lanes[j] ? x[i + j] : lanes[j];
  }
  float m = -std::numeric_limits<float>::infinity();
  for (; i < x.size(); ++i) m = x[i] > m ? x[i] : m;
  for (float lane : lanes) m = lane > m ? lane : m;
  return m;
}

double ExpShifted(std::span<const float> x, float shift, float scale, std::span<float> out,
                  std::vector<double>* block_sums) {
  const size_t n = x.size();
  const float* in = x.data();
  float* o = out.data();
  for (size_t i = 0; i < n; ++i) o[i] = ExpNonPositive((in[i] - shift) * scale);
  if (block_sums) block_sums->clear();
  double total = 0.0;
  for (size_t i = 0; i < n; i += kSumBlock) {
    const double block = SumBlock(o + i, std::min(kSumBlock, n - i));
    if (block_sums) block_sums->push_back(block);
    total += block;
  }
  return total;
}

double SumExpShifted(std::span<const float> x, float shift, float scale) {
  float buffer[kSumBlock];
  double total = 0.0;
  for (size_t i = 0; i < x.size(); i += kSumBlock) {
    const size_t n = std::min(kSumBlock, x.size() - i);
    for (size_t j = 0; j < n; ++j) buffer[j] = ExpNonPositive((x[i + j] - shift) * scale);
    total += SumBlock(buffer, n);
  }
  return total;
}

void TokenCounts::Count(int vocab_size, std::span<const int32_t> a, std::span<const int32_t> b) {
  if (stamp_.size() != static_cast<size_t>(vocab_size)) {
    stamp_.assign(vocab_size, 0);
    count_.assign(vocab_size, 0);
    epoch_ = 0;
  }
  if (++epoch_ == 0) {  // wrapped: old stamps could alias the new epoch
    std::fill(stamp_.begin(), stamp_.end(), 0);
    epoch_ = 1;
  }
  distinct_.clear();
  for (std::span<const int32_t> ids : {a, b}) {
    for (int32_t id : ids) {
      if (!InRange(id, stamp_.size())) continue;
      if (stamp_[id] != epoch_) {
        stamp_[id] = epoch_;
        count_[id] = 0;
        distinct_.push_back(id);
      }
      ++count_[id];
    }
  }
}

void ApplyLogitBias(std::span<float> logits, const std::map<int32_t, float>& bias) {
  for (const auto& [id, value] : bias) {
    if (InRange(id, logits.size())) logits[id] += value;
  }
}

void MaskTokens(std::span<float> logits, std::span<const int32_t> ids) {
  for (int32_t id : ids) {
    if (InRange(id, logits.size())) logits[id] = kNegInf;
  }
}

void ApplyRepetitionPenalty(std::span<float> logits, std::span<const int32_t> prompt,
                            std::span<const int32_t> output, float penalty, TokenCounts& scratch) {
  if (penalty == 1.0f) return;
  scratch.Count(static_cast<int>(logits.size()), prompt, output);
  for (int32_t id : scratch.distinct()) {
    float& x = logits[id];
    x = x > 0.0f ? x / penalty : x * penalty;
  }
}

void ApplyPresenceFrequencyPenalties(std::span<float> logits, std::span<const int32_t> output,
                                     float presence, float frequency, TokenCounts& scratch) {
  if (presence == 0.0f && frequency == 0.0f) return;
  scratch.Count(static_cast<int>(logits.size()), output);
  for (int32_t id : scratch.distinct()) {
    logits[id] -= frequency * static_cast<float>(scratch.count(id)) + presence;
  }
}

void ApplyTemperature(std::span<float> logits, float temperature) {
  for (float& x : logits) x /= temperature;
}

void ApplyTopK(std::span<float> logits, int top_k) {
  if (top_k <= 0 || static_cast<size_t>(top_k) >= logits.size()) return;
  std::vector<float> sorted(logits.begin(), logits.end());
  std::nth_element(sorted.begin(), sorted.begin() + (top_k - 1), sorted.end(),
                   std::greater<float>());
  const float kth = sorted[top_k - 1];
  for (float& x : logits) {
    if (x < kth) x = kNegInf;
  }
}

void ApplyTopP(std::span<float> logits, float top_p) {
  if (top_p >= 1.0f) return;
  double total = 0.0;
  const std::vector<double> w = Weights(logits, &total);
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  double before = 0.0;  // mass of the tokens ranked above the current one
  for (int32_t id : order) {
    if (before >= top_p * total) logits[id] = kNegInf;
    before += w[id];
  }
}

void ApplyMinP(std::span<float> logits, float min_p) {
  if (min_p <= 0.0f) return;
  double total = 0.0;
  const std::vector<double> w = Weights(logits, &total);
  // Weights are relative to the top token (weight 1), so p_i < min_p * p_top
  // is w_i < min_p whatever the normalization.
  for (size_t i = 0; i < logits.size(); ++i) {
    if (w[i] < min_p) logits[i] = kNegInf;
  }
}

}  // namespace alignserve
