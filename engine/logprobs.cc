#include "engine/logprobs.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/logits_processors.h"

namespace alignserve {

double LogSumExp(std::span<const float> row) {
  const float max_value = RowMax(row);
  if (!std::isfinite(max_value)) return max_value;
  // Float exp of differences <= 0 is exact enough (2 ulp) and vectorizes;
  // the sum is kept in double so 49k small terms do not drift.
  return double{max_value} + std::log(SumExpShifted(row, max_value, 1.0f));
}

void TopLogprobs(std::span<const float> row, double log_norm, int n,
                 std::vector<TokenLogprob>* out) {
  out->clear();
  n = std::min<int>(n, static_cast<int>(row.size()));
  if (n <= 0) return;
  // Window of the best n seen so far, sorted by value descending; ids arrive
  // ascending, so an equal value never displaces an earlier id.
  std::vector<TokenLogprob>& window = *out;
  for (size_t i = 0; i < row.size(); ++i) {
    const float x = row[i];
    if (static_cast<int>(window.size()) == n) {
      if (!(x > window.back().logprob)) continue;
      window.pop_back();
    }
    auto pos =
        std::upper_bound(window.begin(), window.end(), x,
                         [](float value, const TokenLogprob& e) { return value > e.logprob; });
    window.insert(pos, {static_cast<int32_t>(i), x});
  }
  for (TokenLogprob& e : window) e.logprob = static_cast<float>(e.logprob - log_norm);
}

void ComputePositionLogprobs(std::span<const float> row, int32_t token, int n,
                             PositionLogprobs* out) {
  const double log_norm = LogSumExp(row);
  const float chosen = row[token];
  out->logprob = static_cast<float>(chosen - log_norm);
  int32_t higher = 0;
  for (float x : row) higher += x > chosen;
  out->rank = higher + 1;
  TopLogprobs(row, log_norm, n, &out->top);
}

}  // namespace alignserve
