// CudaBackend::SampleRows (device sampling, kernels/device_sampling.h)
// against the host sampler, its oracle: BatchSampler::SampleOne for tokens,
// BatchSampler::Distribution for kept sets and probabilities, and
// ComputePositionLogprobs for logprobs. Rows are built by the engine's own
// AppendDeviceSamplingRow. Logits are fresh random rows (std::mt19937,
// fixed seeds) of 1,003, 50,257 and 128,256 tokens: normal * 3 with a few
// spikes, plus rows with ties, with -inf entries, all -inf, with NaN, and
// rows of thousands of equal logits that push the top-p cut into the radix
// fallback. Results are poisoned before every call and every field must be
// written. Without a CUDA device every case passes with "no CUDA device:
// skipped".
#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <vector>

#include "engine/device_sampling_rows.h"
#include "engine/logprobs.h"
#include "engine/sampler.h"
#include "kernels/cuda/cuda_backend.h"
#include "tests/gpu/gpu_test_util.h"

namespace alignserve {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr int kVocabs[] = {1003, 50257, 128256};
const std::vector<int32_t> kEos = {2, 7};

std::unique_ptr<CudaBackend> MakeCuda() {
  auto backend = CudaBackend::Create(0);
  REQUIRE(backend.ok());
  return std::move(*backend);
}

// The logits rows a case draws from, on the host and on the device.
enum RowKind { kRandom0, kRandom1, kRandom2, kRandom3, kTies, kSomeNegInf, kAllNegInf, kWithNaN };
constexpr int kNumKinds = 8;

std::vector<float> RandomRow(int vocab, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::uniform_int_distribution<int> id(0, vocab - 1);
  std::uniform_real_distribution<float> spike(8.0f, 16.0f);
  std::vector<float> row(vocab);
  for (float& x : row) x = normal(rng);
  for (int i = 0; i < 4; ++i) row[id(rng)] = spike(rng);
  return row;
}

std::vector<float> RowOfKind(RowKind kind, int vocab, std::mt19937& rng) {
  std::vector<float> row = RandomRow(vocab, rng);
  std::uniform_int_distribution<int> id(0, vocab - 1);
  switch (kind) {
    case kTies: {
      // Three-way tie at the top; 50 equal logits around rank 20, so
      // top-k 40 and the top-p cut fall inside a run of ties.
      const float top = *std::max_element(row.begin(), row.end()) + 1.0f;
      for (int i = 0; i < 3; ++i) row[id(rng)] = top;
      for (int i = 0; i < 50; ++i) row[id(rng)] = 9.0f;
      break;
    }
    case kSomeNegInf:
      for (float& x : row) {
        if (std::uniform_real_distribution<float>(0, 1)(rng) < 0.3f) x = -kInf;
      }
      break;
    case kAllNegInf:
      std::fill(row.begin(), row.end(), -kInf);
      break;
    case kWithNaN:  // past the first 20 ids, where the host's top list ignores NaN
      row[vocab / 2] = kNaN;
      row[vocab / 3] = kNaN;
      break;
    default:
      break;
  }
  return row;
}

struct Table {
  int vocab = 0;
  int rows = 0;
  std::vector<float> host;  // [rows, vocab]
  Tensor device;
  std::span<const float> Row(int r) const {
    return {host.data() + static_cast<size_t>(r) * vocab, static_cast<size_t>(vocab)};
  }
};

Table MakeTable(testing::Side& side, std::vector<std::vector<float>> rows) {
  Table t;
  t.vocab = static_cast<int>(rows[0].size());
  t.rows = static_cast<int>(rows.size());
  for (const auto& r : rows) t.host.insert(t.host.end(), r.begin(), r.end());
  t.device = side.Make(t.host, t.rows, t.vocab, DType::kF32);
  return t;
}

// One row per RowKind.
Table KindTable(testing::Side& side, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<float>> rows;
  for (int k = 0; k < kNumKinds; ++k)
    rows.push_back(RowOfKind(static_cast<RowKind>(k), vocab, rng));
  return MakeTable(side, std::move(rows));
}

// One draw: a logits row, its params and the sequence's history.
struct Case {
  int logits_row = 0;
  SamplingParams params;
  std::vector<int32_t> prompt;
  std::vector<int32_t> output;
  uint64_t seed = 0;
};

bool Poisoned(const void* p) {
  uint32_t bits;
  std::memcpy(&bits, p, 4);
  return bits == 0x7f7f7f7fu;
}

// Every field written; entries past num_top zero.
void CheckWritten(const std::vector<DeviceSampleResult>& results) {
  int bad = 0;
  for (const DeviceSampleResult& r : results) {
    bool ok = !Poisoned(&r.token) && !Poisoned(&r.logprob) && !Poisoned(&r.rank) &&
              r.num_top >= 0 && r.num_top <= kMaxDeviceLogprobs;
    for (int i = 0; ok && i < kMaxDeviceLogprobs; ++i) {
      ok = !Poisoned(&r.top_tokens[i]) && !Poisoned(&r.top_logprobs[i]);
      if (i >= r.num_top) ok = ok && r.top_tokens[i] == 0 && r.top_logprobs[i] == 0.0f;
    }
    bad += !ok;
  }
  INFO(bad << " of " << results.size() << " results not fully written");
  CHECK(bad == 0);
}

std::vector<DeviceSampleResult> RunDevice(CudaBackend& cuda, const Table& table,
                                          const std::vector<Case>& cases) {
  std::vector<DeviceSamplingRow> rows;
  std::vector<LogitAdjustment> adjustments;
  for (const Case& c : cases) {
    AppendDeviceSamplingRow(c.params, c.prompt, c.output, kEos, table.vocab, c.seed, c.logits_row,
                            &rows, &adjustments);
  }
  std::vector<DeviceSampleResult> results(rows.size());
  std::memset(static_cast<void*>(results.data()), 0x7f,
              results.size() * sizeof(DeviceSampleResult));
  const absl::Status status = cuda.SampleRows(table.device, rows, adjustments, results);
  INFO(status.ToString());
  REQUIRE(status.ok());
  CheckWritten(results);
  return results;
}

SampleResult RunHost(BatchSampler& sampler, const Table& table, const Case& c) {
  SampleResult out;
  sampler.SampleOne(SamplingRow{table.Row(c.logits_row), &c.params, c.prompt, c.output, c.seed},
                    &out);
  return out;
}

std::vector<int32_t> RandomTokens(int n, int vocab, std::mt19937& rng) {
  std::uniform_int_distribution<int32_t> id(0, vocab - 1);
  std::vector<int32_t> out(n);
  for (int32_t& t : out) t = id(rng);
  return out;
}

// The row's `n` largest ids (for histories that matter to the argmax).
std::vector<int32_t> TopIds(std::span<const float> row, int n) {
  std::vector<int32_t> ids(row.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
  std::partial_sort(ids.begin(), ids.begin() + n, ids.end(), [&](int32_t a, int32_t b) {
    return row[a] > row[b] || (row[a] == row[b] && a < b);
  });
  ids.resize(n);
  return ids;
}

// Greedy variants whose adjustments move the argmax.
std::vector<Case> GreedyCases(const Table& table, std::mt19937& rng) {
  std::vector<Case> cases;
  for (int r = 0; r < table.rows; ++r) {
    const std::vector<int32_t> top = TopIds(table.Row(r), 12);
    Case base;
    base.logits_row = r;
    base.params.temperature = 0.0f;
    cases.push_back(base);
    Case bias = base;
    bias.params.logit_bias = {{top[0], -6.0f}, {top[5], 3.5f}, {top[1], -100.0f}};
    cases.push_back(bias);
    Case mask = base;  // EOS 2 and 7, stop ids: the top two
    mask.params.min_tokens = 5;
    mask.params.stop_token_ids = {top[0], top[1]};
    mask.output = {top[3], top[3]};
    cases.push_back(mask);
    Case ignore_eos = mask;
    ignore_eos.params.ignore_eos = true;
    ignore_eos.params.stop_token_ids = {top[1]};
    cases.push_back(ignore_eos);
    Case repetition = base;
    repetition.params.repetition_penalty = 1.7f;
    repetition.prompt = {top[0], top[2], top[0], 5, 6};
    repetition.output = {top[1], top[4]};
    cases.push_back(repetition);
    Case counted = base;
    counted.params.presence_penalty = 0.8f;
    counted.params.frequency_penalty = 0.45f;
    counted.output = {top[0], top[0], top[0], top[1], top[2], top[2]};
    cases.push_back(counted);
    Case all = base;
    all.params.logit_bias = {{top[6], 1.25f}, {top[0], -0.5f}};
    all.params.min_tokens = 3;
    all.params.stop_token_ids = {top[2]};
    all.params.repetition_penalty = 0.8f;  // < 1 raises repeated logits
    all.params.presence_penalty = -0.3f;
    all.params.frequency_penalty = 0.2f;
    all.prompt = RandomTokens(40, table.vocab, rng);
    all.prompt.push_back(top[3]);
    all.output = {top[1], top[7], top[7]};
    cases.push_back(all);
  }
  return cases;
}

TEST_CASE("device greedy with bias, min_tokens mask and penalties picks the host's token") {
  ALIGNSERVE_REQUIRE_CUDA();
  auto cuda = MakeCuda();
  testing::Side side(*cuda);
  std::mt19937 rng(11);
  BatchSampler sampler(kEos);
  for (int vocab : kVocabs) {
    const Table table = KindTable(side, vocab, 100 + vocab);
    const std::vector<Case> cases = GreedyCases(table, rng);
    const std::vector<DeviceSampleResult> got = RunDevice(*cuda, table, cases);
    for (size_t i = 0; i < cases.size(); ++i) {
      INFO("vocab " << vocab << " case " << i << " (row " << cases[i].logits_row << ")");
      CHECK(got[i].token == RunHost(sampler, table, cases[i]).token);
      CHECK(got[i].num_top == 0);
    }
  }
}

bool Near(float got, float want) {
  return (std::isnan(got) && std::isnan(want)) || got == want || std::fabs(got - want) <= 1e-4f;
}

// The device's logprobs of a result against ComputePositionLogprobs of the
// raw row for the token it drew.
void CheckLogprobs(const Table& table, const Case& c, const DeviceSampleResult& got) {
  PositionLogprobs want;
  ComputePositionLogprobs(table.Row(c.logits_row), got.token, *c.params.logprobs, &want);
  CHECK(Near(got.logprob, want.logprob));
  CHECK(got.rank == want.rank);
  REQUIRE(got.num_top == static_cast<int>(want.top.size()));
  for (int j = 0; j < got.num_top; ++j) {
    INFO("entry " << j);
    CHECK(got.top_tokens[j] == want.top[j].token);
    CHECK(Near(got.top_logprobs[j], want.top[j].logprob));
  }
}

TEST_CASE("device logprobs equal ComputePositionLogprobs of the raw row") {
  ALIGNSERVE_REQUIRE_CUDA();
  auto cuda = MakeCuda();
  testing::Side side(*cuda);
  std::mt19937 rng(12);
  BatchSampler sampler(kEos);
  for (int vocab : kVocabs) {
    const Table table = KindTable(side, vocab, 200 + vocab);
    std::vector<Case> cases;
    for (int n : {0, 1, 5, 20}) {
      for (int r = 0; r < table.rows; ++r) {
        for (float temperature : {0.0f, 1.0f}) {
          Case c;
          c.logits_row = r;
          c.params.temperature = temperature;
          c.params.top_p = temperature > 0 ? 0.9f : 1.0f;
          c.params.logprobs = n;
          c.params.logit_bias = {{3, 5.0f}};  // logprobs stay the raw row's
          c.seed = rng();
          cases.push_back(c);
        }
      }
    }
    const std::vector<DeviceSampleResult> got = RunDevice(*cuda, table, cases);
    for (size_t i = 0; i < cases.size(); ++i) {
      const Case& c = cases[i];
      INFO("vocab " << vocab << " row " << c.logits_row << " n " << *c.params.logprobs << " T "
                    << c.params.temperature);
      if (c.params.temperature == 0.0f) CHECK(got[i].token == RunHost(sampler, table, c).token);
      CheckLogprobs(table, c, got[i]);
    }
  }
}

TEST_CASE("untruncated seeded device draws equal the host's token up to rounding") {
  ALIGNSERVE_REQUIRE_CUDA();
  auto cuda = MakeCuda();
  testing::Side side(*cuda);
  std::mt19937 rng(13);
  BatchSampler sampler(kEos);
  int pairs = 0, equal = 0;
  for (int vocab : kVocabs) {
    const Table table = KindTable(side, vocab, 300 + vocab);
    std::vector<Case> cases;
    for (float temperature : {0.7f, 1.0f, 1.5f}) {
      for (int r = 0; r < table.rows; ++r) {
        for (int s = 0; s < 30; ++s) {
          Case c;
          c.logits_row = r;
          c.params.temperature = temperature;
          c.output = RandomTokens(static_cast<int>(rng() % 50), vocab, rng);  // the step
          c.seed = (uint64_t{rng()} << 32) | rng();
          cases.push_back(c);
        }
      }
    }
    const std::vector<DeviceSampleResult> got = RunDevice(*cuda, table, cases);
    for (size_t i = 0; i < cases.size(); ++i) {
      ++pairs;
      equal += got[i].token == RunHost(sampler, table, cases[i]).token;
    }
  }
  INFO(equal << " of " << pairs << " draws equal");
  CHECK(pairs >= 2000);
  CHECK(equal >= 0.995 * pairs);
}

struct Truncation {
  int top_k;
  float top_p;
  float min_p;
};
constexpr Truncation kTruncations[] = {
    {1, 1.0f, 0.0f},  {40, 1.0f, 0.0f},  {0, 0.9f, 0.0f},   {0, 0.5f, 0.0f},
    {0, 1.0f, 0.05f}, {40, 0.9f, 0.05f}, {100, 0.5f, 0.0f}, {5000, 0.95f, 0.0f},
    {0, 0.99f, 0.0f}, {0, 0.9f, 0.01f},  {20, 1.0f, 0.1f},
};

std::set<int32_t> KeptSet(BatchSampler& sampler, const Table& table, const Case& c) {
  std::vector<TokenProb> dist;
  sampler.Distribution(SamplingRow{table.Row(c.logits_row), &c.params, c.prompt, c.output, c.seed},
                       &dist);
  std::set<int32_t> kept;
  for (const TokenProb& tp : dist) kept.insert(tp.token);
  return kept;
}

TEST_CASE("every truncated device draw lies in the host's kept set") {
  ALIGNSERVE_REQUIRE_CUDA();
  auto cuda = MakeCuda();
  testing::Side side(*cuda);
  std::mt19937 rng(14);
  BatchSampler sampler(kEos);
  for (int vocab : kVocabs) {
    const Table table = KindTable(side, vocab, 400 + vocab);
    std::vector<Case> cases;
    for (const Truncation& t : kTruncations) {
      for (float temperature : {0.7f, 1.0f, 1.5f}) {
        for (int r = 0; r < table.rows; ++r) {
          // The host's top-k is undefined over NaN; rows without mass draw
          // the argmax, which need not be kept.
          if (r == kAllNegInf || (r == kWithNaN && t.top_k > 0)) continue;
          for (int s = 0; s < 6; ++s) {
            Case c;
            c.logits_row = r;
            c.params.temperature = temperature;
            c.params.top_k = t.top_k;
            c.params.top_p = t.top_p;
            c.params.min_p = t.min_p;
            if (s == 5) c.params.logit_bias = {{TopIds(table.Row(r), 1)[0], -2.0f}};
            c.seed = rng();
            cases.push_back(c);
          }
        }
      }
    }
    const std::vector<DeviceSampleResult> got = RunDevice(*cuda, table, cases);
    int outside = 0;
    for (size_t i = 0; i < cases.size(); ++i) {
      const Case& c = cases[i];
      if (KeptSet(sampler, table, c).count(got[i].token) == 0) {
        ++outside;
        UNSCOPED_INFO("vocab " << vocab << " row " << c.logits_row << " top_k " << c.params.top_k
                               << " top_p " << c.params.top_p << " min_p " << c.params.min_p
                               << " T " << c.params.temperature << ": token " << got[i].token);
      }
    }
    CHECK(outside == 0);
  }
}

// 20,000 draws of one logits row (seeds 0..19,999, one launch): Pearson's
// chi-square against Distribution, bins of expected count < 5 pooled,
// against the 0.01% critical value (Wilson-Hilferty).
void CheckChiSquare(CudaBackend& cuda, const Table& table, const Case& base) {
  constexpr int kDraws = 20000;
  std::vector<Case> cases(kDraws, base);
  for (int i = 0; i < kDraws; ++i) cases[i].seed = static_cast<uint64_t>(i);
  const std::vector<DeviceSampleResult> got = RunDevice(cuda, table, cases);
  BatchSampler sampler(kEos);
  std::vector<TokenProb> dist;
  sampler.Distribution(
      SamplingRow{table.Row(base.logits_row), &base.params, base.prompt, base.output, base.seed},
      &dist);
  std::vector<int> counts(table.vocab, 0);
  for (const DeviceSampleResult& r : got) ++counts[r.token];
  double chi2 = 0.0, pooled_expected = 0.0;
  int pooled_count = 0, bins = 0, inside = 0;
  for (const TokenProb& tp : dist) {  // by probability descending
    const double expected = kDraws * tp.prob;
    inside += counts[tp.token];
    if (expected < 5.0) {
      pooled_expected += expected;
      pooled_count += counts[tp.token];
      continue;
    }
    chi2 += (counts[tp.token] - expected) * (counts[tp.token] - expected) / expected;
    ++bins;
  }
  if (pooled_expected > 0.0) {
    chi2 += (pooled_count - pooled_expected) * (pooled_count - pooled_expected) / pooled_expected;
    ++bins;
  }
  const double df = std::max(bins - 1, 1);
  const double z = 3.719;  // one-sided 1e-4
  const double h = 2.0 / (9.0 * df);
  const double critical = df * std::pow(1.0 - h + z * std::sqrt(h), 3.0);
  INFO("kept " << dist.size() << ", bins " << bins << ", chi-square " << chi2 << ", critical "
               << critical);
  CHECK(inside == kDraws);
  CHECK(chi2 < critical);
  if (dist.size() <= 8) {  // each kept token is likely enough to be drawn
    for (const TokenProb& tp : dist) CHECK(counts[tp.token] > 0);
  }
}

TEST_CASE("20000 seeded device draws follow the host's distribution (chi-square)") {
  ALIGNSERVE_REQUIRE_CUDA();
  auto cuda = MakeCuda();
  testing::Side side(*cuda);
  std::mt19937 rng(15);
  std::normal_distribution<float> normal(0.0f, 1.5f);
  std::vector<float> moderate(1003);
  for (float& x : moderate) x = normal(rng);
  const Table table = MakeTable(side, {moderate});
  struct Config {
    const char* name;
    float temperature;
    Truncation t;
  };
  const Config configs[] = {{"top_k 40 + top_p 0.9", 1.0f, {40, 0.9f, 0.0f}},
                            {"top_p 0.5", 1.5f, {0, 0.5f, 0.0f}},
                            {"min_p 0.05", 0.7f, {0, 1.0f, 0.05f}},
                            {"top_k 40 + top_p 0.9 + min_p 0.05", 0.8f, {40, 0.9f, 0.05f}},
                            {"untruncated", 1.0f, {0, 1.0f, 0.0f}}};
  for (const Config& config : configs) {
    INFO(config.name);
    Case c;
    c.params.temperature = config.temperature;
    c.params.top_k = config.t.top_k;
    c.params.top_p = config.t.top_p;
    c.params.min_p = config.t.min_p;
    CheckChiSquare(*cuda, table, c);
  }
}

TEST_CASE("a top-p cut inside thousands of tied logits keeps the lowest ids") {
  ALIGNSERVE_REQUIRE_CUDA();
  auto cuda = MakeCuda();
  testing::Side side(*cuda);
  std::mt19937 rng(16);
  // `ties` equal logits at random ids, the rest far below: the cut lands on
  // the second tie. 5,000 ties overflow shared memory (the radix path), 100
  // do not (sorted candidates).
  for (int ties : {100, 5000}) {
    INFO(ties << " ties");
    std::vector<float> row(50257, -5.0f);
    std::vector<int32_t> ids(row.size());
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
    std::shuffle(ids.begin(), ids.end(), rng);
    for (int i = 0; i < ties; ++i) row[ids[i]] = 1.0f;
    const Table table = MakeTable(side, {row});
    const double total = ties + (row.size() - ties) * std::exp(-6.0);
    for (int top_k : {0, 3}) {
      INFO("top_k " << top_k);
      Case c;
      c.params.temperature = 1.0f;
      c.params.top_k = top_k;
      const double kept_mass = top_k > 0 ? ties : total;
      c.params.top_p = static_cast<float>(1.5 / kept_mass);
      BatchSampler sampler(kEos);
      std::vector<TokenProb> dist;
      sampler.Distribution(SamplingRow{table.Row(0), &c.params, {}, {}, 0}, &dist);
      REQUIRE(dist.size() == 2);
      CheckChiSquare(*cuda, table, c);
    }
  }
}

// Small enough for compute-sanitizer (memcheck, racecheck, synccheck):
// `cuda_sampling_test "[paths]"`.
TEST_CASE("one small batch takes every path of the kernel", "[paths]") {
  ALIGNSERVE_REQUIRE_CUDA();
  auto cuda = MakeCuda();
  testing::Side side(*cuda);
  std::mt19937 rng(20);
  // Row 0: random; row 1: 5,000 ties at the top (every boundary inside
  // them overflows shared memory: the radix paths); both 50,257 wide.
  std::vector<float> ties(50257, -5.0f);
  for (int i = 0; i < 5000; ++i) ties[(i * 7919) % ties.size()] = 1.0f;
  const Table table = MakeTable(side, {RandomRow(50257, rng), ties});
  std::vector<Case> cases;
  const auto add = [&](int row, float temperature, int top_k, float top_p, float min_p,
                       int logprobs) {
    Case c;
    c.logits_row = row;
    c.params.temperature = temperature;
    c.params.top_k = top_k;
    c.params.top_p = top_p;
    c.params.min_p = min_p;
    if (logprobs >= 0) c.params.logprobs = logprobs;
    c.seed = rng();
    cases.push_back(c);
  };
  for (int row : {0, 1}) {
    add(row, 0.0f, 0, 1.0f, 0.0f, 5);      // greedy with logprobs
    add(row, 1.0f, 0, 1.0f, 0.0f, -1);     // untruncated
    add(row, 1.0f, 40, 1.0f, 0.0f, 0);     // top-k (count, sorted candidates or radix)
    add(row, 1.0f, 3000, 1.0f, 0.0f, -1);  // a k-th inside the ties
    add(row, 1.0f, 0, 0.5f, 0.0f, 20);     // top-p (mass) and 20 logprobs
    add(row, 0.8f, 40, 0.9f, 0.05f, 1);    // all three truncations
  }
  Case penalized = cases[0];
  penalized.params.repetition_penalty = 1.3f;
  penalized.params.logit_bias = {{11, 2.0f}};
  penalized.prompt = RandomTokens(50, table.vocab, rng);
  cases.push_back(penalized);
  const std::vector<DeviceSampleResult> got = RunDevice(*cuda, table, cases);
  BatchSampler sampler(kEos);
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    INFO("case " << i);
    if (c.params.greedy()) {
      CHECK(got[i].token == RunHost(sampler, table, c).token);
    } else {
      CHECK(KeptSet(sampler, table, c).count(got[i].token) == 1);
    }
    if (c.params.logprobs) {
      CheckLogprobs(table, c, got[i]);
    }
  }
}

TEST_CASE("device sampling is deterministic: the same call gives the same bits") {
  ALIGNSERVE_REQUIRE_CUDA();
  auto cuda = MakeCuda();
  testing::Side side(*cuda);
  std::mt19937 rng(17);
  const Table table = KindTable(side, 128256, 1700);
  std::vector<Case> cases = GreedyCases(table, rng);
  for (const Truncation& t : kTruncations) {
    for (int r = 0; r < table.rows; ++r) {
      Case c;
      c.logits_row = r;
      c.params.temperature = 0.9f;
      c.params.top_k = t.top_k;
      c.params.top_p = t.top_p;
      c.params.min_p = t.min_p;
      c.params.logprobs = static_cast<int>(rng() % 21);
      c.params.repetition_penalty = 1.1f;
      c.prompt = RandomTokens(30, table.vocab, rng);
      c.seed = rng();
      cases.push_back(c);
    }
  }
  const std::vector<DeviceSampleResult> first = RunDevice(*cuda, table, cases);
  const std::vector<DeviceSampleResult> second = RunDevice(*cuda, table, cases);
  CHECK(std::memcmp(first.data(), second.data(), first.size() * sizeof(DeviceSampleResult)) == 0);
}

TEST_CASE("bad SampleRows input is InvalidArgument and the backend keeps working") {
  ALIGNSERVE_REQUIRE_CUDA();
  auto cuda = MakeCuda();
  testing::Side side(*cuda);
  std::mt19937 rng(18);
  const Table table = KindTable(side, 1003, 1800);
  const int32_t want = TopIds(table.Row(0), 1)[0];
  DeviceSamplingRow good;
  good.temperature = 0.0f;
  const std::vector<LogitAdjustment> adjustments = {{.token = 5, .bias = 1.0f}};
  std::vector<DeviceSampleResult> results(1);
  const auto sample = [&](const Tensor& logits, std::vector<DeviceSamplingRow> rows,
                          std::span<const LogitAdjustment> adj, size_t num_results) {
    results.assign(num_results, DeviceSampleResult{});
    return cuda->SampleRows(logits, rows, adj, results);
  };
  const auto works = [&] {
    const absl::Status status = sample(table.device, {good}, adjustments, 1);
    REQUIRE(status.ok());
    CHECK(results[0].token == want);
  };
  works();
  CHECK(sample(table.device, {}, {}, 0).ok());  // nothing to do

  Tensor bf16 = side.Make(table.host, table.rows, table.vocab, DType::kBF16);
  Tensor flat = table.device;
  flat.rank = 1;
  flat.shape[0] = static_cast<int64_t>(table.rows) * table.vocab;
  Tensor cube = table.device;
  cube.rank = 3;
  cube.shape[0] = 1;
  cube.shape[1] = table.rows;
  cube.shape[2] = table.vocab;
  for (const Tensor* logits : {&bf16, &flat, &cube}) {
    CHECK(sample(*logits, {good}, {}, 1).code() == absl::StatusCode::kInvalidArgument);
    works();
  }
  CHECK(sample(table.device, {good}, {}, 2).code() == absl::StatusCode::kInvalidArgument);
  works();

  std::vector<DeviceSamplingRow> bad_rows;
  const auto with = [&](auto edit) {
    DeviceSamplingRow r = good;
    edit(r);
    bad_rows.push_back(r);
  };
  with([](DeviceSamplingRow& r) { r.logits_row = -1; });
  with([&](DeviceSamplingRow& r) { r.logits_row = table.rows; });
  with([](DeviceSamplingRow& r) {
    r.adjust_begin = 1;
    r.adjust_count = 1;
  });
  with([](DeviceSamplingRow& r) {
    r.adjust_begin = -1;
    r.adjust_count = 1;
  });
  with([](DeviceSamplingRow& r) { r.adjust_count = 2; });
  with([](DeviceSamplingRow& r) { r.num_logprobs = kMaxDeviceLogprobs + 1; });
  with([](DeviceSamplingRow& r) { r.num_logprobs = -2; });
  with([](DeviceSamplingRow& r) { r.temperature = kNaN; });
  with([](DeviceSamplingRow& r) { r.temperature = -1.0f; });
  with([](DeviceSamplingRow& r) { r.temperature = kInf; });
  with([](DeviceSamplingRow& r) { r.top_p = 0.0f; });
  with([](DeviceSamplingRow& r) { r.top_p = 1.5f; });
  with([](DeviceSamplingRow& r) { r.top_p = kNaN; });
  with([](DeviceSamplingRow& r) { r.min_p = -0.1f; });
  with([](DeviceSamplingRow& r) { r.min_p = 1.1f; });
  with([](DeviceSamplingRow& r) { r.min_p = kNaN; });
  for (size_t i = 0; i < bad_rows.size(); ++i) {
    INFO("bad row " << i);
    // The bad row second, behind a good one: nothing is launched.
    const absl::Status status = sample(table.device, {good, bad_rows[i]}, adjustments, 2);
    INFO(status.ToString());
    CHECK(status.code() == absl::StatusCode::kInvalidArgument);
    works();
  }
  for (int32_t token : {-1, 1003, 5000}) {
    INFO("adjusted token " << token);
    DeviceSamplingRow r = good;
    r.adjust_count = 1;
    const std::vector<LogitAdjustment> outside = {{.token = token, .bias = 1.0f}};
    CHECK(sample(table.device, {r}, outside, 1).code() == absl::StatusCode::kInvalidArgument);
    works();
  }
  DeviceSamplingRow twice = good;
  twice.adjust_count = 2;
  const std::vector<LogitAdjustment> repeated = {{.token = 9, .bias = 1.0f},
                                                 {.token = 9, .bias = 2.0f}};
  CHECK(sample(table.device, {twice}, repeated, 1).code() == absl::StatusCode::kInvalidArgument);
  works();
}

// Not run by default: `cuda_sampling_test "[.timing]"` prints the time of a
// 256-row call over a 128,256-token vocabulary per configuration.
TEST_CASE("device sampling time for 256 rows of 128256 logits", "[.timing]") {
  ALIGNSERVE_REQUIRE_CUDA();
  auto cuda = MakeCuda();
  testing::Side side(*cuda);
  std::mt19937 rng(19);
  constexpr int kRows = 256, kVocab = 128256;
  std::vector<std::vector<float>> rows;
  for (int r = 0; r < kRows; ++r) rows.push_back(RandomRow(kVocab, rng));
  const Table table = MakeTable(side, std::move(rows));
  struct Config {
    const char* name;
    float temperature;
    Truncation t;
    int logprobs;
    float repetition;
  };
  const Config configs[] = {
      {"greedy + repetition penalty", 0.0f, {0, 1.0f, 0.0f}, -1, 1.2f},
      {"temperature", 0.8f, {0, 1.0f, 0.0f}, -1, 1.0f},
      {"top_p 0.9", 0.8f, {0, 0.9f, 0.0f}, -1, 1.0f},
      {"top_k 40 + top_p 0.9 + min_p 0.05", 0.8f, {40, 0.9f, 0.05f}, -1, 1.0f},
      {"top_p 0.9 + 20 logprobs", 0.8f, {0, 0.9f, 0.0f}, 20, 1.0f}};
  for (const Config& config : configs) {
    std::vector<Case> cases(kRows);
    for (int r = 0; r < kRows; ++r) {
      cases[r].logits_row = r;
      cases[r].params.temperature = config.temperature;
      cases[r].params.top_k = config.t.top_k;
      cases[r].params.top_p = config.t.top_p;
      cases[r].params.min_p = config.t.min_p;
      cases[r].params.repetition_penalty = config.repetition;
      if (config.logprobs >= 0) cases[r].params.logprobs = config.logprobs;
      cases[r].prompt = RandomTokens(200, kVocab, rng);
      cases[r].seed = rng();
    }
    std::vector<DeviceSamplingRow> device_rows;
    std::vector<LogitAdjustment> adjustments;
    for (const Case& c : cases) {
      AppendDeviceSamplingRow(c.params, c.prompt, c.output, kEos, table.vocab, c.seed, c.logits_row,
                              &device_rows, &adjustments);
    }
    std::vector<DeviceSampleResult> results(kRows);
    REQUIRE(cuda->SampleRows(table.device, device_rows, adjustments, results).ok());  // warm
    constexpr int kRepeats = 20;
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kRepeats; ++i) {
      REQUIRE(cuda->SampleRows(table.device, device_rows, adjustments, results).ok());
    }
    const double us =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
            .count() /
        kRepeats;
    WARN(config.name << ": " << us << " us per call of " << kRows << " rows");
  }
}

}  // namespace
}  // namespace alignserve
