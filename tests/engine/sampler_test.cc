// The Sampler: its draw distribution equals HF's processed logits (fixture
// from tests/reference/make_sampler_fixtures.py), draws follow that
// distribution (chi-square), seeded draws do not depend on the batch and
// survive preemption, greedy is argmax with ties to the lowest id, logprobs
// are the raw model's, and Validate rejects every bad field by name.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/logits_processors.h"
#include "engine/sampler.h"
#include "tests/test_paths.h"

namespace alignserve {
namespace {

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

SamplingParams ParamsOf(const nlohmann::json& c) {
  SamplingParams p;
  p.temperature = c.value("temperature", 1.0f);
  p.top_k = c.value("top_k", 0);
  p.top_p = c.value("top_p", 1.0f);
  p.min_p = c.value("min_p", 0.0f);
  p.repetition_penalty = c.value("repetition_penalty", 1.0f);
  p.presence_penalty = c.value("presence_penalty", 0.0f);
  p.frequency_penalty = c.value("frequency_penalty", 0.0f);
  p.min_tokens = c.value("min_tokens", 0);
  p.max_tokens = std::max(p.min_tokens, 16);
  p.stop_token_ids = c.value("stop_token_ids", std::vector<int32_t>{});
  if (c.contains("logit_bias")) {
    for (const auto& [id, b] : c["logit_bias"].items()) p.logit_bias[std::stoi(id)] = b.get<float>();
  }
  return p;
}

// softmax of a processed row, -inf excluded.
std::map<int32_t, double> Softmax(const std::vector<float>& x) {
  double max_value = kNegInf, total = 0.0;
  for (float v : x) max_value = std::max<double>(max_value, v);
  std::map<int32_t, double> probs;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isinf(x[i])) continue;
    total += probs[static_cast<int32_t>(i)] = std::exp(x[i] - max_value);
  }
  for (auto& [id, p] : probs) p /= total;
  return probs;
}

TEST_CASE("the draw distribution equals softmax of HF's processed logits") {
  const nlohmann::json fixture = LoadFixture();
  BatchSampler sampler(fixture["eos_token_ids"].get<std::vector<int32_t>>());
  for (const nlohmann::json& c : fixture["cases"]) {
    INFO("case " << c["name"].get<std::string>());
    const SamplingParams params = ParamsOf(c);
    REQUIRE(params.Validate(fixture["vocab"].get<int>()).ok());
    const std::vector<float> logits = Row(c["logits"]);
    const auto prompt = c["prompt"].get<std::vector<int32_t>>();
    const auto output = c["output"].get<std::vector<int32_t>>();
    std::vector<TokenProb> got;
    sampler.Distribution({logits, &params, prompt, output, 1}, &got);
    const std::map<int32_t, double> want = Softmax(Row(c["processed"]));
    // Same survivors (tokens whose weight underflows to 0 need not be listed)
    // with the same probabilities, listed most likely first.
    std::map<int32_t, double> got_probs;
    for (size_t i = 0; i < got.size(); ++i) {
      REQUIRE(want.count(got[i].token) == 1);
      got_probs[got[i].token] = got[i].prob;
      if (i > 0) CHECK(got[i].prob <= got[i - 1].prob);
    }
    for (const auto& [token, prob] : want) {
      if (prob > 1e-30) CHECK(got_probs.count(token) == 1);
      CHECK(got_probs[token] == Approx(prob).margin(1e-5));
    }
  }
}

TEST_CASE("greedy is the argmax of the adjusted row, ties to the lowest id") {
  const nlohmann::json fixture = LoadFixture();
  BatchSampler sampler(fixture["eos_token_ids"].get<std::vector<int32_t>>());
  for (const nlohmann::json& c : fixture["cases"]) {
    INFO("case " << c["name"].get<std::string>());
    SamplingParams params = ParamsOf(c);
    params.temperature = 0.0f;
    const std::vector<float> logits = Row(c["logits"]);
    const auto prompt = c["prompt"].get<std::vector<int32_t>>();
    const auto output = c["output"].get<std::vector<int32_t>>();
    SampleResult result;
    sampler.SampleOne({logits, &params, prompt, output, 1}, &result);
    CHECK(result.token == Argmax(Row(c["adjusted"])));
  }
  const std::vector<float> ties = {1.0f, 5.0f, std::nanf(""), 5.0f, 2.0f};
  CHECK(Argmax(ties) == 1);
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  CHECK(Sampler(greedy).Sample(ties) == 1);
}

