// End-to-end helpers for the alignment policies: one request alone on a
// fresh LlmEngine over the shared default model (SmolLM2-135M, CpuBackend),
// driven to completion, with the choices assembled as a client sees them
// (tests/engine/policy_test_util.h). RunAlone checks that every KV block is
// free once the engine is idle (the prefix cache is off, so a freed block
// counts as free at once).
// Thread-safety: single-threaded test helpers.
#ifndef ALIGNSERVE_TESTS_ALIGNMENT_POLICY_E2E_H_
#define ALIGNSERVE_TESTS_ALIGNMENT_POLICY_E2E_H_

#include <catch2/catch.hpp>
#include <memory>
#include <utility>
#include <vector>

#include "tests/engine/policy_test_util.h"

namespace alignserve::testing {

// A request's outcome plus how it ended on its engine.
struct Outcome : TestOutcome {
  int64_t steps = 0;                // engine steps until the request finished
  int32_t used_blocks_at_end = -1;  // KV blocks in use right after it finished
};

// One request alone on a fresh engine, run to completion.
inline Outcome RunAlone(const std::vector<int32_t>& prompt, const SamplingParams& sampling,
                        std::shared_ptr<DecodingPolicy> policy = nullptr) {
  auto engine = MakeTestEngine();
  RequestParams params;
  params.sampling = sampling;
  params.policy = std::move(policy);
  REQUIRE(engine->AddRequest(1, prompt, std::move(params)).ok());
  TestOutcomes outcomes;
  Outcome out;
  while (engine->HasUnfinished()) {
    REQUIRE(out.steps < 4000);
    auto outputs = engine->Step();
    REQUIRE(outputs.ok());
    ++out.steps;
    CollectOutputs(*outputs, out.steps, outcomes);
    if (outcomes[1].finished && out.used_blocks_at_end < 0) {
      out.used_blocks_at_end = UsedTestBlocks(*engine);
    }
  }
  static_cast<TestOutcome&>(out) = outcomes[1];
  REQUIRE(out.finished);
  CHECK(UsedTestBlocks(*engine) == 0);
  return out;
}

}  // namespace alignserve::testing

#endif  // ALIGNSERVE_TESTS_ALIGNMENT_POLICY_E2E_H_
