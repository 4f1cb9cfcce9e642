// Logits processors and logprobs against Hugging Face transformers: each
// fixture row (tests/data/engine/sampler_fixtures.json, written by
// tests/reference/make_sampler_fixtures.py) went through
// RepetitionPenaltyLogitsProcessor, OpenAI's presence/frequency formula,
// TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper,
// MinPLogitsWarper and torch.log_softmax.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/logits_processors.h"
#include "engine/logprobs.h"
#include "tests/test_paths.h"

namespace alignserve {
namespace {

constexpr float kTolerance = 1e-5f;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

nlohmann::json LoadFixture() {
  std::ifstream in(testing::SourcePath("tests/data/engine/sampler_fixtures.json"));
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  REQUIRE(!j.is_discarded());
  return j;
}

std::vector<float> Row(const nlohmann::json& values) {
  std::vector<float> row;
  for (const nlohmann::json& v : values) {
    row.push_back(v.is_null() ? kNegInf : static_cast<float>(v.get<double>()));
  }
  return row;
}

// Same -inf pattern, finite entries within kTolerance (relative above 1).
void RequireRowsMatch(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  int mismatches = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const bool same_mask = std::isinf(got[i]) == std::isinf(want[i]);
    const bool close = std::isinf(want[i]) ||
                       std::fabs(got[i] - want[i]) <= kTolerance * std::max(1.0f, std::fabs(want[i]));
    if (!same_mask || !close) {
      if (++mismatches <= 5) UNSCOPED_INFO("token " << i << ": got " << got[i] << ", want " << want[i]);
    }
  }
  CHECK(mismatches == 0);
}

template <typename T>
T Get(const nlohmann::json& c, const char* key, T fallback) {
  return c.contains(key) ? c[key].get<T>() : fallback;
}

// The Sampler's adjustment stage, in its order.
std::vector<float> Adjust(const nlohmann::json& c, const std::vector<int32_t>& eos) {
  std::vector<float> x = Row(c["logits"]);
  const auto prompt = c["prompt"].get<std::vector<int32_t>>();
  const auto output = c["output"].get<std::vector<int32_t>>();
  std::map<int32_t, float> bias;
  if (c.contains("logit_bias")) {
    for (const auto& [id, b] : c["logit_bias"].items()) bias[std::stoi(id)] = b.get<float>();
  }
  ApplyLogitBias(x, bias);
  if (static_cast<int>(output.size()) < Get(c, "min_tokens", 0)) {
    MaskTokens(x, Get(c, "stop_token_ids", std::vector<int32_t>{}));
    MaskTokens(x, eos);
  }
  TokenCounts scratch;
  ApplyRepetitionPenalty(x, prompt, output, Get(c, "repetition_penalty", 1.0f), scratch);
  ApplyPresenceFrequencyPenalties(x, output, Get(c, "presence_penalty", 0.0f),
                                  Get(c, "frequency_penalty", 0.0f), scratch);
  return x;
}

TEST_CASE("bias, min_tokens mask and penalties equal the HF / OpenAI oracle") {
  const nlohmann::json fixture = LoadFixture();
  const auto eos = fixture["eos_token_ids"].get<std::vector<int32_t>>();
  for (const nlohmann::json& c : fixture["cases"]) {
    INFO("case " << c["name"].get<std::string>());
    RequireRowsMatch(Adjust(c, eos), Row(c["adjusted"]));
  }
}

TEST_CASE("reference warpers equal HF temperature, top-k, top-p and min-p warpers") {
  const nlohmann::json fixture = LoadFixture();
  for (const nlohmann::json& c : fixture["cases"]) {
    INFO("case " << c["name"].get<std::string>());
    std::vector<float> x = Row(c["adjusted"]);
    const float temperature = Get(c, "temperature", 1.0f);
    if (temperature != 1.0f) ApplyTemperature(x, temperature);
    ApplyTopK(x, Get(c, "top_k", 0));
    ApplyTopP(x, Get(c, "top_p", 1.0f));
    ApplyMinP(x, Get(c, "min_p", 0.0f));
    RequireRowsMatch(x, Row(c["processed"]));
  }
}

TEST_CASE("logprobs equal torch log_softmax of the raw row, top 20 by value then id") {
  const nlohmann::json fixture = LoadFixture();
  for (const nlohmann::json& c : fixture["cases"]) {
    INFO("case " << c["name"].get<std::string>());
    const nlohmann::json& want = c["logprobs"];
    PositionLogprobs got;
    ComputePositionLogprobs(Row(c["logits"]), want["token"].get<int32_t>(), 20, &got);
    CHECK(got.logprob == Approx(want["token_logprob"].get<double>()).margin(kTolerance));
    CHECK(got.rank == want["token_rank"].get<int32_t>());
    const auto ids = want["top_ids"].get<std::vector<int32_t>>();
    const auto values = want["top_logprobs"].get<std::vector<double>>();
    REQUIRE(got.top.size() == ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      CHECK(got.top[i].token == ids[i]);
      CHECK(got.top[i].logprob == Approx(values[i]).margin(kTolerance));
    }
  }
}

TEST_CASE("top logprobs order ties by token id and handle -inf") {
  const std::vector<float> row = {1.0f, 3.0f, kNegInf, 3.0f, 2.0f, 3.0f};
  std::vector<TokenLogprob> top;
  const double norm = LogSumExp(row);
  TopLogprobs(row, norm, 4, &top);
  REQUIRE(top.size() == 4);
  CHECK(top[0].token == 1);
  CHECK(top[1].token == 3);
  CHECK(top[2].token == 5);
  CHECK(top[3].token == 4);
  CHECK(top[0].logprob == Approx(3.0 - norm));
  PositionLogprobs masked;
  ComputePositionLogprobs(row, 2, 0, &masked);
  CHECK(std::isinf(masked.logprob));
  CHECK(masked.rank == 6);
  CHECK(masked.top.empty());
}

TEST_CASE("repetition penalty counts a repeated token once") {
  std::vector<float> x = {2.0f, -2.0f, 1.0f};
  TokenCounts scratch;
  const std::vector<int32_t> prompt = {0, 0, 1}, output = {1, 0, 7777, -1};
  ApplyRepetitionPenalty(x, prompt, output, 2.0f, scratch);
  CHECK(x == std::vector<float>{1.0f, -4.0f, 1.0f});  // out-of-range ids ignored
  ApplyPresenceFrequencyPenalties(x, output, 0.5f, 0.25f, scratch);
  CHECK(x[0] == Approx(1.0f - 0.25f - 0.5f));
  CHECK(x[1] == Approx(-4.0f - 0.25f - 0.5f));
  CHECK(x[2] == 1.0f);
}

}  // namespace
}  // namespace alignserve
