// The engine's device-sampling path (EngineConfig::device_sampling) on the
// CPU: a model wrapper stands in for a GPU's Backend::SampleRows by drawing
// each DeviceSamplingRow on the host, from the raw row, its adjustments and
// the host sampler (the documented semantics of kernels/device_sampling.h,
// walked in the host's order). What this proves without a GPU is the
// engine's side: which rows go to the device, the adjustments it builds from
// each request (bias, min_tokens mask, penalties), the Philox step, n > 1
// fork draws sharing one row, and the results folded back in draw order with
// their logprobs. The oracle is the same engine sampling on the host: every
// token and logprob must be identical. (The CUDA kernel itself is checked
// against the host sampler in tests/gpu/cuda_sampling_test.cc.)
#include <catch2/catch.hpp>
#include <map>
#include <memory>
#include <vector>

#include "engine/device_sampling_rows.h"
#include "engine/llm_engine.h"
#include "engine/logprobs.h"
#include "engine/sampler.h"
#include "tests/engine/engine_choices.h"
#include "tests/engine/shared_default_model.h"

namespace alignserve {
namespace {

using testing::CheckSameLogprobs;
using testing::ChoiceKey;
using testing::ChoiceOutput;
using testing::RunToCompletion;
using testing::SharedModel;

// Forwards to the real model; draws ForwardOptions::device_rows on the host.
class HostDrawModel final : public Model {
 public:
  explicit HostDrawModel(Model& inner) : inner_(inner) {}

  const ModelConfig& config() const override { return inner_.config(); }
  Backend& backend() override { return inner_.backend(); }
  int max_model_len() const override { return inner_.max_model_len(); }
  bool SupportsDeviceSampling() override { return true; }
  KvCacheSpec KvSpec(int num_blocks, int block_size) override {
    return inner_.KvSpec(num_blocks, block_size);
  }
  absl::StatusOr<std::unique_ptr<KvCache>> AllocateKvCache(int num_blocks,
                                                           int block_size) override {
    return inner_.AllocateKvCache(num_blocks, block_size);
  }
  absl::Status Forward(const BatchLayout& layout, KvCache& cache, const ForwardOptions& options,
                       ForwardOutput& out) override {
    // Every row on the host (the stand-in device reads them there); the
    // engine's own choice is checked: a device row is never a host row.
    for (const DeviceSamplingRow& r : options.device_rows) {
      if (!options.host_logits_rows.empty() && options.host_logits_rows[r.logits_row] != 0) {
        return absl::InternalError("a row drawn on the device was also asked whole");
      }
    }
    num_device_rows_ += static_cast<int64_t>(options.device_rows.size());
    ForwardOptions all = options;
    all.host_logits_rows = {};
    all.device_rows = {};
    all.device_adjustments = {};
    if (absl::Status s = inner_.Forward(layout, cache, all, out); !s.ok()) return s;
    const int vocab = config().logits_size();
    out.sampled.resize(options.device_rows.size());
    for (size_t i = 0; i < options.device_rows.size(); ++i) {
      Draw(options.device_rows[i], options.device_adjustments, out, vocab, &out.sampled[i]);
    }
    return absl::OkStatus();
  }

  int64_t num_device_rows() const { return num_device_rows_; }

 private:
  // The device semantics on the host: adjust a copy of the raw row, then the
  // host sampler's truncation and draw with the row's seed and step.
  void Draw(const DeviceSamplingRow& r, std::span<const LogitAdjustment> adjustments,
            const ForwardOutput& out, int vocab, DeviceSampleResult* result) {
    const float* raw = out.row(r.logits_row, vocab);
    std::vector<float> x(raw, raw + vocab);
    ApplyLogitAdjustments(r, adjustments, x);
    SamplingParams p;
    p.temperature = r.temperature;
    p.top_k = r.top_k;
    p.top_p = r.top_p;
    p.min_p = r.min_p;
    const std::vector<int32_t> steps(r.step, 0);  // only its size is read: the Philox counter
    SampleResult drawn;
    sampler_.SampleOne(SamplingRow{x, &p, {}, steps, r.seed}, &drawn);
    *result = DeviceSampleResult{};
    result->token = drawn.token;
    if (r.num_logprobs >= 0) {
      PositionLogprobs lp;
      ComputePositionLogprobs({raw, static_cast<size_t>(vocab)}, drawn.token, r.num_logprobs, &lp);
      result->logprob = lp.logprob;
      result->rank = lp.rank;
      result->num_top = static_cast<int32_t>(lp.top.size());
      for (size_t j = 0; j < lp.top.size(); ++j) {
        result->top_tokens[j] = lp.top[j].token;
        result->top_logprobs[j] = lp.top[j].logprob;
      }
    }
  }

