// Majority and weighted votes: hand-counted tallies, skipped entries, and the
// earliest-first tie rule; a brute-force recount on random ballots.
#include "alignment/vote.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <map>
#include <random>

namespace alignserve {
namespace {

using Answers = std::vector<std::optional<std::string>>;

TEST_CASE("majority vote counts answers and skips missing ones", "[vote]") {
  const Answers answers = {"7", std::nullopt, "5", "7", "5", "7", std::nullopt};
  const VoteResult r = MajorityVote(answers);
  REQUIRE(r.winner == "7");
  REQUIRE(r.skipped == 2);
  REQUIRE(r.total_weight == 5);
  REQUIRE(r.share == Approx(3.0 / 5.0));
  REQUIRE(r.tallies.size() == 2);
  REQUIRE(r.tallies[0].answer == "7");
  REQUIRE(r.tallies[0].count == 3);
  REQUIRE(r.tallies[0].first_index == 0);
  REQUIRE(r.tallies[1].answer == "5");
  REQUIRE(r.tallies[1].count == 2);
  REQUIRE(r.tallies[1].first_index == 2);
}

TEST_CASE("majority vote ties go to the earliest first occurrence", "[vote]") {
  REQUIRE(MajorityVote(Answers{"b", "a", "a", "b"}).winner == "b");
  REQUIRE(MajorityVote(Answers{std::nullopt, "a", "b", "b", "a"}).winner == "a");
  REQUIRE(MajorityVote(Answers{"x", "y", "z"}).winner == "x");
}

TEST_CASE("a vote with no answers has no winner", "[vote]") {
  const VoteResult empty = MajorityVote(Answers{});
  REQUIRE_FALSE(empty.winner.has_value());
  REQUIRE(empty.share == 0);
  const VoteResult none = MajorityVote(Answers{std::nullopt, std::nullopt});
  REQUIRE_FALSE(none.winner.has_value());
  REQUIRE(none.skipped == 2);
}

TEST_CASE("weighted vote sums weights: confident minority beats unsure majority", "[vote]") {
  const std::vector<VoteEntry> entries = {
      {"12", 0.5}, {"12", 0.5}, {"12", 0.5}, {"15", 2.0}, {std::nullopt, 100.0}};
  const VoteResult r = WeightedMajorityVote(entries);
  REQUIRE(r.winner == "15");
  REQUIRE(r.total_weight == Approx(3.5));
  REQUIRE(r.share == Approx(2.0 / 3.5));
  REQUIRE(r.skipped == 1);
  REQUIRE(r.tallies[0].answer == "12");
  REQUIRE(r.tallies[0].weight == Approx(1.5));
  REQUIRE(r.tallies[0].count == 3);
}

TEST_CASE("weighted vote skips NaN, infinite and negative weights", "[vote]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<VoteEntry> entries = {{"a", nan}, {"b", inf}, {"c", -1.0}, {"d", 0.25}};
  const VoteResult r = WeightedMajorityVote(entries);
  REQUIRE(r.winner == "d");
  REQUIRE(r.skipped == 3);
  REQUIRE(r.share == 1.0);
  REQUIRE(r.tallies.size() == 1);
}

TEST_CASE("weighted vote ties and all-zero weights go to the earliest answer", "[vote]") {
  REQUIRE(WeightedMajorityVote(std::vector<VoteEntry>{{"p", 1.0}, {"q", 0.5}, {"q", 0.5}}).winner ==
          "p");
  const VoteResult zero = WeightedMajorityVote(std::vector<VoteEntry>{{"p", 0.0}, {"q", 0.0}});
  REQUIRE(zero.winner == "p");
  REQUIRE(zero.share == 0);
}

TEST_CASE("weighted vote equals a brute-force recount on random ballots", "[vote]") {
  std::mt19937 gen(7);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<VoteEntry> entries;
    const int n = 1 + static_cast<int>(gen() % 30);
    for (int i = 0; i < n; ++i) {
      VoteEntry e;
      if (gen() % 5 != 0) e.answer = std::string(1, static_cast<char>('a' + gen() % 4));
      e.weight = static_cast<double>(gen() % 8) / 4.0;  // exact in binary: ties are real
      entries.push_back(e);
    }
    // Brute force: total per answer, winner = max weight, earliest on ties.
    std::map<std::string, double> total;
    std::map<std::string, int> first;
    for (int i = 0; i < n; ++i) {
      if (!entries[i].answer) continue;
      total[*entries[i].answer] += entries[i].weight;
      first.try_emplace(*entries[i].answer, i);
    }
    std::optional<std::string> want;
    for (const auto& [answer, weight] : total) {
      if (!want || weight > total[*want] ||
          (weight == total[*want] && first[answer] < first[*want])) {
        want = answer;
      }
    }
    const VoteResult r = WeightedMajorityVote(entries);
    REQUIRE(r.winner == want);
    REQUIRE(r.tallies.size() == total.size());
  }
}

}  // namespace
}  // namespace alignserve
