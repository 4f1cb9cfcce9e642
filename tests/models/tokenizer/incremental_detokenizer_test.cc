// The incremental detokenizer's deltas concatenate to Decode(all ids), never
// end inside a UTF-8 sequence, for every corpus line and decode case of every
// tokenizer.
#include "models/tokenizer/incremental_detokenizer.h"

#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "models/tokenizer/tokenizer.h"
#include "models/tokenizer/utf8.h"
#include "tests/models/tokenizer/tokenizer_fixtures.h"

namespace alignserve {
namespace {

using testing::LoadFixture;

struct Streamed {
  std::string text;
  bool every_delta_valid = true;
};

Streamed Stream(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip_special) {
  IncrementalDetokenizer detok(tok, skip_special);
  Streamed s;
  for (int32_t id : ids) {
    const std::string delta = detok.Append(id);
    s.every_delta_valid &= IsValidUtf8(delta);
    s.text += delta;
  }
  const std::string tail = detok.Flush();
  s.every_delta_valid &= IsValidUtf8(tail);
  s.text += tail;
  return s;
}

// Every id list of a fixture: corpus lines and arbitrary decode cases.
std::vector<std::vector<int32_t>> AllSequences(const nlohmann::json& expected) {
  std::vector<std::vector<int32_t>> out;
  for (const auto& ids : expected["ids"]) out.push_back(ids.get<std::vector<int32_t>>());
  for (const auto& c : expected["decode_cases"]) {
    out.push_back(c["ids"].get<std::vector<int32_t>>());
  }
  return out;
}

void RequireStreamEqualsDecode(const Tokenizer& tok, const nlohmann::json& expected,
                               const char* what) {
  const auto seqs = AllSequences(expected);
  size_t equal = 0, valid = 0, total = 0;
  std::string first_bad;
  for (const auto& ids : seqs) {
    for (bool skip : {false, true}) {
      ++total;
      const Streamed s = Stream(tok, ids, skip);
      const std::string want = tok.Decode(ids, skip);
      equal += s.text == want;
      valid += s.every_delta_valid;
      if (s.text != want && first_bad.empty()) {
        first_bad = nlohmann::json(ids).dump() + " got " + nlohmann::json(s.text).dump() +
                    " want " + nlohmann::json(want).dump();
      }
    }
  }
  INFO(what << ": " << equal << "/" << total << " streams equal Decode. " << first_bad);
  WARN(what << ": " << equal << "/" << total << " streams equal Decode");
  CHECK(equal == total);
  CHECK(valid == total);
}

TEST_CASE("Streaming SmolLM2 equals Decode on corpus and split sequences", "[detokenizer]") {
  auto tok = LoadTokenizerJson(testing::SourcePath("tests/data/tokenizer/smollm2_tokenizer.json"));
  REQUIRE(tok.ok());
  RequireStreamEqualsDecode(**tok, LoadFixture("smollm2_expected.json"), "SmolLM2");
}

TEST_CASE("Streaming Llama 3 and Qwen2 equals Decode", "[detokenizer]") {
  for (const char* name : {"llama3", "qwen2"}) {
    auto tok = LoadTokenizerJson(
        testing::SourcePath(std::string("tests/data/tokenizer/") + name + "_tokenizer.json"));
    REQUIRE(tok.ok());
    RequireStreamEqualsDecode(**tok, LoadFixture(std::string(name) + "_expected.json"), name);
  }
}

TEST_CASE("Streaming Llama 2 equals Decode, first space stripped", "[detokenizer]") {
  auto tok = LoadSentencePiece(testing::SharedDataPath("llama2-tokenizer.model"));
  REQUIRE(tok.ok());
  RequireStreamEqualsDecode(**tok, LoadFixture("llama2_expected.json"), "Llama 2");
  IncrementalDetokenizer detok(**tok, /*skip_special=*/true);
  CHECK(detok.Append(1) == "");           // <s> skipped
  CHECK(detok.Append(15043) == "Hello");  // "▁Hello": leading space stripped
  CHECK(detok.Append(3186) == " world");
}

TEST_CASE("A character split across tokens is held back until complete", "[detokenizer]") {
  auto tok = LoadSentencePiece(testing::SharedDataPath("llama2-tokenizer.model"));
  REQUIRE(tok.ok());
  auto bpe = LoadTokenizerJson(testing::SourcePath("tests/data/tokenizer/smollm2_tokenizer.json"));
  REQUIRE(bpe.ok());
  // "你" is E4 BD A0; encode it as separate byte tokens of the BPE vocab.
  const std::string ch = "\xE4\xBD\xA0";
  std::vector<int32_t> ids;
  for (char c : ch) {
    for (int32_t id = 0; id < (*bpe)->vocab_size(); ++id) {
      if ((*bpe)->TokenBytes(id) == std::string(1, c)) {
        ids.push_back(id);
        break;
      }
    }
  }
  REQUIRE(ids.size() == 3);
  IncrementalDetokenizer detok(**bpe, false);
  CHECK(detok.Append(ids[0]) == "");
  CHECK(detok.pending_bytes() == 1);
  CHECK(detok.Append(ids[1]) == "");
  CHECK(detok.Append(ids[2]) == ch);
  CHECK(detok.pending_bytes() == 0);
  // A cut tail comes out as one U+FFFD on Flush, as HF decode gives.
  CHECK(detok.Append(ids[0]) == "");
  CHECK(detok.Flush() == "\xEF\xBF\xBD");
  CHECK((*bpe)->Decode(std::vector<int32_t>{ids[0]}, false) == "\xEF\xBF\xBD");
}

}  // namespace
}  // namespace alignserve
