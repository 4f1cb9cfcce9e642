// LoopGuard against a brute-force detector: the same first detection token
// on random sequences with and without planted loops, also when hashes are
// forced to collide (a collision must never prune a healthy path).
#include "alignment/loop_guard.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <map>
#include <random>
#include <vector>

namespace alignserve {
namespace {

// 1-based index of the token after which some n-gram first occurs >= repeats
// times wholly inside the last `window` tokens; 0 if never.
int64_t BruteFirstLoop(const std::vector<int32_t>& tokens, const LoopGuardConfig& c) {
  for (size_t t = 1; t <= tokens.size(); ++t) {
    const size_t begin = t > static_cast<size_t>(c.window) ? t - c.window : 0;
    std::map<std::vector<int32_t>, int> counts;
    for (size_t s = begin; s + c.ngram <= t; ++s) {
      std::vector<int32_t> gram(tokens.begin() + s, tokens.begin() + s + c.ngram);
      if (++counts[gram] >= c.repeats) return static_cast<int64_t>(t);
    }
  }
  return 0;
}

int64_t GuardFirstLoop(const std::vector<int32_t>& tokens, const LoopGuardConfig& c) {
  absl::StatusOr<LoopGuard> guard = LoopGuard::Create(c);
  REQUIRE(guard.ok());
  for (size_t t = 0; t < tokens.size(); ++t) {
    if (guard->Add(tokens[t])) return static_cast<int64_t>(t + 1);
  }
  return 0;
}

std::vector<int32_t> RandomTokens(std::mt19937& gen, size_t length, int32_t vocab) {
  std::vector<int32_t> out(length);
  for (int32_t& t : out) t = static_cast<int32_t>(gen() % vocab);
  return out;
}

// A healthy prefix, then a block of `period` tokens repeated, then noise.
std::vector<int32_t> PlantedLoop(std::mt19937& gen, size_t prefix, size_t period, size_t copies) {
  std::vector<int32_t> out = RandomTokens(gen, prefix, 5000);
  const std::vector<int32_t> block = RandomTokens(gen, period, 5000);
  for (size_t i = 0; i < copies; ++i) out.insert(out.end(), block.begin(), block.end());
  const std::vector<int32_t> tail = RandomTokens(gen, 50, 5000);
  out.insert(out.end(), tail.begin(), tail.end());
  return out;
}

TEST_CASE("loop guard matches brute force on random and looping sequences", "[loop_guard]") {
  std::mt19937 gen(2024);
  for (int trial = 0; trial < 150; ++trial) {
    LoopGuardConfig c;
    c.ngram = 1 + static_cast<int32_t>(gen() % 6);
    c.window = c.ngram + static_cast<int32_t>(gen() % 60);
    c.repeats = 2 + static_cast<int32_t>(gen() % 3);
    std::vector<int32_t> tokens;
    switch (trial % 3) {
      case 0:  // tiny vocabulary: repeats happen by chance
        tokens = RandomTokens(gen, 300, 2 + static_cast<int32_t>(gen() % 3));
        break;
      case 1:  // large vocabulary: almost never a repeat
        tokens = RandomTokens(gen, 300, 100000);
        break;
      default:
        tokens = PlantedLoop(gen, gen() % 100, 1 + gen() % 20, 1 + gen() % 8);
    }
    INFO("trial " << trial << " ngram " << c.ngram << " window " << c.window << " repeats "
                  << c.repeats);
    REQUIRE(GuardFirstLoop(tokens, c) == BruteFirstLoop(tokens, c));
  }
}

TEST_CASE("forced hash collisions change nothing", "[loop_guard]") {
  std::mt19937 gen(77);
  for (uint64_t mask : {uint64_t{0}, uint64_t{1}, uint64_t{0xf}}) {
    for (int trial = 0; trial < 60; ++trial) {
      LoopGuardConfig c;
      c.ngram = 1 + static_cast<int32_t>(gen() % 5);
      c.window = c.ngram + static_cast<int32_t>(gen() % 40);
      c.repeats = 2 + static_cast<int32_t>(gen() % 3);
      c.hash_mask = mask;
      const std::vector<int32_t> tokens =
          trial % 2 ? RandomTokens(gen, 200, 1000000) : PlantedLoop(gen, 40, 1 + gen() % 9, 5);
      INFO("mask " << mask << " trial " << trial);
      REQUIRE(GuardFirstLoop(tokens, c) == BruteFirstLoop(tokens, c));
    }
  }
}

TEST_CASE("default guard catches a period-1 loop after ngram + 2 tokens", "[loop_guard]") {
  const LoopGuardConfig defaults;
  REQUIRE(defaults.ngram == 32);
  REQUIRE(defaults.window == 1024);
  REQUIRE(defaults.repeats == 3);
  // Three overlapping occurrences of the 32-gram "7 7 ... 7" need 34 tokens.
  REQUIRE(GuardFirstLoop(std::vector<int32_t>(100, 7), defaults) == 34);
  // A loop of period 200 is caught at its third copy's 32nd token.
  std::mt19937 gen(5);
  const std::vector<int32_t> block = RandomTokens(gen, 200, 50000);
  std::vector<int32_t> tokens;
  for (int i = 0; i < 4; ++i) tokens.insert(tokens.end(), block.begin(), block.end());
  REQUIRE(GuardFirstLoop(tokens, defaults) == 2 * 200 + 32);
}

TEST_CASE("a loop that spreads wider than the window is not a loop", "[loop_guard]") {
  LoopGuardConfig c;
  c.ngram = 4;
  c.window = 20;
  c.repeats = 3;
  std::mt19937 gen(6);
  const std::vector<int32_t> gram = {1, 2, 3, 4};
  std::vector<int32_t> tokens;
  for (int i = 0; i < 5; ++i) {  // occurrences 12 tokens apart: only two fit in 20
    tokens.insert(tokens.end(), gram.begin(), gram.end());
    const std::vector<int32_t> gap = RandomTokens(gen, 8, 1000);
    for (int32_t g : gap) tokens.push_back(g + 100);
  }
  REQUIRE(GuardFirstLoop(tokens, c) == 0);
  REQUIRE(BruteFirstLoop(tokens, c) == 0);
}

TEST_CASE("the verdict is sticky and tokens after it are ignored", "[loop_guard]") {
  LoopGuardConfig c;
  c.ngram = 2;
  c.window = 10;
  c.repeats = 2;
  absl::StatusOr<LoopGuard> guard = LoopGuard::Create(c);
  REQUIRE(guard.ok());
  for (int32_t t : {1, 2, 3}) REQUIRE_FALSE(guard->Add(t));
  REQUIRE_FALSE(guard->Add(1));
  REQUIRE(guard->Add(2));  // "1 2" twice
  REQUIRE(guard->looping());
  REQUIRE(guard->Add(99));
  REQUIRE(guard->tokens() == 5);
}

TEST_CASE("invalid loop guard configs are InvalidArgument", "[loop_guard]") {
  const auto code = [](int32_t ngram, int32_t window, int32_t repeats) {
    LoopGuardConfig c;
    c.ngram = ngram;
    c.window = window;
    c.repeats = repeats;
    return LoopGuard::Create(c).status().code();
  };
  REQUIRE(code(0, 10, 3) == absl::StatusCode::kInvalidArgument);
  REQUIRE(code(11, 10, 3) == absl::StatusCode::kInvalidArgument);
  REQUIRE(code(2, 0, 3) == absl::StatusCode::kInvalidArgument);
  REQUIRE(code(2, LoopGuard::kMaxWindow + 1, 3) == absl::StatusCode::kInvalidArgument);
  REQUIRE(code(2, 10, 1) == absl::StatusCode::kInvalidArgument);
  REQUIRE(code(10, 10, 2) == absl::StatusCode::kOk);
  REQUIRE(code(1, 1, 1) == absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace alignserve