TEST_CASE("top-p over a flat 49152-token row keeps exactly the reference warper's set") {
  // Most of the vocabulary passes the first candidate threshold here, so the
  // sampler cuts by log-weight buckets instead of sorting; ApplyTopP (checked
  // against HF's TopPLogitsWarper above) sorts the whole row.
  std::mt19937 gen(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> logits(49152);
  for (float& v : logits) v = normal(gen);
  BatchSampler sampler;
  for (float top_p : {0.3f, 0.9f, 0.99f}) {
    for (float min_p : {0.0f, 0.05f}) {
      INFO("top_p " << top_p << " min_p " << min_p);
      SamplingParams p;
      p.temperature = 1.3f;
      p.top_p = top_p;
      p.min_p = min_p;
      std::vector<float> reference = logits;
      ApplyTemperature(reference, p.temperature);
      ApplyTopP(reference, top_p);
      ApplyMinP(reference, min_p);
      const std::map<int32_t, double> want = Softmax(reference);
      std::vector<TokenProb> got;
      sampler.Distribution({logits, &p, {}, {}, 0}, &got);
      CHECK(got.size() > 2048);
      REQUIRE(got.size() == want.size());
      for (const TokenProb& tp : got) {
        REQUIRE(want.count(tp.token) == 1);
        CHECK(tp.prob == Approx(want.at(tp.token)).margin(1e-7));
      }
    }
  }
}

// Pearson's chi-square of `draws` against the expected distribution; the
// 0.1% critical values for 1..12 degrees of freedom.
void CheckChiSquare(const std::vector<TokenProb>& dist, const std::vector<int>& counts, int n) {
  static const double kCritical[] = {10.83, 13.82, 16.27, 18.47, 20.52, 22.46,
                                     24.32, 26.12, 27.88, 29.59, 31.26, 32.91};
  REQUIRE(dist.size() >= 2);
  REQUIRE(dist.size() - 1 <= std::size(kCritical));
  double chi2 = 0.0;
  int inside = 0;
  for (const TokenProb& tp : dist) {
    const double expected = n * tp.prob;
    chi2 += (counts[tp.token] - expected) * (counts[tp.token] - expected) / expected;
    inside += counts[tp.token];
  }
  INFO("chi-square " << chi2 << " with " << dist.size() - 1 << " degrees of freedom");
  CHECK(inside == n);  // nothing drawn outside the kept set
  CHECK(chi2 < kCritical[dist.size() - 2]);
}

TEST_CASE("20000 seeded draws follow the renormalized distribution on every path") {
  const std::vector<float> logits = {2.0f, 1.5f, 0.3f, 1.9f, -1.0f, 0.8f, 1.2f, -0.4f, 0.0f, 0.5f};
  struct Path {
    const char* name;
    int top_k;
    float top_p, min_p;
    size_t kept;
  };
  const Path paths[] = {{"top_k and top_p", 6, 0.8f, 0.0f, 4},
                        {"top_p alone", 0, 0.9f, 0.0f, 6},
                        {"min_p alone", 0, 1.0f, 0.2f, 5},
                        {"untruncated", 0, 1.0f, 0.0f, 10}};
  constexpr int kDraws = 20000;
  std::vector<int32_t> history(kDraws, 0);
  BatchSampler sampler;
  for (const Path& path : paths) {
    INFO("path " << path.name);
    SamplingParams p;
    p.temperature = 0.9f;
    p.top_k = path.top_k;
    p.top_p = path.top_p;
    p.min_p = path.min_p;
    std::vector<TokenProb> dist;
    sampler.Distribution({logits, &p, {}, {}, 0}, &dist);
    CHECK(dist.size() == path.kept);
    // Along one sequence's steps, and across seeds at step 0.
    std::vector<int> by_step(logits.size()), by_seed(logits.size());
    SampleResult r;
    for (int i = 0; i < kDraws; ++i) {
      sampler.SampleOne({logits, &p, {}, std::span(history).first(i), 42}, &r);
      ++by_step[r.token];
      sampler.SampleOne({logits, &p, {}, {}, static_cast<uint64_t>(i)}, &r);
      ++by_seed[r.token];
    }
    CheckChiSquare(dist, by_step, kDraws);
    CheckChiSquare(dist, by_seed, kDraws);
  }
}

// Deterministic pseudo-logits for (sequence, step), vocab 64.
std::vector<float> StepLogits(int seq, int step) {
  std::mt19937 gen(seq * 1000 + step);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> row(64);
  for (float& v : row) v = normal(gen);
  return row;
}

TEST_CASE("a seeded sequence draws the same tokens whatever shares its batch") {
  std::vector<SamplingParams> params(4);
  params[0].seed = 7;
  params[0].top_p = 0.9f;
  params[1].temperature = 0.0f;
  params[2].top_k = 5;
  params[2].repetition_penalty = 1.5f;
  params[3].seed = 7;  // same seed, different params: still independent
  params[3].min_p = 0.1f;
  params[3].frequency_penalty = 1.0f;
  std::vector<uint64_t> seeds;
  for (const SamplingParams& p : params) seeds.push_back(ResolveSeed(p));
  const std::vector<int32_t> prompt = {1, 2, 3};
  std::vector<std::vector<int32_t>> batched(4), alone(4);
  BatchSampler batch_sampler, alone_sampler;
  for (int step = 0; step < 40; ++step) {
    std::vector<std::vector<float>> logits;
    for (int s = 0; s < 4; ++s) logits.push_back(StepLogits(s, step));
    std::vector<SamplingRow> rows;
    // Batch order reversed on odd steps: position in the batch must not matter.
    for (int k = 0; k < 4; ++k) {
      const int s = step % 2 ? 3 - k : k;
      rows.push_back({logits[s], &params[s], prompt, batched[s], seeds[s]});
    }
    std::vector<SampleResult> results;
    batch_sampler.SampleBatch(rows, &results);
    for (int k = 0; k < 4; ++k) batched[step % 2 ? 3 - k : k].push_back(results[k].token);
    for (int s = 0; s < 4; ++s) {
      SampleResult r;
      alone_sampler.SampleOne({logits[s], &params[s], prompt, alone[s], seeds[s]}, &r);
      alone[s].push_back(r.token);
    }
  }
  CHECK(batched == alone);
  CHECK(batched[0] != batched[3]);
}

TEST_CASE("a preempted sequence redraws exactly what it drew before") {
  SamplingParams p;
  p.seed = 1234;
  p.temperature = 1.2f;
  p.top_k = 20;
  p.presence_penalty = 0.5f;
  const std::vector<int32_t> prompt = {5, 6, 7};
  Sampler uninterrupted(p, prompt);
  for (int step = 0; step < 60; ++step) uninterrupted.Sample(StepLogits(9, step));
  // Recompute after preemption: a fresh sampler (fresh scratch) replays the
  // history as the engine would, then continues.
  const std::vector<int32_t>& history = uninterrupted.output_tokens();
  BatchSampler resumed;
  for (int step = 30; step < 60; ++step) {
    const std::vector<float> logits = StepLogits(9, step);
    SampleResult r;
    resumed.SampleOne({logits, &p, prompt, std::span(history).first(step), *p.seed}, &r);
    CHECK(r.token == history[step]);
  }
  CHECK(uninterrupted.seed() == 1234);
}

TEST_CASE("min_tokens masks EOS and stop ids until reached, ignore_eos unmasks EOS") {
  std::vector<float> logits(16, 0.0f);
  logits[0] = 9.0f;  // EOS
  logits[4] = 8.0f;  // a stop token id
  logits[7] = 1.0f;
  SamplingParams p;
  p.temperature = 0.0f;
  p.min_tokens = 3;
  p.stop_token_ids = {4};
  BatchSampler sampler({0});
  const std::vector<int32_t> history = {7, 7, 7, 7};
  SampleResult r;
  for (size_t step = 0; step < 3; ++step) {
    sampler.SampleOne({logits, &p, {}, std::span(history).first(step), 0}, &r);
    CHECK(r.token == 7);
  }
  sampler.SampleOne({logits, &p, {}, history, 0}, &r);
  CHECK(r.token == 0);
  p.ignore_eos = true;  // EOS is no stop then, so min_tokens leaves it alone
  sampler.SampleOne({logits, &p, {}, {}, 0}, &r);
  CHECK(r.token == 0);
}

TEST_CASE("logprobs are the raw model's, not the processed row's") {
  std::vector<float> logits = StepLogits(3, 0);
  SamplingParams p;
  p.temperature = 0.5f;
  p.top_k = 3;
  p.logit_bias[10] = 30.0f;  // forces token 10
  p.logprobs = 5;
  BatchSampler sampler;
  SampleResult r;
  sampler.SampleOne({logits, &p, {}, {}, 99}, &r);
  CHECK(r.token == 10);
  PositionLogprobs raw;
  ComputePositionLogprobs(logits, 10, 5, &raw);
  CHECK(r.logprobs.logprob == raw.logprob);
  CHECK(r.logprobs.rank == raw.rank);
  REQUIRE(r.logprobs.top.size() == 5);
  CHECK(r.logprobs.top[0].token == Argmax(logits));
  p.logprobs = 0;  // only the chosen token
  sampler.SampleOne({logits, &p, {}, {}, 99}, &r);
  CHECK(r.logprobs.top.empty());
  CHECK(r.logprobs.logprob == raw.logprob);
}

TEST_CASE("rows without mass fall back to argmax instead of failing") {
  const std::vector<float> nans(8, std::nanf(""));
  const std::vector<float> neg_inf(8, kNegInf);
  SamplingParams p;
  p.top_p = 0.5f;
  BatchSampler sampler;
  SampleResult r;
  for (const std::vector<float>* row : {&nans, &neg_inf}) {
    for (int top_k : {0, 3}) {
      p.top_k = top_k;
      sampler.SampleOne({*row, &p, {}, {}, 5}, &r);
      CHECK(r.token >= 0);
      CHECK(r.token < 8);
    }
  }
}

TEST_CASE("the counter-based generator is Philox4x32-10 and uniform") {
  // Random123 known answer: counter 0, key 0 -> 6627e8d5 e169c58d ...
  CHECK(UniformForStep(0, 0) == ((uint64_t{0x6627e8d5} << 32 | 0xe169c58du) >> 11) * 0x1.0p-53);
  double sum = 0.0;
  for (uint64_t step = 0; step < 100000; ++step) {
    const double u = UniformForStep(77, step);
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
    sum += u;
  }
  CHECK(sum / 100000 == Approx(0.5).margin(0.005));
  CHECK(UniformForStep(1, 5) != UniformForStep(2, 5));
}

constexpr int kVocab = 1000;

TEST_CASE("Validate rejects each bad field with InvalidArgument naming it") {
  REQUIRE(SamplingParams().Validate(kVocab).ok());
  const float nan = std::nanf(""), inf = std::numeric_limits<float>::infinity();
  struct Case {
    const char* field;
    std::function<void(SamplingParams&)> spoil;
  };
  const std::vector<Case> cases = {
      {"temperature", [&](SamplingParams& p) { p.temperature = nan; }},
      {"temperature", [](SamplingParams& p) { p.temperature = -0.1f; }},
      {"top_k", [](SamplingParams& p) { p.top_k = -2; }},
      {"top_k", [](SamplingParams& p) { p.top_k = kVocab + 1; }},
      {"top_p", [](SamplingParams& p) { p.top_p = 0.0f; }},
      {"top_p", [&](SamplingParams& p) { p.top_p = inf; }},
      {"min_p", [](SamplingParams& p) { p.min_p = 1.5f; }},
      {"repetition_penalty", [](SamplingParams& p) { p.repetition_penalty = 0.0f; }},
      {"repetition_penalty", [&](SamplingParams& p) { p.repetition_penalty = nan; }},
      {"presence_penalty", [](SamplingParams& p) { p.presence_penalty = 2.5f; }},
      {"frequency_penalty", [&](SamplingParams& p) { p.frequency_penalty = -inf; }},
      {"max_tokens", [](SamplingParams& p) { p.max_tokens = 0; }},
      {"min_tokens", [](SamplingParams& p) { p.min_tokens = -1; }},
      {"min_tokens", [](SamplingParams& p) { p.min_tokens = p.max_tokens + 1; }},
      {"logprobs", [](SamplingParams& p) { p.logprobs = 21; }},
      {"logprobs", [](SamplingParams& p) { p.logprobs = -1; }},
      {"prompt_logprobs", [](SamplingParams& p) { p.prompt_logprobs = 100; }},
      {"logit_bias", [](SamplingParams& p) { p.logit_bias[kVocab] = 1.0f; }},
      {"logit_bias", [](SamplingParams& p) { p.logit_bias[-1] = 1.0f; }},
      {"logit_bias", [](SamplingParams& p) { p.logit_bias[5] = 100.5f; }},
      {"logit_bias", [&](SamplingParams& p) { p.logit_bias[5] = nan; }},
      {"logit_bias", [](SamplingParams& p) { for (int i = 0; i < 1025; ++i) p.logit_bias[i] = 0; }},
      {"stop_token_ids", [](SamplingParams& p) { p.stop_token_ids = {3, kVocab}; }},
      {"stop_token_ids", [](SamplingParams& p) { p.stop_token_ids = {-5}; }},
      {"stop", [](SamplingParams& p) { p.stop.assign(17, "x"); }},
      {"stop", [](SamplingParams& p) { p.stop = {std::string(257, 'a')}; }},
      {"stop", [](SamplingParams& p) { p.stop = {""}; }},
      {"stop", [](SamplingParams& p) { p.stop = {"ok", "\xC3"}; }},
  };
  for (const Case& c : cases) {
    SamplingParams p;
    c.spoil(p);
    const absl::Status s = p.Validate(kVocab);
    INFO("field " << c.field << ": " << s.ToString());
    CHECK(s.code() == absl::StatusCode::kInvalidArgument);
    CHECK(std::string(s.message()).rfind(c.field, 0) == 0);
  }
  SamplingParams at_caps;
  at_caps.stop.assign(16, std::string(256, 'z'));
  at_caps.logprobs = 20;
  at_caps.prompt_logprobs = 0;
  at_caps.logit_bias[kVocab - 1] = -100.0f;
  at_caps.temperature = 0.0f;
  at_caps.top_k = -1;
  CHECK(at_caps.Validate(kVocab).ok());
}

}  // namespace
}  // namespace alignserve
