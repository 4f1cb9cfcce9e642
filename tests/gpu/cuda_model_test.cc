// The whole Llama forward pass on the CUDA backend against the CPU backend:
// tests/data/models/tiny_llama3 (random weights, f32 safetensors, GQA,
// llama3 rope scaling, head_dim 16) at every position, whole prefill,
// chunked prefill and a mixed batch. bf16 activations through 3 layers move
// logits (|logit| <= ~4.4) by a few hundredths; the bound below is a few
// times what bf16 rounding gives, and argmax must agree wherever the CPU's
// top two logits are clearly apart.
//
// Needs the model to copy f32 logits: see the CUDA backend report (the
// model's logits and hidden tensors must be F32 on a bf16 backend).
#include <algorithm>
#include <catch2/catch.hpp>
#include <memory>
#include <random>
#include <string>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "models/llama_model.h"
#include "models/model_loader.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/models/model_test_util.h"
#include "tests/test_paths.h"

namespace alignserve {
namespace {

using testing::AllPositionLogits;
using testing::MaxAbsDiff;
using testing::ReadJson;
using testing::ShuffledBlocks;
using testing::SourcePath;

constexpr float kMaxLogitDiff = 0.15f;
constexpr float kClearMargin = 0.3f;  // argmax must agree when top-2 differ by more

const ModelOptions kNoText{.max_model_len = 0, .load_text = false};

// Positions whose argmax differs although the reference's top two logits
// are more than kClearMargin apart.
int ClearArgmaxMismatches(const std::vector<float>& got, const std::vector<float>& want,
                          int vocab) {
  int mismatches = 0;
  for (size_t row = 0; row * vocab < want.size(); ++row) {
    const float* w = want.data() + row * vocab;
    const float* g = got.data() + row * vocab;
    std::vector<float> sorted(w, w + vocab);
    std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
    if (sorted[0] - sorted[1] <= kClearMargin) continue;
    if (std::max_element(w, w + vocab) - w != std::max_element(g, g + vocab) - g) ++mismatches;
  }
  return mismatches;
}

// One checkpoint on the CPU backend (the reference) and on CUDA, each with
// a cache of 64 blocks of 16 tokens.
struct ModelPair {
  std::unique_ptr<LoadedModel> cpu, gpu;
  std::unique_ptr<KvCache> cpu_cache, gpu_cache;
  Model& cm() { return *cpu->model; }
  Model& gm() { return *gpu->model; }
};

ModelPair LoadOnBoth(const std::string& path, Backend& cpu, Backend& cuda) {
  ModelPair pair;
  auto cpu_model = LoadModel(path, cpu, kNoText);
  auto gpu_model = LoadModel(path, cuda, kNoText);
  REQUIRE(cpu_model.ok());
  INFO(gpu_model.status().ToString());
  REQUIRE(gpu_model.ok());
  pair.cpu = std::move(*cpu_model);
  pair.gpu = std::move(*gpu_model);
  auto cpu_cache = pair.cm().AllocateKvCache(64, 16);
  auto gpu_cache = pair.gm().AllocateKvCache(64, 16);
  REQUIRE(cpu_cache.ok());
  REQUIRE(gpu_cache.ok());
  pair.cpu_cache = std::move(*cpu_cache);
  pair.gpu_cache = std::move(*gpu_cache);
  return pair;
}

TEST_CASE("tiny llama3 logits on CUDA match the CPU backend at every position") {
  ALIGNSERVE_REQUIRE_CUDA();
  CpuBackend cpu;
  auto cuda = CreateCudaBackend(0);
  REQUIRE(cuda.ok());
  ModelPair pair = LoadOnBoth(SourcePath("tests/data/models/tiny_llama3"), cpu, **cuda);
  Model& cm = pair.cm();
  Model& gm = pair.gm();
  const int vocab = cm.config().vocab_size;
  const nlohmann::json fixture = ReadJson(SourcePath("tests/data/models/tiny_llama3_logits.json"));
  for (const nlohmann::json& seq : fixture["sequences"]) {
    const std::vector<int32_t> ids = seq["ids"].get<std::vector<int32_t>>();
    const std::vector<int32_t> blocks =
        ShuffledBlocks(static_cast<int>((ids.size() + 15) / 16), 64, 5);
    auto want = AllPositionLogits(cm, *pair.cpu_cache, ids, blocks);
    REQUIRE(want.ok());
    for (int chunk : {0, 5}) {
      INFO(ids.size() << " tokens, chunk " << chunk);
      auto got = AllPositionLogits(gm, *pair.gpu_cache, ids, blocks, chunk);
      INFO(got.status().ToString());
      REQUIRE(got.ok());
      REQUIRE(got->size() == want->size());
      const float diff = MaxAbsDiff(got->data(), want->data(), want->size());
      INFO("max abs diff " << diff);
      CHECK(diff <= kMaxLogitDiff);
      CHECK(ClearArgmaxMismatches(*got, *want, vocab) == 0);
    }
  }
}

// Sequence classifiers (score heads of reward models): rows of num_labels
// scores (|score| <= ~7 here, so a bound a little wider than the logits').
TEST_CASE("sequence classifiers on CUDA give the CPU's scores at every position") {
  ALIGNSERVE_REQUIRE_CUDA();
  constexpr float kMaxScoreDiff = 0.25f;
  CpuBackend cpu;
  auto cuda = CreateCudaBackend(0);
  REQUIRE(cuda.ok());
  for (const char* name : {"tiny_llama3_reward", "tiny_qwen2_classifier3"}) {
    INFO(name);
    ModelPair pair = LoadOnBoth(SourcePath(std::string("tests/data/models/") + name), cpu, **cuda);
    Model& cm = pair.cm();
    Model& gm = pair.gm();
    REQUIRE(gm.config().logits_size() == cm.config().num_labels);
    const nlohmann::json fixture =
        ReadJson(SourcePath(std::string("tests/data/models/") + name + "_scores.json"));
    for (const nlohmann::json& seq : fixture["sequences"]) {
      const std::vector<int32_t> ids = seq["ids"].get<std::vector<int32_t>>();
      const std::vector<int32_t> blocks =
          ShuffledBlocks(static_cast<int>((ids.size() + 15) / 16), 64, 7);
      auto want = AllPositionLogits(cm, *pair.cpu_cache, ids, blocks);
      auto got = AllPositionLogits(gm, *pair.gpu_cache, ids, blocks);
      REQUIRE(want.ok());
      INFO(got.status().ToString());
      REQUIRE(got.ok());
      REQUIRE(got->size() == want->size());
      REQUIRE(got->size() == ids.size() * static_cast<size_t>(cm.config().num_labels));
      const float diff = MaxAbsDiff(got->data(), want->data(), want->size());
      INFO(ids.size() << " tokens: max abs diff " << diff);
      CHECK(diff <= kMaxScoreDiff);
    }
  }
}

TEST_CASE("a mixed batch on CUDA gives the CPU's last-token logits and hidden states") {
  ALIGNSERVE_REQUIRE_CUDA();
  CpuBackend cpu;
  auto cuda = CreateCudaBackend(0);
  REQUIRE(cuda.ok());
  const std::string path = SourcePath("tests/data/models/tiny_llama3");
  auto cpu_model = LoadModel(path, cpu, kNoText);
  auto gpu_model = LoadModel(path, **cuda, kNoText);
  REQUIRE(cpu_model.ok());
  REQUIRE(gpu_model.ok());
  const nlohmann::json fixture = ReadJson(SourcePath("tests/data/models/tiny_llama3_logits.json"));
  std::vector<ForwardOutput> outs(2);
  for (int side = 0; side < 2; ++side) {
    Model& model = *(side == 0 ? *cpu_model : *gpu_model)->model;
    auto cache = model.AllocateKvCache(64, 16);
    REQUIRE(cache.ok());
    BatchLayout layout;
    int next_block = 0;
    for (const nlohmann::json& seq : fixture["sequences"]) {
      const std::vector<int32_t> ids = seq["ids"].get<std::vector<int32_t>>();
      std::vector<int32_t> table;
      for (size_t b = 0; b < (ids.size() + 15) / 16; ++b) table.push_back(next_block++);
      layout.AddSequence(ids, 0, table, 16, true);
    }
    layout.Finish();
    REQUIRE(model.Forward(layout, **cache, true, outs[side]).ok());
  }
  REQUIRE(outs[1].logits.size() == outs[0].logits.size());
  REQUIRE(outs[1].hidden.size() == outs[0].hidden.size());
  CHECK(MaxAbsDiff(outs[1].logits.data(), outs[0].logits.data(), outs[0].logits.size()) <=
        kMaxLogitDiff);
  // The final norm's output, O(1) per element.
  CHECK(MaxAbsDiff(outs[1].hidden.data(), outs[0].hidden.data(), outs[0].hidden.size()) <=
        kMaxLogitDiff);
}

// Two copies of the model on one GPU, one replaying CUDA graphs, one op by
// op, fed the same decode steps: batches of 5 then 3 sequences (two batch
// buckets), one sequence crossing 256 tokens (a wider block-table bucket,
// so a new graph), 40 steps in all, each step's tokens the op-by-op run's
// argmax.
TEST_CASE("decode steps replayed from CUDA graphs give the op-by-op logits") {
  ALIGNSERVE_REQUIRE_CUDA();
  auto cuda = CreateCudaBackend(0);
  REQUIRE(cuda.ok());
  const std::string path = SourcePath("tests/data/models/tiny_llama3");
  auto eager_model = LoadModel(path, **cuda, kNoText);
  auto graph_model = LoadModel(path, **cuda, kNoText);
  REQUIRE(eager_model.ok());
  REQUIRE(graph_model.ok());
  Model& eager = *(*eager_model)->model;
  Model& graphed = *(*graph_model)->model;
  eager.SetDecodeGraphs(0);
  graphed.SetDecodeGraphs(256);
  const int vocab = eager.config().vocab_size;
  constexpr int kBlock = 16, kBlocksPerSeq = 24;
  auto eager_cache = eager.AllocateKvCache(5 * kBlocksPerSeq, kBlock);
  auto graph_cache = graphed.AllocateKvCache(5 * kBlocksPerSeq, kBlock);
  REQUIRE(eager_cache.ok());
  REQUIRE(graph_cache.ok());
  std::mt19937 rng(11);
  const std::vector<int> prompt_lens = {3, 17, 250, 50, 9};
  std::vector<std::vector<int32_t>> tables;
  std::vector<int32_t> next_token, position;
  BatchLayout prefill;
  for (int s = 0; s < 5; ++s) {
    std::vector<int32_t> ids(prompt_lens[s]);
    for (int32_t& id : ids) id = static_cast<int32_t>(rng() % vocab);
    // Disjoint tables: sequence s owns blocks [24 s, 24 s + 24), shuffled.
    tables.push_back(ShuffledBlocks(kBlocksPerSeq, kBlocksPerSeq, 100 + s));
    for (int32_t& b : tables.back()) b += s * kBlocksPerSeq;
    prefill.AddSequence(ids, 0, tables.back(), kBlock, true);
    position.push_back(prompt_lens[s]);
  }
  prefill.Finish();
  ForwardOutput eager_out, graph_out;
  REQUIRE(eager.Forward(prefill, **eager_cache, false, eager_out).ok());
  REQUIRE(graphed.Forward(prefill, **graph_cache, false, graph_out).ok());
  next_token = eager_out.argmax;
  for (int step = 0; step < 40; ++step) {
    const int live = step < 20 ? 5 : 3;
    BatchLayout layout;
    for (int s = 0; s < live; ++s) {
      layout.AddSequence({next_token[s]}, position[s], tables[s], kBlock, true);
    }
    layout.Finish();
    INFO("step " << step);
    REQUIRE(eager.Forward(layout, **eager_cache, false, eager_out).ok());
    auto graph_status = graphed.Forward(layout, **graph_cache, false, graph_out);
    INFO(graph_status.ToString());
    REQUIRE(graph_status.ok());
    REQUIRE(graph_out.logits.size() == eager_out.logits.size());
    CHECK(MaxAbsDiff(graph_out.logits.data(), eager_out.logits.data(), eager_out.logits.size()) <=
          kMaxLogitDiff);
    CHECK(ClearArgmaxMismatches(graph_out.logits, eager_out.logits, vocab) == 0);
    for (int s = 0; s < live; ++s) {
      next_token[s] = eager_out.argmax[s];
      ++position[s];
    }
  }
  // Shapes (8, 16), then (8, 32) once sequence 2 passed 256, then (4, 32):
  // each shape's first step runs op by op and captures; a capture whose
  // warm-up grew a workspace drops the older graphs (they point at the old
  // one), so a few more steps capture again. Every other step replays.
  auto* llama = dynamic_cast<LlamaModel*>(&graphed);
  REQUIRE(llama != nullptr);
  CHECK(llama->num_decode_graphs() >= 1);
  CHECK(llama->num_graph_replays() >= 30);
}

}  // namespace
}  // namespace alignserve
