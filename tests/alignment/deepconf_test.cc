// DeepConf arithmetic against hand-computed values and brute force: token
// confidence, the sliding window, the warm-up percentile threshold, and the
// online stop at the first full window whose mean falls below it.
#include "alignment/deepconf.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

namespace alignserve {
namespace {

// The reference implementation's compute_least_grouped + min.
double BruteLowest(const std::vector<double>& c, size_t window) {
  if (c.empty()) return 0;
  if (c.size() < window) return std::accumulate(c.begin(), c.end(), 0.0) / c.size();
  double lowest = INFINITY;
  for (size_t i = 0; i + window <= c.size(); ++i) {
    lowest = std::min(lowest, std::accumulate(c.begin() + i, c.begin() + i + window, 0.0) / window);
  }
  return lowest;
}

TEST_CASE("token confidence is minus the mean of the top-k logprobs", "[deepconf]") {
  const std::vector<float> top = {-0.1f, -2.0f, -3.5f};
  REQUIRE(TokenConfidence(top) == Approx((0.1 + 2.0 + 3.5) / 3).epsilon(1e-6));
  // A peaked distribution is more confident than a flat one.
  const std::vector<float> peaked = {-0.01f, -8.0f, -9.0f};
  const std::vector<float> flat = {-1.0f, -1.1f, -1.2f};
  REQUIRE(TokenConfidence(peaked) > TokenConfidence(flat));
  const float inf = std::numeric_limits<float>::infinity();
  REQUIRE(TokenConfidence(std::vector<float>{-1.0f, -inf, -3.0f}) == Approx(2.0));
  REQUIRE(TokenConfidence(std::vector<float>{}) == 0.0);
  REQUIRE(TokenConfidence(std::vector<float>{-inf}) == 0.0);
}

TEST_CASE("group window mean and lowest equal brute force at every token", "[deepconf]") {
  std::mt19937 gen(1);
  std::uniform_real_distribution<double> conf(0.5, 20.0);
  for (size_t window : {1u, 2u, 7u, 64u}) {
    GroupConfidenceWindow w(static_cast<int32_t>(window));
    std::vector<double> seen;
    for (int t = 0; t < 300; ++t) {
      seen.push_back(conf(gen));
      w.Add(seen.back());
      const size_t live = std::min(seen.size(), window);
      const double mean = std::accumulate(seen.end() - live, seen.end(), 0.0) / live;
      REQUIRE(w.current_mean() == Approx(mean).epsilon(1e-12));
      REQUIRE(w.full() == (seen.size() >= window));
      REQUIRE(w.lowest().has_value() == w.full());
      REQUIRE(w.LowestGroupConfidence() == Approx(BruteLowest(seen, window)).epsilon(1e-12));
      REQUIRE(w.MeanTokenConfidence() ==
              Approx(std::accumulate(seen.begin(), seen.end(), 0.0) / seen.size()).epsilon(1e-12));
    }
  }
}

TEST_CASE("a trace shorter than the window has one group: all its tokens", "[deepconf]") {
  GroupConfidenceWindow w(2048);
  REQUIRE(w.LowestGroupConfidence() == 0);
  for (double c : {3.0, 5.0, 10.0}) w.Add(c);
  REQUIRE_FALSE(w.full());
  REQUIRE_FALSE(w.lowest().has_value());
  REQUIRE(w.LowestGroupConfidence() == Approx(6.0));
  REQUIRE_FALSE(w.ShouldStop(100.0));  // never stopped before the window fills
  REQUIRE(TraceConfidence(w, TraceConfidenceKind::kLowestGroup) == Approx(6.0));
  REQUIRE(TraceConfidence(w, TraceConfidenceKind::kMeanToken) == Approx(6.0));
}

TEST_CASE("the running window sum does not drift over a 200k-token trace", "[deepconf]") {
  std::mt19937_64 gen(3);
  std::uniform_real_distribution<double> conf(0.0, 1e4);
  GroupConfidenceWindow w(2048);
  std::vector<double> seen;
  for (int t = 0; t < 200000 + 777; ++t) {
    seen.push_back(conf(gen));
    w.Add(seen.back());
  }
  const double exact = std::accumulate(seen.end() - 2048, seen.end(), 0.0L) / 2048;
  REQUIRE(std::abs(w.current_mean() - exact) <= 1e-12 * exact);
}

TEST_CASE("online stop fires at the first full window whose mean is below s", "[deepconf]") {
  // window 4, s = 4: means after tokens 4..7 are 5, 5, 4 (not below), 3.
  GroupConfidenceWindow w(4);
  const double confs[] = {5, 5, 5, 5, 5, 1, 1};
  int stopped_at = 0;
  for (int t = 0; t < 7; ++t) {
    w.Add(confs[t]);
    if (w.ShouldStop(4.0)) {
      stopped_at = t + 1;
      break;
    }
  }
  REQUIRE(stopped_at == 7);
  REQUIRE(*w.lowest() == Approx(3.0));

  // Against brute force on random traces.
  std::mt19937 gen(11);
  std::uniform_real_distribution<double> conf(0.0, 10.0);
  for (int trial = 0; trial < 100; ++trial) {
    const size_t window = 1 + gen() % 16;
    const double s = 4.0 + conf(gen) / 5;
    std::vector<double> c(200);
    for (double& x : c) x = conf(gen);
    int want = 0;
    for (size_t t = window; t <= c.size() && want == 0; ++t) {
      if (std::accumulate(c.begin() + (t - window), c.begin() + t, 0.0) / window < s) want = t;
    }
    GroupConfidenceWindow g(static_cast<int32_t>(window));
    int got = 0;
    for (size_t t = 0; t < c.size() && got == 0; ++t) {
      g.Add(c[t]);
      if (g.ShouldStop(s)) got = static_cast<int>(t + 1);
    }
    REQUIRE(got == want);
  }
}

TEST_CASE("threshold is numpy's linear percentile of warm-up lowest confidences", "[deepconf]") {
  const std::vector<double> v = {5, 1, 4, 2, 3};      // unsorted on purpose
  REQUIRE(*DeepConfThreshold(v, 90) == Approx(4.6));  // numpy.percentile(v, 90)
  REQUIRE(*DeepConfThreshold(v, 10) == Approx(1.4));
  REQUIRE(*DeepConfThreshold(v, 50) == Approx(3.0));
  REQUIRE(*DeepConfThreshold(std::vector<double>{7.5}, 90) == 7.5);
  // 16 warm-up traces (the default n_init): rank 0.9 * 15 = 13.5.
  std::vector<double> sixteen(16);
  std::iota(sixteen.begin(), sixteen.end(), 10.0);  // 10..25
  REQUIRE(*DeepConfThreshold(sixteen, 90) == Approx(23.5));
}

TEST_CASE("percentile 90 keeps the top 10%, percentile 10 the top 90%", "[deepconf]") {
  std::vector<double> warmup(100);
  std::iota(warmup.begin(), warmup.end(), 1.0);  // 1..100
  std::shuffle(warmup.begin(), warmup.end(), std::mt19937(5));
  const auto kept = [&](double p) {
    const double s = *DeepConfThreshold(warmup, p);
    return std::count_if(warmup.begin(), warmup.end(), [&](double c) { return c >= s; });
  };
  REQUIRE(kept(90) == 10);
  REQUIRE(kept(10) == 90);
}

TEST_CASE("threshold rejects bad input", "[deepconf]") {
  const std::vector<double> v = {1, 2};
  for (double p : {0.0, 100.0, -5.0, 150.0, std::nan("")}) {
    REQUIRE(DeepConfThreshold(v, p).status().code() == absl::StatusCode::kInvalidArgument);
  }
  REQUIRE(DeepConfThreshold(std::vector<double>{}, 90).status().code() ==
          absl::StatusCode::kInvalidArgument);
  REQUIRE(DeepConfThreshold(std::vector<double>{1, std::nan("")}, 90).status().code() ==
          absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace alignserve
