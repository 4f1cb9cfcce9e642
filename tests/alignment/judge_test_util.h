// The judge reward model of the alignment tests: the shared default model
// (SmolLM2-135M, CpuBackend) reading the default rubric, made once per test
// binary.
// Thread-safety: test thread only.
#ifndef ALIGNSERVE_TESTS_ALIGNMENT_JUDGE_TEST_UTIL_H_
#define ALIGNSERVE_TESTS_ALIGNMENT_JUDGE_TEST_UTIL_H_

#include <catch2/catch.hpp>
#include <memory>

#include "alignment/judge_reward_model.h"
#include "tests/engine/policy_test_util.h"

namespace alignserve::testing {

inline std::shared_ptr<const JudgeRewardModel> Judge() {
  static const auto judge = [] {
    auto j = JudgeRewardModel::Create(&TestTokenizer());
    REQUIRE(j.ok());
    return *j;
  }();
  return judge;
}

}  // namespace alignserve::testing

#endif  // ALIGNSERVE_TESTS_ALIGNMENT_JUDGE_TEST_UTIL_H_
