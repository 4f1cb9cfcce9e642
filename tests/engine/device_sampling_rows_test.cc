// engine/device_sampling_rows.h without a GPU: a DeviceSamplingRow carries
// the params and the step, its adjustments are one sorted entry per distinct
// token that matters, applying them reproduces BatchSampler's adjusted row
// bit for bit (so a greedy device row picks the host's token), and results
// convert back to SampleResult.
#include "engine/device_sampling_rows.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "engine/logits_processors.h"
#include "engine/sampler.h"

namespace alignserve {
namespace {

const std::vector<int32_t> kEos = {2, 7};

TEST_CASE("a device row carries the params and one sorted entry per distinct token") {
  SamplingParams p;
  p.temperature = 0.8f;
  p.top_k = 40;
  p.top_p = 0.9f;
  p.min_p = 0.05f;
  p.repetition_penalty = 1.3f;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  p.logit_bias = {{9, 2.0f}, {30, -1.5f}};
  p.min_tokens = 4;
  p.stop_token_ids = {11};
  p.logprobs = 3;
  const std::vector<int32_t> prompt = {30, 5, 5, 8};
  const std::vector<int32_t> output = {8, 12, 8};
  std::vector<DeviceSamplingRow> rows(1);  // one earlier row
  std::vector<LogitAdjustment> adjustments(2);
  AppendDeviceSamplingRow(p, prompt, output, kEos, 1000, 77, 3, &rows, &adjustments);
  REQUIRE(rows.size() == 2);
  const DeviceSamplingRow& r = rows[1];
  CHECK(r.logits_row == 3);
  CHECK(r.temperature == 0.8f);
  CHECK(r.top_k == 40);
  CHECK(r.top_p == 0.9f);
  CHECK(r.min_p == 0.05f);
  CHECK(r.repetition_penalty == 1.3f);
  CHECK(r.presence_penalty == 0.5f);
  CHECK(r.frequency_penalty == 0.25f);
  CHECK(r.seed == 77);
  CHECK(r.step == 3);
  CHECK(r.num_logprobs == 3);
  CHECK(r.adjust_begin == 2);
  // 2, 5, 7, 8, 9, 11, 12, 30.
  REQUIRE(r.adjust_count == 8);
  const LogitAdjustment* a = adjustments.data() + r.adjust_begin;
  const int32_t tokens[] = {2, 5, 7, 8, 9, 11, 12, 30};
  for (int i = 0; i < 8; ++i) CHECK(a[i].token == tokens[i]);
  CHECK((a[0].masked && !a[0].repeated && a[0].output_count == 0));  // EOS
  CHECK((!a[1].masked && a[1].repeated && a[1].output_count == 0));  // prompt only
  CHECK((a[3].repeated && a[3].output_count == 2));                  // prompt and output
  CHECK((a[4].bias == 2.0f && !a[4].repeated));
  CHECK(a[5].masked);  // stop id
  CHECK((a[6].repeated && a[6].output_count == 1));
  CHECK((a[7].bias == -1.5f && a[7].repeated));

  SECTION("only what changes the logits is listed") {
    SamplingParams plain;
    plain.min_tokens = 2;  // met: no mask
    AppendDeviceSamplingRow(plain, prompt, output, kEos, 1000, 1, 0, &rows, &adjustments);
    CHECK(rows.back().adjust_count == 0);
    CHECK(rows.back().num_logprobs == -1);
    SamplingParams counted;
    counted.frequency_penalty = 0.1f;  // output tokens only
    counted.ignore_eos = true;
    counted.min_tokens = 10;
    AppendDeviceSamplingRow(counted, prompt, output, kEos, 1000, 1, 0, &rows, &adjustments);
    CHECK(rows.back().adjust_count == 2);  // 8 and 12; EOS not masked
  }
  SECTION("tokens past a narrow row get no entry, as the host ignores them") {
    // Rows 10 wide (a classifier's labels, say): of 2, 5, 7, 8, 9, 11, 12,
    // 30 only the first five are inside.
    AppendDeviceSamplingRow(p, prompt, output, kEos, 10, 77, 3, &rows, &adjustments);
    const DeviceSamplingRow& narrow = rows.back();
    REQUIRE(narrow.adjust_count == 5);
    for (int i = 0; i < 5; ++i) CHECK(adjustments[narrow.adjust_begin + i].token == tokens[i]);
  }
}

// A PenaltyHistory synced step by step over a growing output gives the
// adjustments a full sort gives, entry for entry, for every mix of
// penalties, bias and mask; a history that stops being a prefix is rebuilt.
TEST_CASE("adjustments from a kept penalty history equal the sorted ones at every step") {
  std::mt19937 rng(3);
  std::uniform_int_distribution<int32_t> token(0, 60);
  for (int trial = 0; trial < 24; ++trial) {
    SamplingParams p;
    p.temperature = 0.7f;
    p.repetition_penalty = trial % 3 == 0 ? 1.0f : 1.2f;
    p.frequency_penalty = trial % 2 == 0 ? 0.3f : 0.0f;
    p.presence_penalty = trial % 4 == 1 ? 0.2f : 0.0f;
    if (trial % 5 == 0) p.logit_bias = {{token(rng), 1.5f}, {token(rng), -2.0f}};
    p.min_tokens = trial % 6;
    p.stop_token_ids = {token(rng)};
    std::vector<int32_t> prompt(1 + trial * 3);
    for (int32_t& t : prompt) t = token(rng);
    std::vector<int32_t> output;
    PenaltyHistory history;
    for (int step = 0; step < 40; ++step) {
      INFO("trial " << trial << " step " << step);
      history.Sync(prompt, output);
      std::vector<DeviceSamplingRow> plain_rows, kept_rows;
      std::vector<LogitAdjustment> plain, kept;
      AppendDeviceSamplingRow(p, prompt, output, kEos, 1000, 5, 0, &plain_rows, &plain);
      AppendDeviceSamplingRow(p, prompt, output, kEos, 1000, 5, 0, &kept_rows, &kept, &history);
      REQUIRE(kept_rows[0].adjust_count == plain_rows[0].adjust_count);
      REQUIRE(kept.size() == plain.size());
      for (size_t i = 0; i < plain.size(); ++i) {
        CHECK(kept[i].token == plain[i].token);
        CHECK(kept[i].bias == plain[i].bias);
        CHECK(kept[i].output_count == plain[i].output_count);
        CHECK(kept[i].masked == plain[i].masked);
        CHECK(kept[i].repeated == plain[i].repeated);
      }
      output.push_back(token(rng));
      if (step == 25) output.back() = output.front() + 1;  // not a prefix of the last...
      if (step == 26) output.erase(output.begin());        // ...history: rebuilt
    }
  }
}

// BatchSampler's adjustment of a row (sampler.cc, Adjust) spelled out.
std::vector<float> HostAdjusted(std::span<const float> raw, const SamplingParams& p,
                                std::span<const int32_t> prompt, std::span<const int32_t> output) {
  std::vector<float> x(raw.begin(), raw.end());
  std::vector<int32_t> mask;
  if (static_cast<int64_t>(output.size()) < p.min_tokens) {
    mask = p.stop_token_ids;
    if (!p.ignore_eos) mask.insert(mask.end(), kEos.begin(), kEos.end());
  }
  TokenCounts counts;
  ApplyLogitBias(x, p.logit_bias);
  MaskTokens(x, mask);
  ApplyRepetitionPenalty(x, prompt, output, p.repetition_penalty, counts);
  ApplyPresenceFrequencyPenalties(x, output, p.presence_penalty, p.frequency_penalty, counts);
  return x;
}

TEST_CASE("applying a device row's adjustments gives BatchSampler's adjusted row bit for bit") {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::uniform_int_distribution<int32_t> id(0, 499);
  BatchSampler sampler(kEos);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<float> raw(500);
    for (float& v : raw) v = normal(rng);
    SamplingParams p;
    p.temperature = 0.0f;
    for (int i = 0; i < 5; ++i) p.logit_bias[id(rng)] = normal(rng);
    p.min_tokens = trial % 3 == 0 ? 8 : 0;
    p.ignore_eos = trial % 5 == 0;
    p.stop_token_ids = {id(rng), id(rng)};
    p.repetition_penalty = trial % 2 ? 1.0f + 0.01f * static_cast<float>(trial % 40) : 1.0f;
    p.presence_penalty = trial % 4 ? 0.3f : 0.0f;
    p.frequency_penalty = trial % 7 ? -0.2f : 0.0f;
    std::vector<int32_t> prompt(20), output(trial % 12);
    for (int32_t& t : prompt) t = id(rng);
    for (int32_t& t : output) t = id(rng);
    std::vector<DeviceSamplingRow> rows;
    std::vector<LogitAdjustment> adjustments;
    AppendDeviceSamplingRow(p, prompt, output, kEos, 1000, 0, 0, &rows, &adjustments);
    std::vector<float> device_view = raw;
    ApplyLogitAdjustments(rows[0], adjustments, device_view);
    const std::vector<float> host = HostAdjusted(raw, p, prompt, output);
    INFO("trial " << trial);
    int differ = 0;
    for (size_t i = 0; i < raw.size(); ++i) differ += !(device_view[i] == host[i]);
    CHECK(differ == 0);
    SampleResult greedy;
    sampler.SampleOne(SamplingRow{raw, &p, prompt, output, 0}, &greedy);
    CHECK(Argmax(device_view) == greedy.token);
  }
}

TEST_CASE("a device result converts to the sampler's SampleResult") {
  DeviceSampleResult d;
  d.token = 42;
  d.logprob = -0.5f;
  d.rank = 2;
  d.num_top = 2;
  d.top_tokens[0] = 41;
  d.top_logprobs[0] = -0.25f;
  d.top_tokens[1] = 42;
  d.top_logprobs[1] = -0.5f;
  SampleResult out;
  out.logprobs.top = {{1, -1.0f}, {2, -2.0f}, {3, -3.0f}};
  ToSampleResult(d, /*want_logprobs=*/false, &out);
  CHECK(out.token == 42);
  CHECK(out.logprobs.top.size() == 3);  // untouched, as SampleOne leaves it
  ToSampleResult(d, /*want_logprobs=*/true, &out);
  CHECK(out.logprobs.logprob == -0.5f);
  CHECK(out.logprobs.rank == 2);
  REQUIRE(out.logprobs.top.size() == 2);
  CHECK(out.logprobs.top[0].token == 41);
  CHECK(out.logprobs.top[0].logprob == -0.25f);
  CHECK(out.logprobs.top[1].token == 42);
}

}  // namespace
}  // namespace alignserve
