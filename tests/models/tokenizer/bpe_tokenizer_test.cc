// Byte-level BPE tokenizers against Hugging Face on the whole corpus:
// SmolLM2 from its GGUF metadata and from tokenizer.json, and small
// tokenizers trained with the Llama 3 and Qwen2 pre-tokenizer regexes.
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "models/tokenizer/tokenizer.h"
#include "tests/models/tokenizer/tokenizer_fixtures.h"

namespace alignserve {
namespace {

using testing::CountDecodeMatches;
using testing::CountEncodeMatches;
using testing::LoadCorpus;
using testing::LoadFixture;

std::unique_ptr<Tokenizer> FromJson(const std::string& name) {
  auto tok = LoadTokenizerJson(testing::SourcePath("tests/data/tokenizer/" + name));
  REQUIRE(tok.ok());
  return std::move(tok).value();
}

std::unique_ptr<Tokenizer> SmolLm2FromGguf(const std::string& pre = "") {
  BpeVocab vocab = testing::LoadSmolLm2GgufVocab();
  if (!pre.empty()) vocab.pre = pre;
  auto tok = CreateBpeTokenizer(vocab);
  REQUIRE(tok.ok());
  return std::move(tok).value();
}

void RequireAllEncode(const Tokenizer& tok, const nlohmann::json& expected, const char* key,
                      bool parse_special, const char* what) {
  const auto corpus = LoadCorpus();
  REQUIRE(corpus.size() >= 2000);
  const auto m = CountEncodeMatches(tok, corpus, expected[key], parse_special);
  INFO(what << ": " << m.matched << "/" << m.total << " corpus lines match HF. "
            << m.first_mismatch);
  WARN(what << ": " << m.matched << "/" << m.total << " lines match");
  CHECK(m.matched == m.total);
}

void RequireRoundTripAndDecodeCases(const Tokenizer& tok, const nlohmann::json& expected) {
  const auto corpus = LoadCorpus();
  size_t ok = 0;
  for (size_t i = 0; i < corpus.size(); ++i) {
    const auto ids = expected["ids"][i].get<std::vector<int32_t>>();
    ok += tok.Decode(ids, false) == expected["decoded"][i].get<std::string>();
  }
  CHECK(ok == corpus.size());
  const auto m = CountDecodeMatches(tok, expected["decode_cases"]);
  INFO(m.matched << "/" << m.total << " decode cases match HF. " << m.first_mismatch);
  CHECK(m.matched == m.total);
}

TEST_CASE("SmolLM2 from GGUF metadata encodes every corpus line as HF does", "[bpe]") {
  const auto tok = SmolLm2FromGguf();
  const auto expected = LoadFixture("smollm2_expected.json");
  RequireAllEncode(*tok, expected, "ids", true, "SmolLM2 GGUF");
  RequireAllEncode(*tok, expected, "ids_no_special", false,
                   "SmolLM2 GGUF, special tokens not parsed");
  RequireRoundTripAndDecodeCases(*tok, expected);
  CHECK(tok->vocab_size() == 49152);
  CHECK(tok->bos_id() == 1);
  CHECK(tok->eos_id() == 2);
  CHECK_FALSE(tok->add_bos_by_default());
}

TEST_CASE("SmolLM2 from tokenizer.json encodes every corpus line as HF does", "[bpe]") {
  const auto tok = FromJson("smollm2_tokenizer.json");
  const auto expected = LoadFixture("smollm2_expected.json");
  RequireAllEncode(*tok, expected, "ids", true, "SmolLM2 tokenizer.json");
  RequireAllEncode(*tok, expected, "ids_no_special", false,
                   "SmolLM2 tokenizer.json, special tokens not parsed");
  RequireRoundTripAndDecodeCases(*tok, expected);
}

TEST_CASE("GPT-2 pattern matches HF ByteLevel(use_regex) on the SmolLM2 vocab", "[bpe]") {
  // transformers' GGUF conversion of SmolLM2 emits plain ByteLevel, i.e. the
  // GPT-2 regex without digit isolation; its ids are the oracle here.
  const auto tok = SmolLm2FromGguf("gpt2");
  RequireAllEncode(*tok, LoadFixture("smollm2_expected.json"), "gpt2_ids", true, "GPT-2 pattern");
}

TEST_CASE("Llama 3 pattern tokenizer matches HF on every corpus line", "[bpe]") {
  const auto tok = FromJson("llama3_tokenizer.json");
  const auto expected = LoadFixture("llama3_expected.json");
  RequireAllEncode(*tok, expected, "ids", true, "Llama 3");
  RequireAllEncode(*tok, expected, "ids_no_special", false, "Llama 3, special tokens not parsed");
  RequireRoundTripAndDecodeCases(*tok, expected);
}

TEST_CASE("Qwen2 pattern tokenizer matches HF on every corpus line", "[bpe]") {
  const auto tok = FromJson("qwen2_tokenizer.json");
  const auto expected = LoadFixture("qwen2_expected.json");
  RequireAllEncode(*tok, expected, "ids", true, "Qwen2");
  RequireAllEncode(*tok, expected, "ids_no_special", false, "Qwen2, special tokens not parsed");
  RequireRoundTripAndDecodeCases(*tok, expected);
}

TEST_CASE("Special tokens: parsed by default, plain text when asked", "[bpe]") {
  const auto tok = SmolLm2FromGguf();
  const auto ids = tok->Encode("<|im_start|>user", /*add_bos=*/true);
  REQUIRE(ids.size() >= 3);
  CHECK(ids[0] == 1);  // bos
  CHECK(ids[1] == 1);  // <|im_start|>
  CHECK(tok->IsSpecial(1));
  CHECK_FALSE(tok->IsSpecial(ids[2]));
  const auto plain = tok->Encode("<|im_start|>", false, /*parse_special=*/false);
  CHECK(plain.size() > 1);
  CHECK(tok->Decode(plain, /*skip_special=*/true) == "<|im_start|>");
  CHECK(tok->Decode(ids, /*skip_special=*/true) == "user");
  CHECK(tok->TokenId("<|im_end|>") == 2);
  CHECK(tok->TokenId("Ġworld").has_value());
  CHECK(tok->TokenBytes(*tok->TokenId("Ġworld")) == " world");
  CHECK_FALSE(tok->TokenId("no such token").has_value());
}

TEST_CASE("Bytes that are not UTF-8 encode as bytes and decode as U+FFFD", "[bpe]") {
  const auto tok = SmolLm2FromGguf();
  // (0xF5..0xFF never occur in UTF-8; SmolLM2's vocabulary lacks them and,
  // like HF's BPE without an unk token, drops them.)
  const std::string bad = "a\xc3 b\xe4\xbd";
  const auto ids = tok->Encode(bad, false);
  std::string bytes;
  for (int32_t id : ids) bytes += tok->TokenBytes(id);
  CHECK(bytes == bad);
  CHECK(tok->Decode(ids, false) == "a\xEF\xBF\xBD b\xEF\xBF\xBD");
}

TEST_CASE("Unknown pre-tokenizer names the supported ones", "[bpe]") {
  BpeVocab vocab = testing::LoadSmolLm2GgufVocab();
  vocab.pre = "falcon";
  const auto tok = CreateBpeTokenizer(vocab);
  REQUIRE_FALSE(tok.ok());
  const std::string msg(tok.status().message());
  CHECK(msg.find("falcon") != std::string::npos);
  CHECK(msg.find("smollm") != std::string::npos);
  CHECK(msg.find("llama-bpe") != std::string::npos);
}

TEST_CASE("Malformed vocabularies and files are errors, not crashes", "[bpe]") {
  BpeVocab vocab;
  vocab.pre = "gpt2";
  CHECK_FALSE(CreateBpeTokenizer(vocab).ok());  // empty
  vocab.tokens = {"a", "b"};
  vocab.merges = {"a c"};
  CHECK_FALSE(CreateBpeTokenizer(vocab).ok());  // merge of unknown token
  vocab.merges = {"ab"};
  CHECK_FALSE(CreateBpeTokenizer(vocab).ok());  // not "a b"
  vocab.merges = {};
  vocab.token_types = {1};
  CHECK_FALSE(CreateBpeTokenizer(vocab).ok());  // types size mismatch
  CHECK_FALSE(LoadTokenizerJson("/nonexistent/tokenizer.json").ok());
  CHECK_FALSE(LoadTokenizerJson(testing::SourcePath("tests/data/tokenizer/corpus.json")).ok());
}

TEST_CASE("Encoding a 2,000-token prompt is fast", "[bpe][perf]") {
  const auto tok = SmolLm2FromGguf();
  std::string prompt;
  const auto corpus = LoadCorpus();
  for (size_t i = 0; tok->Encode(prompt, false).size() < 2000; ++i) {
    prompt += corpus[i % corpus.size()] + "\n";
  }
  const int reps = 20;
  const auto start = std::chrono::steady_clock::now();
  size_t n = 0;
  for (int r = 0; r < reps; ++r) n += tok->Encode(prompt, false).size();
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() /
      reps;
  WARN("encode of " << n / reps << " tokens (" << prompt.size() << " bytes): " << ms << " ms");
  CHECK(n / reps >= 2000);
}

}  // namespace
}  // namespace alignserve
