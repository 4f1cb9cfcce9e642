// Early-stopping rules for self-consistency. The Beta rule's probability is
// checked against an exact integer binomial sum and a numerical integral of
// the Beta density; both rules stop at the sample their formula says.
#include "alignment/stopping_rules.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <vector>

namespace alignserve {
namespace {

using Answers = std::vector<std::optional<std::string>>;

// Exact I_{1/2}(a, b) = sum_{j=a}^{n} C(n, j) / 2^n, n = a + b - 1 <= 62,
// from Pascal's triangle in integers.
long double ExactBetaHalf(int a, int b) {
  const int n = a + b - 1;
  std::vector<uint64_t> row = {1};
  for (int i = 1; i <= n; ++i) {
    std::vector<uint64_t> next(i + 1, 1);
    for (int j = 1; j < i; ++j) next[j] = row[j - 1] + row[j];
    row = next;
  }
  uint64_t count = 0;
  for (int j = a; j <= n; ++j) count += row[j];
  return static_cast<long double>(count) / std::ldexp(1.0L, n);
}

// P(p > 1/2) for p ~ Beta(alpha, beta), by Simpson's rule on the density.
double IntegratedBetaUpper(int alpha, int beta) {
  const auto density = [&](double x) {
    if (x >= 1.0) return beta == 1 ? static_cast<double>(alpha) : 0.0;
    return std::exp(std::lgamma(alpha + beta) - std::lgamma(alpha) - std::lgamma(beta) +
                    (alpha - 1) * std::log(x) + (beta - 1) * std::log1p(-x));
  };
  const int steps = 20000;
  const double h = 0.5 / steps;
  double sum = density(0.5) + density(1.0);
  for (int i = 1; i < steps; ++i) sum += density(0.5 + i * h) * (i % 2 ? 4 : 2);
  return sum * h / 3;
}

TEST_CASE("incomplete beta at 1/2 equals the exact binomial sum", "[stopping_rules]") {
  for (int a = 1; a <= 40; ++a) {
    for (int b = 1; a + b - 1 <= 62; ++b) {
      INFO("a=" << a << " b=" << b);
      REQUIRE(std::abs(RegularizedIncompleteBetaHalf(a, b) -
                       static_cast<double>(ExactBetaHalf(a, b))) < 1e-13);
    }
  }
}

TEST_CASE("majority probability equals the integral of the Beta density", "[stopping_rules]") {
  for (auto [v1, v2] : {std::pair{1, 0}, {3, 1}, {5, 2}, {9, 4}, {12, 3}, {20, 15}}) {
    INFO("v1=" << v1 << " v2=" << v2);
    REQUIRE(BetaMajorityProbability(v1, v2) ==
            Approx(IntegratedBetaUpper(v1 + 1, v2 + 1)).margin(1e-8));
  }
}

TEST_CASE("majority probability is 1/2 on ties and monotone in the counts", "[stopping_rules]") {
  for (int v = 0; v < 30; ++v) REQUIRE(BetaMajorityProbability(v, v) == Approx(0.5).margin(1e-14));
  for (int v2 = 0; v2 < 20; ++v2) {
    for (int v1 = v2; v1 < 60; ++v1) {
      // Strict until the probability rounds to 1 in double.
      const double p = BetaMajorityProbability(v1, v2);
      REQUIRE(BetaMajorityProbability(v1 + 1, v2) >= p);
      if (p < 1 - 1e-12) REQUIRE(BetaMajorityProbability(v1 + 1, v2) > p);
      if (v2 + 1 <= v1 && p < 1 - 1e-12) REQUIRE(BetaMajorityProbability(v1, v2 + 1) < p);
    }
  }
  // Large counts: the normal approximation of Beta(100001, 99001) at 1/2.
  const double big = BetaMajorityProbability(100000, 99000);
  const double a = 100001, b = 99001;
  const double mean = a / (a + b);
  const double sd = std::sqrt(a * b / ((a + b) * (a + b) * (a + b + 1)));
  REQUIRE(big == Approx(0.5 * std::erfc(-(mean - 0.5) / sd / std::sqrt(2.0))).margin(1e-3));
  REQUIRE(big <= 1.0);
}

TEST_CASE("Beta rule stops unanimous sampling at the fourth sample", "[stopping_rules]") {
  // Three agreeing samples: P(3, 0) = 15/16 = 0.9375 < 0.95; four:
  // P(4, 0) = 31/32 = 0.96875 >= 0.95.
  REQUIRE(BetaMajorityProbability(3, 0) == Approx(15.0 / 16));
  REQUIRE(BetaMajorityProbability(4, 0) == Approx(31.0 / 32));
  AdaptiveConsistencyRule rule;
  Answers answers;
  int stopped_at = 0;
  while (stopped_at == 0 && answers.size() < 64) {
    answers.push_back("42");
    if (rule.ShouldStop(answers)) stopped_at = static_cast<int>(answers.size());
  }
  REQUIRE(stopped_at == 4);
  REQUIRE_FALSE(rule.ShouldStop(Answers{}));
  REQUIRE_FALSE(rule.ShouldStop(Answers{std::nullopt, std::nullopt}));
}

TEST_CASE("Beta rule decides from the exact probability on random sequences", "[stopping_rules]") {
  AdaptiveConsistencyRule rule(0.95);
  std::mt19937 gen(9);
  for (int trial = 0; trial < 200; ++trial) {
    Answers answers;
    std::map<std::string, int> counts;
    for (int i = 0; i < 40; ++i) {
      const uint32_t r = gen() % 10;
      std::optional<std::string> a;
      if (r < 6)
        a = "a";
      else if (r < 8)
        a = "b";
      else if (r < 9)
        a = "c";
      answers.push_back(a);
      if (a) ++counts[*a];
      int v1 = 0, v2 = 0;
      for (const auto& [k, c] : counts) {
        if (c > v1)
          v2 = v1, v1 = c;
        else if (c > v2)
          v2 = c;
      }
      const bool want = v1 > 0 && ExactBetaHalf(v2 + 1, v1 + 1) >= 0.95L;
      REQUIRE(rule.ShouldStop(answers) == want);
    }
  }
}

TEST_CASE("ESC stops when every answer of the latest window agrees", "[stopping_rules]") {
  EscRule esc(3);
  REQUIRE_FALSE(esc.ShouldStop(Answers{"a", "a"}));  // no complete window
  REQUIRE_FALSE(esc.ShouldStop(Answers{"a", "a", "b"}));
  REQUIRE(esc.ShouldStop(Answers{"a", "a", "a"}));
  REQUIRE(esc.ShouldStop(Answers{"a", "a", "b", "c", "c", "c"}));
  REQUIRE(esc.ShouldStop(Answers{"a", "a", "b", "c", "c", "c", "d"}));   // mid-window: same
  REQUIRE_FALSE(esc.ShouldStop(Answers{"c", "c", "c", "a", "a", "b"}));  // latest window only
  REQUIRE(esc.ShouldStop(Answers{"a", "a", "a", "a"}));
  // Windows do not slide: "b a a | a b b" never holds three equal in a window.
  REQUIRE_FALSE(esc.ShouldStop(Answers{"b", "a", "a", "a", "b", "b"}));
  // A missing answer never agrees, not even with other missing answers.
  REQUIRE_FALSE(esc.ShouldStop(Answers{"a", std::nullopt, "a"}));
  REQUIRE_FALSE(esc.ShouldStop(Answers{std::nullopt, std::nullopt, std::nullopt}));
  EscRule one(1);
  REQUIRE(one.ShouldStop(Answers{"x"}));
}

TEST_CASE("stopping rules are made by name", "[stopping_rules]") {
  REQUIRE((*MakeStoppingRule("none", 5))->name() == "none");
  REQUIRE((*MakeStoppingRule("esc", 5))->name() == "esc");
  REQUIRE((*MakeStoppingRule("beta", 5))->name() == "beta");
  REQUIRE_FALSE((*MakeStoppingRule("none", 5))->ShouldStop(Answers(64, "a")));
  REQUIRE((*MakeStoppingRule("esc", 2))->ShouldStop(Answers{"a", "a"}));
  REQUIRE(MakeStoppingRule("adaptive", 5).status().code() == absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace alignserve