  Model& inner_;
  BatchSampler sampler_;
  int64_t num_device_rows_ = 0;
};

std::map<ChoiceKey, ChoiceOutput> Run(Model& model, const std::map<int64_t, SamplingParams>& params,
                                      bool device_sampling) {
  const LoadedModel& loaded = *SharedModel().loaded;
  EngineConfig config;
  config.scheduler.num_blocks = 256;
  config.scheduler.max_model_len = 512;
  config.scheduler.max_num_batched_tokens = 64;  // chunked prefill beside decodes
  config.device_sampling = device_sampling;
  auto engine = LlmEngine::Create(model, loaded.text, config);
  REQUIRE(engine.ok());
  for (const auto& [id, p] : params) {
    std::vector<int32_t> prompt;
    for (int t = 0; t < 6 + 7 * static_cast<int>(id); ++t) {
      prompt.push_back(200 + static_cast<int32_t>((t * 7919 + id * 104729) % 40000));
    }
    REQUIRE((*engine)->AddRequest(id, prompt, p).ok());
  }
  return RunToCompletion(**engine);
}

TEST_CASE("requests drawn through the device path generate what host sampling generates") {
  HostDrawModel model(*SharedModel().loaded->model);
  std::map<int64_t, SamplingParams> params;
  for (int64_t id = 0; id < 11; ++id) {
    SamplingParams& p = params[id];
    p.temperature = 0.7f + 0.05f * static_cast<float>(id);
    p.seed = 500 + static_cast<uint64_t>(id);
    p.max_tokens = 12;
    p.ignore_eos = true;
  }
  params[0].temperature = 0.0f;  // greedy with logprobs: a device row too
  params[0].logprobs = 3;
  params[1].top_k = 5;
  params[2].top_p = 0.8f;
  params[2].logprobs = 0;
  params[3].min_p = 0.1f;
  params[4].top_k = 40;
  params[4].top_p = 0.9f;
  params[4].min_p = 0.02f;
  params[4].logprobs = 5;
  params[5].logit_bias = {{13, 4.0f}, {29, -100.0f}, {1000, 2.5f}};
  params[6].repetition_penalty = 1.4f;
  params[6].frequency_penalty = 0.6f;
  params[6].presence_penalty = 0.3f;
  params[7].n = 3;  // three draws share the fork step's row
  params[7].logprobs = 2;
  params[8].min_tokens = 8;
  params[8].ignore_eos = false;
  params[8].stop_token_ids = {198, 13};
  params[9].temperature = 0.0f;  // greedy with a penalty
  params[9].repetition_penalty = 1.2f;
  params[10].temperature = 0.0f;  // plain greedy: the argmax path, not a device row
  const auto host = Run(*SharedModel().loaded->model, params, false);
  const auto device = Run(model, params, true);
  CHECK(model.num_device_rows() > 100);
  REQUIRE(device.size() == host.size());
  REQUIRE(host.size() == 13);  // 10 requests of one choice, one of three
  for (const auto& [key, h] : host) {
    INFO("request " << key.first << " choice " << key.second);
    const ChoiceOutput& d = device.at(key);
    CHECK(d.ids == h.ids);
    CHECK(d.reason == h.reason);
    CheckSameLogprobs(d.logprobs, h.logprobs, 0.0);
  }
  // min_tokens: request 8 drew no stop id among its first 8 tokens.
  REQUIRE(device.at({8, 0}).ids.size() >= 8);
  for (int i = 0; i < 8; ++i) {
    CHECK(device.at({8, 0}).ids[i] != 198);
    CHECK(device.at({8, 0}).ids[i] != 13);
  }
}

}  // namespace
}  // namespace alignserve
