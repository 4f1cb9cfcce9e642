// The argmax oracle and the hard rows shared by the CPU and CUDA ArgMax
// tests: planted ties (the lowest id must win), NaN (never wins), rows of
// -inf, all-NaN rows (id 0), single-column rows and vocabulary-sized rows.
#ifndef ALIGNSERVE_TESTS_KERNELS_ARGMAX_ROWS_H_
#define ALIGNSERVE_TESTS_KERNELS_ARGMAX_ROWS_H_

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace alignserve::testing {

// A plain scan: the first column holding the largest non-NaN value.
inline int32_t OracleArgmax(const float* row, int64_t cols) {
  int32_t best = -1;
  for (int64_t c = 0; c < cols; ++c) {
    if (std::isnan(row[c])) continue;
    if (best < 0 || row[c] > row[best]) best = static_cast<int32_t>(c);
  }
  return best < 0 ? 0 : best;
}

// rows x cols logits: random normals, with row r shaped by r % 6.
inline std::vector<float> HardArgmaxRows(int64_t rows, int64_t cols, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::uniform_int_distribution<int64_t> column(0, cols - 1);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x(rows * cols);
  for (float& v : x) v = normal(rng);
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x.data() + r * cols;
    switch (r % 6) {
      case 1:  // a tie for the maximum at several columns
        for (int i = 0; i < 4; ++i) row[column(rng)] = 50.0f;
        break;
      case 2:  // NaN sprinkled in, one of them at the first column
        row[0] = nan;
        for (int i = 0; i < 8; ++i) row[column(rng)] = nan;
        break;
      case 3:  // all -inf (a fully masked row): column 0
        for (int64_t c = 0; c < cols; ++c) row[c] = -inf;
        break;
      case 4:  // all NaN: column 0
        for (int64_t c = 0; c < cols; ++c) row[c] = nan;
        break;
      case 5:  // the maximum in the very last column
        row[cols - 1] = 1e30f;
        break;
      default:
        break;
    }
  }
  return x;
}

}  // namespace alignserve::testing

#endif  // ALIGNSERVE_TESTS_KERNELS_ARGMAX_ROWS_H_
