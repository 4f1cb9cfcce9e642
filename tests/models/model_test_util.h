// Helpers for model tests: run token sequences through a Model over a paged
// KV cache, as the engine would, and read JSON fixtures.
#ifndef ALIGNSERVE_TESTS_MODELS_MODEL_TEST_UTIL_H_
#define ALIGNSERVE_TESTS_MODELS_MODEL_TEST_UTIL_H_

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "models/model.h"

namespace alignserve::testing {

inline nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return nlohmann::json::parse(s.str());
}

// A block table of `count` distinct block ids drawn in shuffled order from
// [0, num_blocks), so tests exercise non-contiguous paging.
inline std::vector<int32_t> ShuffledBlocks(int count, int num_blocks, uint32_t seed) {
  std::vector<int32_t> all(num_blocks);
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), std::mt19937(seed));
  all.resize(count);
  return all;
}

// Runs `ids` as chunks of `chunk` tokens (the whole sequence when chunk <= 0)
// and returns the logits of every position, [ids.size() * logits_size].
inline absl::StatusOr<std::vector<float>> AllPositionLogits(Model& model, KvCache& cache,
                                                            const std::vector<int32_t>& ids,
                                                            const std::vector<int32_t>& blocks,
                                                            int chunk = 0) {
  const int width = model.config().logits_size();
  const int bs = cache.spec().block_size;
  std::vector<float> all;
  const int n = static_cast<int>(ids.size());
  if (chunk <= 0) chunk = n;
  for (int start = 0; start < n; start += chunk) {
    const int len = std::min(chunk, n - start);
    BatchLayout layout;
    layout.AddSequence(std::vector<int32_t>(ids.begin() + start, ids.begin() + start + len), start,
                       blocks, bs, false);
    for (int i = 0; i < len; ++i) layout.logits_indices.push_back(i);
    layout.Finish();
    ForwardOutput out;
    absl::Status s = model.Forward(layout, cache, false, out);
    if (!s.ok()) return s;
    all.insert(all.end(), out.logits.begin(), out.logits.begin() + len * width);
  }
  return all;
}

inline float MaxAbsDiff(const float* a, const float* b, size_t n) {
  float m = 0.0f;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

}  // namespace alignserve::testing

#endif  // ALIGNSERVE_TESTS_MODELS_MODEL_TEST_UTIL_H_
