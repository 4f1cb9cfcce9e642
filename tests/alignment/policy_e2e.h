// End-to-end helpers for the alignment policies: one request alone on a
// fresh LlmEngine over the shared default model (SmolLM2-135M, CpuBackend),
// driven to completion, with the choices assembled as a client sees them.
// Drain checks that every KV block is free once the engine is idle (the
// prefix cache is off, so a freed block counts as free at once).
// Thread-safety: single-threaded test helpers.
#ifndef ALIGNSERVE_TESTS_ALIGNMENT_POLICY_E2E_H_
#define ALIGNSERVE_TESTS_ALIGNMENT_POLICY_E2E_H_

#include <catch2/catch.hpp>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/llm_engine.h"
#include "tests/engine/shared_default_model.h"

namespace alignserve::testing {

inline EngineConfig PolicyTestConfig() {
  EngineConfig c;
  c.scheduler.max_num_batched_tokens = 2048;
  c.scheduler.num_blocks = 256;
  c.scheduler.block_size = 16;
  c.scheduler.max_model_len = 512;
  c.scheduler.enable_prefix_caching = false;
  return c;
}

inline std::unique_ptr<LlmEngine> MakePolicyTestEngine() {
  auto engine = LlmEngine::Create(*SharedModel().loaded->model, SharedModel().loaded->text,
                                  PolicyTestConfig());
  REQUIRE(engine.ok());
  return std::move(*engine);
}

inline std::vector<int32_t> Encode(const std::string& text) {
  return SharedModel().loaded->text.tokenizer->Encode(text, false);
}

inline SamplingParams Greedy(int32_t max_tokens) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.ignore_eos = true;
  p.max_tokens = max_tokens;
  return p;
}

inline SamplingParams Seeded(int32_t max_tokens, uint64_t seed, float temperature = 0.9f) {
  SamplingParams p;
  p.temperature = temperature;
  p.ignore_eos = true;
  p.max_tokens = max_tokens;
  p.seed = seed;
  return p;
}

struct Choice {
  std::vector<int32_t> tokens;
  std::string text;
  FinishReason reason = FinishReason::kNone;
  std::vector<PositionLogprobs> logprobs;  // with SamplingParams::logprobs
};
struct Outcome {
  std::map<int, Choice> choices;  // by index
  std::vector<std::pair<std::string, double>> report;
  bool finished = false;
  int64_t steps = 0;                // engine steps until the request finished
  int32_t used_blocks_at_end = -1;  // KV blocks in use right after it finished
};

inline void Collect(const std::vector<RequestOutput>& outputs, Outcome& r) {
  for (const RequestOutput& o : outputs) {
    REQUIRE_FALSE(r.finished);
    Choice& c = r.choices[o.index];
    c.tokens.insert(c.tokens.end(), o.new_token_ids.begin(), o.new_token_ids.end());
    c.text += o.text;
    c.logprobs.insert(c.logprobs.end(), o.logprobs.begin(), o.logprobs.end());
    if (o.finish_reason != FinishReason::kNone) c.reason = o.finish_reason;
    if (o.finished) {
      r.finished = true;
      r.report = o.policy_report;
    }
  }
}

// One request alone on a fresh engine, run to completion.
inline Outcome RunAlone(const std::vector<int32_t>& prompt, const SamplingParams& sampling,
                        std::shared_ptr<DecodingPolicy> policy = nullptr) {
  auto engine = MakePolicyTestEngine();
  RequestParams params;
  params.sampling = sampling;
  params.policy = std::move(policy);
  REQUIRE(engine->AddRequest(1, prompt, std::move(params)).ok());
  Outcome out;
  while (engine->HasUnfinished()) {
    REQUIRE(out.steps < 4000);
    auto outputs = engine->Step();
    REQUIRE(outputs.ok());
    ++out.steps;
    Collect(*outputs, out);
    if (out.finished && out.used_blocks_at_end < 0) {
      const EngineStats s = engine->stats();
      out.used_blocks_at_end = s.num_total_blocks - s.num_free_blocks;
    }
  }
  REQUIRE(out.finished);
  const EngineStats stats = engine->stats();
  CHECK(stats.num_free_blocks == stats.num_total_blocks);
  return out;
}

}  // namespace alignserve::testing

#endif  // ALIGNSERVE_TESTS_ALIGNMENT_POLICY_E2E_H_
