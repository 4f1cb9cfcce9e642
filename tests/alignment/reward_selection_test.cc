// Best-of-n and soft best-of-n selection: argmax with the tie and NaN rules,
// exact softmax probabilities, empirical frequencies over 10,000 seeds
// within a chi-square bound, and the lambda -> 0 limit.
#include "alignment/reward_selection.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <vector>

namespace alignserve {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

TEST_CASE("best-of-n takes the highest reward, lowest index on ties", "[reward_selection]") {
  REQUIRE(BestOfN(std::vector<double>{0.1, 0.7, -2.0, 0.3}) == 1u);
  REQUIRE(BestOfN(std::vector<double>{0.5, 0.9, 0.9, 0.1}) == 1u);
  REQUIRE(BestOfN(std::vector<double>{-kInf, -kInf}) == 0u);
  REQUIRE(BestOfN(std::vector<double>{1.0, kInf, 2.0}) == 1u);
  REQUIRE_FALSE(BestOfN(std::vector<double>{}).has_value());
}

TEST_CASE("a NaN reward never wins best-of-n", "[reward_selection]") {
  REQUIRE(BestOfN(std::vector<double>{kNaN, -5.0}) == 1u);
  REQUIRE(BestOfN(std::vector<double>{-5.0, kNaN, -6.0}) == 0u);
  REQUIRE_FALSE(BestOfN(std::vector<double>{kNaN, kNaN}).has_value());
}

TEST_CASE("soft best-of-n probabilities are the softmax of r / lambda", "[reward_selection]") {
  const std::vector<double> r = {1.0, 2.0, 0.5, 1.5};
  const double lambda = 0.5;
  double z = 0;
  for (double x : r) z += std::exp(x / lambda);
  const std::vector<double> p = SoftBestOfNProbabilities(r, lambda);
  for (size_t i = 0; i < r.size(); ++i) REQUIRE(p[i] == Approx(std::exp(r[i] / lambda) / z));
  // Rewards far beyond exp's range stay finite: only differences matter.
  const std::vector<double> huge = {1000.0, 1001.0};
  const std::vector<double> ph = SoftBestOfNProbabilities(huge, 1.0);
  REQUIRE(ph[1] == Approx(1.0 / (1.0 + std::exp(-1.0))));
  REQUIRE(ph[0] + ph[1] == Approx(1.0));
}

TEST_CASE("soft best-of-n gives NaN rewards probability 0", "[reward_selection]") {
  const std::vector<double> p = SoftBestOfNProbabilities(std::vector<double>{kNaN, 0.0, 0.0}, 1.0);
  REQUIRE(p[0] == 0);
  REQUIRE(p[1] == Approx(0.5));
  REQUIRE(p[2] == Approx(0.5));
  const std::vector<double> none = SoftBestOfNProbabilities(std::vector<double>{kNaN}, 1.0);
  REQUIRE(none[0] == 0);
  REQUIRE_FALSE(SoftBestOfN(std::vector<double>{kNaN}, 1.0, 1).has_value());
  REQUIRE_FALSE(SoftBestOfN(std::vector<double>{}, 1.0, 1).has_value());
  const std::vector<double> inf = SoftBestOfNProbabilities(std::vector<double>{kInf, 3.0, kInf}, 1);
  REQUIRE(inf == std::vector<double>{0.5, 0.0, 0.5});
}

TEST_CASE("soft best-of-n frequencies over 10,000 seeds match exp(r / lambda)",
          "[reward_selection]") {
  const std::vector<double> r = {1.0, 2.0, 0.5, 1.5, -1.0};
  const double lambda = 0.7;
  const std::vector<double> p = SoftBestOfNProbabilities(r, lambda);
  const int draws = 10000;
  std::vector<int> counts(r.size(), 0);
  for (int seed = 0; seed < draws; ++seed) {
    const std::optional<size_t> i = SoftBestOfN(r, lambda, static_cast<uint64_t>(seed));
    REQUIRE(i.has_value());
    ++counts[*i];
  }
  double chi2 = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    const double expected = draws * p[i];
    chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  // 4 degrees of freedom: P(chi2 > 18.47) = 0.001.
  INFO("chi2 = " << chi2);
  REQUIRE(chi2 < 18.47);
}

TEST_CASE("soft best-of-n is reproducible for a seed", "[reward_selection]") {
  const std::vector<double> r = {0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7};
  for (uint64_t seed = 0; seed < 50; ++seed) {
    REQUIRE(SoftBestOfN(r, 0.3, seed) == SoftBestOfN(r, 0.3, seed));
  }
  // Different seeds do reach different samples.
  std::vector<bool> seen(r.size(), false);
  for (uint64_t seed = 0; seed < 200; ++seed) seen[*SoftBestOfN(r, 1.0, seed)] = true;
  REQUIRE(std::count(seen.begin(), seen.end(), true) == static_cast<long>(r.size()));
}

TEST_CASE("soft best-of-n with lambda -> 0 is best-of-n", "[reward_selection]") {
  const std::vector<double> r = {0.3, 0.9, 0.9, kNaN, 0.2};
  for (double lambda : {0.0, 1e-7, 9.99e-7, -1.0, kNaN}) {
    const std::vector<double> p = SoftBestOfNProbabilities(r, lambda);
    REQUIRE(p == std::vector<double>{0, 1, 0, 0, 0});
    for (uint64_t seed = 0; seed < 100; ++seed) REQUIRE(SoftBestOfN(r, lambda, seed) == BestOfN(r));
  }
  // Just above the cut-off it is a (very sharp) softmax: the tie splits.
  const std::vector<double> p = SoftBestOfNProbabilities(r, 1e-6);
  REQUIRE(p[1] == Approx(0.5));
  REQUIRE(p[2] == Approx(0.5));
  REQUIRE(p[0] == 0);
}

}  // namespace
}  // namespace alignserve
