// The default model's text side end to end: its GGUF chat template rendered
// and tokenized here gives exactly the prompt ids transformers'
// apply_chat_template produced (tests/data/models/smollm2_greedy.json).
#include <catch2/catch.hpp>

#include "kernels/cpu/cpu_backend.h"
#include "models/formats/gguf_file.h"
#include "models/model_text.h"
#include "tests/models/model_test_util.h"
#include "tests/test_paths.h"

namespace alignserve {
namespace {

using testing::DefaultModelPath;
using testing::ReadJson;
using testing::SourcePath;

TEST_CASE("chat prompts render and tokenize as transformers apply_chat_template") {
  auto gguf = GgufFile::Open(DefaultModelPath());
  REQUIRE(gguf.ok());
  auto text = LoadModelTextFromGguf(**gguf);
  REQUIRE(text.ok());
  REQUIRE(text->chat_template.has_value());
  const nlohmann::json fixture = ReadJson(SourcePath("tests/data/models/smollm2_greedy.json"));
  for (const nlohmann::json& prompt : fixture["prompts"]) {
    nlohmann::ordered_json messages = prompt["messages"];
    auto rendered = text->RenderChat(messages);
    REQUIRE(rendered.ok());
    CHECK(*rendered == prompt["text"].get<std::string>());
    CHECK(text->tokenizer->Encode(*rendered, false) ==
          prompt["prompt_ids"].get<std::vector<int32_t>>());
  }
}

TEST_CASE("SmolLM2 stops at its end-of-turn token") {
  auto gguf = GgufFile::Open(DefaultModelPath());
  REQUIRE(gguf.ok());
  auto text = LoadModelTextFromGguf(**gguf);
  REQUIRE(text.ok());
  const std::optional<int32_t> im_end = text->tokenizer->TokenId("<|im_end|>");
  REQUIRE(im_end.has_value());
  CHECK(text->IsStopToken(*im_end));
  CHECK(text->eos_token == "<|im_end|>");
  CHECK_FALSE(text->IsStopToken(*text->tokenizer->TokenId("Paris")));
}

TEST_CASE("a model without a chat template says so") {
  ModelText text;
  auto rendered = text.RenderChat(nlohmann::ordered_json::array());
  REQUIRE_FALSE(rendered.ok());
  CHECK(rendered.status().code() == absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace alignserve
