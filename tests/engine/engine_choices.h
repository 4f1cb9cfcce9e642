// Test helpers shared by the engine tests that compare two engines' outputs
// choice by choice (device against host sampling, on the CPU stand-in and
// on CUDA): run an engine to completion collecting each choice's tokens,
// logprobs and finish reason, and compare two choices' logprobs.
#ifndef ALIGNSERVE_TESTS_ENGINE_ENGINE_CHOICES_H_
#define ALIGNSERVE_TESTS_ENGINE_ENGINE_CHOICES_H_

#include <catch2/catch.hpp>
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "engine/llm_engine.h"
#include "engine/logprobs.h"

namespace alignserve::testing {

struct ChoiceOutput {
  std::vector<int32_t> ids;
  std::vector<PositionLogprobs> logprobs;
  FinishReason reason = FinishReason::kNone;
};
using ChoiceKey = std::pair<int64_t, int>;  // request id, choice index

// Steps `engine` until no request is left.
inline std::map<ChoiceKey, ChoiceOutput> RunToCompletion(LlmEngine& engine) {
  std::map<ChoiceKey, ChoiceOutput> out;
  while (engine.HasUnfinished()) {
    auto step = engine.Step();
    REQUIRE(step.ok());
    for (const RequestOutput& o : *step) {
      ChoiceOutput& c = out[{o.request_id, o.index}];
      c.ids.insert(c.ids.end(), o.new_token_ids.begin(), o.new_token_ids.end());
      c.logprobs.insert(c.logprobs.end(), o.logprobs.begin(), o.logprobs.end());
      if (o.finish_reason != FinishReason::kNone) c.reason = o.finish_reason;
    }
  }
  return out;
}

// Same tokens, ranks and top lists; logprobs within `margin` (0: equal).
inline void CheckSameLogprobs(const std::vector<PositionLogprobs>& got,
                              const std::vector<PositionLogprobs>& want, double margin) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("position " << i);
    CHECK(got[i].logprob == Approx(want[i].logprob).margin(margin).epsilon(0));
    CHECK(got[i].rank == want[i].rank);
    REQUIRE(got[i].top.size() == want[i].top.size());
    for (size_t j = 0; j < want[i].top.size(); ++j) {
      CHECK(got[i].top[j].token == want[i].top[j].token);
      CHECK(got[i].top[j].logprob == Approx(want[i].top[j].logprob).margin(margin).epsilon(0));
    }
  }
}

}  // namespace alignserve::testing

#endif  // ALIGNSERVE_TESTS_ENGINE_ENGINE_CHOICES_H_
