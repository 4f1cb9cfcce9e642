// Helpers for tests that drive policy requests through LlmEngine on the
// default model (SmolLM2-135M, CpuBackend): a small engine, the outputs of a
// run gathered per request and choice, block accounting, and an oracle for
// next-token log-probabilities that goes through the plain prompt_logprobs
// path instead of any policy hook.
// Thread-safety: test thread only.
#ifndef ALIGNSERVE_TESTS_ENGINE_POLICY_TEST_UTIL_H_
#define ALIGNSERVE_TESTS_ENGINE_POLICY_TEST_UTIL_H_

#include <catch2/catch.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/llm_engine.h"
#include "tests/engine/shared_default_model.h"

namespace alignserve::testing {

inline constexpr int32_t kTestBlock = 16;

inline EngineConfig PolicyTestConfig(int32_t num_blocks = 256, bool prefix_caching = false) {
  EngineConfig c;
  c.scheduler.max_num_batched_tokens = 2048;
  c.scheduler.num_blocks = num_blocks;
  c.scheduler.block_size = kTestBlock;
  c.scheduler.max_model_len = 512;
  c.scheduler.enable_prefix_caching = prefix_caching;
  return c;
}

inline std::unique_ptr<LlmEngine> MakeTestEngine(const EngineConfig& config = PolicyTestConfig()) {
  auto engine = LlmEngine::Create(*SharedModel().loaded->model, SharedModel().loaded->text, config);
  REQUIRE(engine.ok());
  return std::move(*engine);
}

inline int32_t SharedModelVocab() { return SharedModel().loaded->model->config().vocab_size; }
inline const Tokenizer& TestTokenizer() { return *SharedModel().loaded->text.tokenizer; }
inline std::vector<int32_t> TestEncode(const std::string& text) {
  return TestTokenizer().Encode(text, false);
}

inline SamplingParams GreedyParams(int32_t max_tokens) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.ignore_eos = true;
  p.max_tokens = max_tokens;
  return p;
}

inline SamplingParams SeededParams(int32_t max_tokens, uint64_t seed, float temperature = 0.9f,
                                   float top_p = 0.95f) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_p = top_p;
  p.ignore_eos = true;
  p.max_tokens = max_tokens;
  p.seed = seed;
  return p;
}

// One choice as a client assembles it.
struct TestChoice {
  std::vector<int32_t> tokens;
  std::string text;
  FinishReason reason = FinishReason::kNone;
  std::vector<PositionLogprobs> logprobs;  // with SamplingParams::logprobs
};
struct TestOutcome {
  std::map<int, TestChoice> choices;  // by index
  std::vector<std::pair<std::string, double>> report;
  std::vector<PositionLogprobs> prompt_logprobs;
  int64_t finished_at_step = -1;
  bool finished = false;
};
using TestOutcomes = std::map<int64_t, TestOutcome>;

// Internal requests (the Score hook's, negative ids) never reach clients.
inline void CollectOutputs(const std::vector<RequestOutput>& outputs, int64_t step,
                           TestOutcomes& out) {
  for (const RequestOutput& o : outputs) {
    REQUIRE(o.request_id >= 0);
    TestOutcome& r = out[o.request_id];
    REQUIRE_FALSE(r.finished);
    TestChoice& c = r.choices[o.index];
    c.tokens.insert(c.tokens.end(), o.new_token_ids.begin(), o.new_token_ids.end());
    c.text += o.text;
    c.logprobs.insert(c.logprobs.end(), o.logprobs.begin(), o.logprobs.end());
    r.prompt_logprobs.insert(r.prompt_logprobs.end(), o.prompt_logprobs.begin(),
                             o.prompt_logprobs.end());
    if (o.finish_reason != FinishReason::kNone) c.reason = o.finish_reason;
    if (o.finished) {
      r.finished = true;
      r.finished_at_step = step;
      r.report = o.policy_report;
    }
  }
}

inline int32_t UsedTestBlocks(const LlmEngine& engine) {
  const EngineStats s = engine.stats();
  return s.num_total_blocks - s.num_free_blocks;
}

// Steps until nothing is left; every block must then be free.
inline TestOutcomes DrainEngine(LlmEngine& engine, TestOutcomes out = {}) {
  for (int step = 0; engine.HasUnfinished(); ++step) {
    REQUIRE(step < 2000);
    auto outputs = engine.Step();
    INFO(outputs.status().ToString());
    REQUIRE(outputs.ok());
    CollectOutputs(*outputs, engine.stats().num_steps, out);
  }
  CHECK(UsedTestBlocks(engine) == 0);
  CHECK(engine.stats().num_unfinished_requests == 0);
  return out;
}

// Oracle: log p(token | prompt) from the plain prompt_logprobs path (a
// request whose prompt is prompt + token), on a fresh engine.
inline std::vector<float> PromptLogprobsOracle(const std::vector<int32_t>& prompt,
                                               const std::vector<int32_t>& tokens) {
  auto engine = MakeTestEngine();
  int64_t id = 0;
  for (const int32_t t : tokens) {
    std::vector<int32_t> extended = prompt;
    extended.push_back(t);
    SamplingParams p = GreedyParams(1);
    p.prompt_logprobs = 0;
    REQUIRE(engine->AddRequest(id++, extended, p).ok());
  }
  const TestOutcomes out = DrainEngine(*engine);
  std::vector<float> logprobs;
  for (int64_t i = 0; i < id; ++i) {
    REQUIRE(out.at(i).prompt_logprobs.size() == prompt.size());
    logprobs.push_back(out.at(i).prompt_logprobs.back().logprob);
  }
  return logprobs;
}

}  // namespace alignserve::testing

#endif  // ALIGNSERVE_TESTS_ENGINE_POLICY_TEST_UTIL_H_
