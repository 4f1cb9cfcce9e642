// Sequence classifiers (HF *ForSequenceClassification: the layout of reward
// models such as Skywork-Reward) against transformers: the same decoder as a
// causal LM with score.weight as the output head, so every Forward row holds
// config().num_labels scores. Fixtures: tiny_llama3_reward (1 label, bf16,
// llama3 rope) and tiny_qwen2_classifier3 (3 labels, f16, tied-embedding
// config), from tests/reference/make_model_fixtures.py --only reward.
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "models/model_config.h"
#include "models/model_loader.h"
#include "tests/models/formats/format_test_writers.h"
#include "tests/models/model_test_util.h"
#include "tests/test_paths.h"

namespace alignserve {
namespace {

using testing::AllPositionLogits;
using testing::MaxAbsDiff;
using testing::ReadJson;
using testing::ShuffledBlocks;
using testing::SourcePath;
using testing::TempDir;

// As for the causal tiny checkpoints (llama_model_test): transformers
// differs from itself by ~4e-6 here (f32 vs f64, eager vs SDPA), and the
// CPU kernels never round float activations.
constexpr float kTolerance = 1e-4f;

constexpr const char* kClassifiers[] = {"tiny_llama3_reward", "tiny_qwen2_classifier3"};

// The tiny checkpoints carry no tokenizer.
const ModelOptions kNoText{.max_model_len = 0, .load_text = false};

std::string ModelDir(const std::string& name) { return SourcePath("tests/data/models/" + name); }

nlohmann::json Scores(const std::string& name) {
  return ReadJson(SourcePath("tests/data/models/" + name + "_scores.json"));
}

std::vector<int32_t> Ids(const nlohmann::json& j) { return j.get<std::vector<int32_t>>(); }

std::vector<float> Flat(const nlohmann::json& rows) {
  std::vector<float> flat;
  for (const nlohmann::json& row : rows) {
    for (float v : row) flat.push_back(v);
  }
  return flat;
}

TEST_CASE("a sequence classifier's rows equal transformers' scores at every position") {
  CpuBackend backend;
  for (const char* name : kClassifiers) {
    INFO(name);
    const nlohmann::json fixture = Scores(name);
    const int labels = fixture["num_labels"];
    auto loaded = LoadModel(ModelDir(name), backend, kNoText);
    REQUIRE(loaded.ok());
    Model& model = *(*loaded)->model;
    CHECK(model.config().num_labels == labels);
    CHECK(model.config().logits_size() == labels);
    CHECK(model.config().vocab_size == fixture["vocab_size"].get<int>());
    auto cache = model.AllocateKvCache(64, 4);
    REQUIRE(cache.ok());
    for (const nlohmann::json& seq : fixture["sequences"]) {
      const std::vector<int32_t> ids = Ids(seq["ids"]);
      const std::vector<float> expected = Flat(seq["rows"]);
      const int blocks = static_cast<int>((ids.size() + 3) / 4);
      auto rows = AllPositionLogits(model, **cache, ids, ShuffledBlocks(blocks, 64, 5));
      REQUIRE(rows.ok());
      REQUIRE(rows->size() == ids.size() * labels);
      const float diff = MaxAbsDiff(rows->data(), expected.data(), expected.size());
      INFO("sequence of " << ids.size() << " tokens: max abs diff " << diff);
      CHECK(diff <= kTolerance);
    }
  }
}

TEST_CASE("the last token's row of a prefill is transformers' pooled score") {
  CpuBackend backend;
  for (const char* name : kClassifiers) {
    INFO(name);
    const nlohmann::json fixture = Scores(name);
    const int labels = fixture["num_labels"];
    auto loaded = LoadModel(ModelDir(name), backend, kNoText);
    REQUIRE(loaded.ok());
    Model& model = *(*loaded)->model;
    auto cache = model.AllocateKvCache(64, 4);
    REQUIRE(cache.ok());
    for (const nlohmann::json& seq : fixture["sequences"]) {
      const std::vector<int32_t> ids = Ids(seq["ids"]);
      const std::vector<float> score = seq["score"].get<std::vector<float>>();
      INFO("sequence of " << ids.size() << " tokens");
      BatchLayout layout;  // one logits row: the last token's
      layout.AddSequence(ids, 0, ShuffledBlocks(static_cast<int>((ids.size() + 3) / 4), 64, 9), 4,
                         true);
      layout.Finish();
      ForwardOutput out;
      REQUIRE(model.Forward(layout, **cache, true, out).ok());
      REQUIRE(out.num_rows == 1);
      REQUIRE(out.logits.size() == static_cast<size_t>(labels));
      CHECK(out.has_logits[0] == 1);
      CHECK(MaxAbsDiff(out.row(0, labels), score.data(), labels) <= kTolerance);
      CHECK(out.argmax[0] == std::max_element(score.begin(), score.end()) - score.begin());
      CHECK(out.hidden.size() == static_cast<size_t>(model.config().hidden_size));
    }
  }
}

TEST_CASE("a batch of scored sequences equals each sequence alone") {
  CpuBackend backend;
  const nlohmann::json fixture = Scores("tiny_llama3_reward");
  auto loaded = LoadModel(ModelDir("tiny_llama3_reward"), backend, kNoText);
  REQUIRE(loaded.ok());
  Model& model = *(*loaded)->model;
  auto cache = model.AllocateKvCache(64, 4);
  REQUIRE(cache.ok());
  BatchLayout layout;
  std::vector<float> expected;
  int next_block = 0;
  for (const nlohmann::json& seq : fixture["sequences"]) {
    const std::vector<int32_t> ids = Ids(seq["ids"]);
    std::vector<int32_t> table;
    for (size_t b = 0; b < (ids.size() + 3) / 4; ++b) table.push_back(next_block++);
    layout.AddSequence(ids, 0, table, 4, true);
    expected.push_back(seq["score"][0].get<float>());
  }
  layout.Finish();
  ForwardOutput out;
  REQUIRE(model.Forward(layout, **cache, false, out).ok());
  REQUIRE(out.num_rows == static_cast<int>(expected.size()));
  REQUIRE(out.logits.size() == expected.size());
  CHECK(MaxAbsDiff(out.logits.data(), expected.data(), expected.size()) <= kTolerance);
  for (int32_t id : out.argmax) CHECK(id == 0);  // one label: column 0 always
}

TEST_CASE("a causal LM checkpoint has no labels and vocabulary-wide rows") {
  CpuBackend backend;
  auto loaded = LoadModel(ModelDir("tiny_llama3"), backend, kNoText);
  REQUIRE(loaded.ok());
  const ModelConfig& config = (*loaded)->model->config();
  CHECK(config.num_labels == 0);
  CHECK(config.logits_size() == config.vocab_size);
  CHECK(config.vocab_size == 320);
}

// The tiny_llama3_reward config.json, edited.
nlohmann::json RewardConfig() { return ReadJson(ModelDir("tiny_llama3_reward") + "/config.json"); }

TEST_CASE("config.json names the head: architectures, num_labels, id2label") {
  struct Case {
    const char* what;
    std::function<void(nlohmann::json&)> edit;
    int num_labels;  // -1: an error
  };
  const Case cases[] = {
      {"fixture: one id2label entry", [](nlohmann::json&) {}, 1},
      {"num_labels wins over id2label", [](nlohmann::json& j) { j["num_labels"] = 4; }, 4},
      {"neither: HF's default of 2",
       [](nlohmann::json& j) {
         j.erase("id2label");
         j.erase("label2id");
       },
       2},
      {"Mistral classifier",
       [](nlohmann::json& j) {
         j["model_type"] = "mistral";
         j["architectures"] = {"MistralForSequenceClassification"};
       },
       1},
      {"causal LM", [](nlohmann::json& j) { j["architectures"] = {"LlamaForCausalLM"}; }, 0},
      {"no architectures", [](nlohmann::json& j) { j.erase("architectures"); }, 0},
      {"unsupported head",
       [](nlohmann::json& j) { j["architectures"] = {"LlamaForTokenClassification"}; }, -1},
      {"zero labels", [](nlohmann::json& j) { j["num_labels"] = 0; }, -1},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    nlohmann::json j = RewardConfig();
    c.edit(j);
    absl::StatusOr<ModelConfig> config = ConfigFromHfJson(j, "config.json");
    if (c.num_labels < 0) {
      REQUIRE_FALSE(config.ok());
      CHECK(config.status().code() == absl::StatusCode::kInvalidArgument);
      continue;
    }
    REQUIRE(config.ok());
    CHECK(config->num_labels == c.num_labels);
    CHECK(config->logits_size() == (c.num_labels > 0 ? c.num_labels : config->vocab_size));
  }
}

// A checkpoint folder: `weights_from`'s safetensors files with `config`.
void WriteCheckpoint(const TempDir& dir, const std::string& weights_from,
                     const nlohmann::json& config) {
  for (const auto& entry : std::filesystem::directory_iterator(ModelDir(weights_from))) {
    const std::string file = entry.path().filename().string();
    if (file.find("safetensors") != std::string::npos) {
      std::filesystem::copy_file(entry.path(), dir.path() + "/" + file);
    }
  }
  dir.Write("config.json", config.dump(2));
}

TEST_CASE("a classifier without a fitting score.weight is a clear error") {
  CpuBackend backend;
  SECTION("score.weight missing: a causal LM's weights") {
    TempDir dir;
    REQUIRE_FALSE(dir.path().empty());
    nlohmann::json config = ReadJson(ModelDir("tiny_llama3") + "/config.json");
    config["architectures"] = {"LlamaForSequenceClassification"};
    config["id2label"] = {{"0", "LABEL_0"}};
    WriteCheckpoint(dir, "tiny_llama3", config);
    auto loaded = LoadModel(dir.path(), backend, kNoText);
    REQUIRE_FALSE(loaded.ok());
    CHECK(loaded.status().code() == absl::StatusCode::kNotFound);
    CHECK(loaded.status().message().find("'score.weight'") != std::string::npos);
  }
  SECTION("score.weight of the wrong shape") {
    TempDir dir;
    REQUIRE_FALSE(dir.path().empty());
    nlohmann::json config = RewardConfig();
    config["num_labels"] = 2;  // the checkpoint's head is [1, 64]
    WriteCheckpoint(dir, "tiny_llama3_reward", config);
    auto loaded = LoadModel(dir.path(), backend, kNoText);
    REQUIRE_FALSE(loaded.ok());
    CHECK(loaded.status().code() == absl::StatusCode::kInvalidArgument);
    const std::string message(loaded.status().message());
    INFO(message);
    CHECK(message.find("'score.weight'") != std::string::npos);
    CHECK(message.find("[2, 64]") != std::string::npos);
  }
}

}  // namespace
}  // namespace alignserve
