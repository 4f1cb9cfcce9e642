// The Llama-family forward pass against transformers: random-weight Llama-3
// (llama3 rope scaling, GQA, sharded f32 safetensors), Qwen2 (QKV bias, tied
// embeddings, bf16) and Mistral (f16) checkpoints written by transformers,
// with full logits from tests/reference/make_model_fixtures.py.
#include <catch2/catch.hpp>

#include "kernels/cpu/cpu_backend.h"
#include "models/model_loader.h"
#include "tests/models/model_test_util.h"
#include "tests/test_paths.h"

namespace alignserve {
namespace {

using testing::AllPositionLogits;
using testing::MaxAbsDiff;
using testing::ReadJson;
using testing::ShuffledBlocks;
using testing::SourcePath;

struct TinyCase {
  const char* name;
  float tolerance;  // max |logit - reference| over every position
};

// The reference differs from itself by ~3e-6 across thread counts; bf16 and
// f16 weights are exact in f32, and the CPU kernels never round float
// activations, so every family holds to the same bound.
constexpr TinyCase kCases[] = {
    {"tiny_llama3", 1e-4f},
    {"tiny_qwen2", 1e-4f},
    {"tiny_mistral", 1e-4f},
};

// The tiny checkpoints carry no tokenizer.
const ModelOptions kNoText{.max_model_len = 0, .load_text = false};

std::vector<int32_t> Ids(const nlohmann::json& j) { return j.get<std::vector<int32_t>>(); }

TEST_CASE("tiny checkpoints match transformers logits at every position") {
  CpuBackend backend;
  for (const TinyCase& tc : kCases) {
    INFO(tc.name);
    auto loaded = LoadModel(SourcePath(std::string("tests/data/models/") + tc.name), backend, kNoText);
    REQUIRE(loaded.ok());
    Model& model = *(*loaded)->model;
    const nlohmann::json fixture =
        ReadJson(SourcePath(std::string("tests/data/models/") + tc.name + "_logits.json"));
    const int vocab = fixture["vocab_size"];
    REQUIRE(model.config().vocab_size == vocab);
    auto cache = model.AllocateKvCache(64, 4);
    REQUIRE(cache.ok());
    for (const nlohmann::json& seq : fixture["sequences"]) {
      const std::vector<int32_t> ids = Ids(seq["ids"]);
      std::vector<float> expected;
      for (const auto& row : seq["logits"]) {
        for (float v : row) expected.push_back(v);
      }
      const int blocks = static_cast<int>((ids.size() + 3) / 4);
      auto logits = AllPositionLogits(model, **cache, ids, ShuffledBlocks(blocks, 64, 7));
      REQUIRE(logits.ok());
      REQUIRE(logits->size() == expected.size());
      const float diff = MaxAbsDiff(logits->data(), expected.data(), expected.size());
      INFO("sequence of " << ids.size() << " tokens: max abs diff " << diff);
      CHECK(diff <= tc.tolerance);
      std::vector<int32_t> argmax = Ids(seq["argmax"]);
      for (size_t p = 0; p < ids.size(); ++p) {
        const float* row = logits->data() + p * vocab;
        CHECK(std::max_element(row, row + vocab) - row == argmax[p]);
      }
    }
  }
}

TEST_CASE("chunked prefill and one-token decode equal one full prefill") {
  CpuBackend backend;
  auto loaded = LoadModel(SourcePath("tests/data/models/tiny_llama3"), backend, kNoText);
  REQUIRE(loaded.ok());
  Model& model = *(*loaded)->model;
  const nlohmann::json fixture = ReadJson(SourcePath("tests/data/models/tiny_llama3_logits.json"));
  const std::vector<int32_t> ids = Ids(fixture["sequences"][3]["ids"]);
  const std::vector<int32_t> blocks = ShuffledBlocks(static_cast<int>((ids.size() + 3) / 4), 40, 3);
  auto cache = model.AllocateKvCache(40, 4);
  REQUIRE(cache.ok());
  auto full = AllPositionLogits(model, **cache, ids, blocks);
  REQUIRE(full.ok());
  for (int chunk : {1, 5, 16}) {
    INFO("chunk " << chunk);
    auto chunked = AllPositionLogits(model, **cache, ids, blocks, chunk);
    REQUIRE(chunked.ok());
    CHECK(MaxAbsDiff(full->data(), chunked->data(), full->size()) <= 2e-5f);
  }
}

TEST_CASE("a batch of sequences equals each sequence alone") {
  CpuBackend backend;
  auto loaded = LoadModel(SourcePath("tests/data/models/tiny_qwen2"), backend, kNoText);
  REQUIRE(loaded.ok());
  Model& model = *(*loaded)->model;
  const int vocab = model.config().vocab_size;
  const nlohmann::json fixture = ReadJson(SourcePath("tests/data/models/tiny_qwen2_logits.json"));
  auto cache = model.AllocateKvCache(64, 4);
  REQUIRE(cache.ok());
  // Alone: last-position logits of each sequence.
  std::vector<std::vector<int32_t>> seqs, tables;
  std::vector<float> alone;
  int next_block = 0;
  for (const nlohmann::json& seq : fixture["sequences"]) {
    seqs.push_back(Ids(seq["ids"]));
    const int n = static_cast<int>((seqs.back().size() + 3) / 4);
    std::vector<int32_t> table;
    for (int b = 0; b < n; ++b) table.push_back(next_block++);
    tables.push_back(table);
    auto logits = AllPositionLogits(model, **cache, seqs.back(), table);
    REQUIRE(logits.ok());
    alone.insert(alone.end(), logits->end() - vocab, logits->end());
  }
  BatchLayout layout;
  for (size_t i = 0; i < seqs.size(); ++i) layout.AddSequence(seqs[i], 0, tables[i], 4, true);
  layout.Finish();
  ForwardOutput out;
  REQUIRE(model.Forward(layout, **cache, true, out).ok());
  REQUIRE(out.num_rows == static_cast<int>(seqs.size()));
  CHECK(MaxAbsDiff(out.logits.data(), alone.data(), alone.size()) <= 1e-5f);
  CHECK(out.hidden.size() == seqs.size() * model.config().hidden_size);
}

TEST_CASE("greedy continuation equals transformers generate") {
  CpuBackend backend;
  for (const TinyCase& tc : kCases) {
    INFO(tc.name);
    auto loaded = LoadModel(SourcePath(std::string("tests/data/models/") + tc.name), backend, kNoText);
    REQUIRE(loaded.ok());
    Model& model = *(*loaded)->model;
    const int vocab = model.config().vocab_size;
    const nlohmann::json greedy =
        ReadJson(SourcePath(std::string("tests/data/models/") + tc.name + "_logits.json"))["greedy"];
    std::vector<int32_t> ids = Ids(greedy["prompt_ids"]);
    const std::vector<int32_t> expected = Ids(greedy["new_ids"]);
    auto cache = model.AllocateKvCache(16, 4);
    REQUIRE(cache.ok());
    const std::vector<int32_t> blocks = ShuffledBlocks(16, 16, 11);
    std::vector<int32_t> got;
    int pos = 0;
    std::vector<int32_t> chunk = ids;
    for (size_t step = 0; step < expected.size(); ++step) {
      BatchLayout layout;
      layout.AddSequence(chunk, pos, blocks, 4, true);
      layout.Finish();
      ForwardOutput out;
      REQUIRE(model.Forward(layout, **cache, false, out).ok());
      const float* row = out.row(0, vocab);
      const int32_t next = static_cast<int32_t>(std::max_element(row, row + vocab) - row);
      got.push_back(next);
      pos += static_cast<int>(chunk.size());
      chunk = {next};
    }
    CHECK(got == expected);
  }
}

TEST_CASE("a corrupt config is a clear error naming the file") {
  CpuBackend backend;
  auto missing = LoadModel(SourcePath("tests/data/models/does_not_exist"), backend);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().message().find("does_not_exist") != std::string::npos);
}

}  // namespace
}  // namespace alignserve
