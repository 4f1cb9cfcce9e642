// Llama 2's SentencePiece tokenizer against python sentencepiece (encode) and
// HF LlamaTokenizer (special-token parsing, decode) on the whole corpus.
#include <catch2/catch.hpp>
#include <memory>
#include <string>

#include "models/tokenizer/tokenizer.h"
#include "tests/models/tokenizer/tokenizer_fixtures.h"

namespace alignserve {
namespace {

using testing::LoadCorpus;
using testing::LoadFixture;

std::unique_ptr<Tokenizer> Llama2() {
  auto tok = LoadSentencePiece(testing::SharedDataPath("llama2-tokenizer.model"));
  REQUIRE(tok.ok());
  return std::move(tok).value();
}

TEST_CASE("Llama 2 encodes every corpus line as python sentencepiece does", "[sentencepiece]") {
  const auto tok = Llama2();
  const auto corpus = LoadCorpus();
  const auto expected = LoadFixture("llama2_expected.json");
  const auto m = testing::CountEncodeMatches(*tok, corpus, expected["ids"],
                                             /*parse_special=*/false);
  INFO(m.matched << "/" << m.total << " lines match. " << m.first_mismatch);
  WARN("Llama 2 (sentencepiece): " << m.matched << "/" << m.total << " lines match");
  CHECK(m.matched == m.total);
}

TEST_CASE("Llama 2 parses <s> </s> <unk> as HF LlamaTokenizer (legacy=False)", "[sentencepiece]") {
  const auto tok = Llama2();
  const auto corpus = LoadCorpus();
  const auto expected = LoadFixture("llama2_expected.json");
  const auto m = testing::CountEncodeMatches(*tok, corpus, expected["ids_special"],
                                             /*parse_special=*/true);
  INFO(m.matched << "/" << m.total << " lines match. " << m.first_mismatch);
  WARN("Llama 2 with special tokens: " << m.matched << "/" << m.total << " lines match");
  CHECK(m.matched == m.total);
  CHECK(tok->Encode("<s>Hi</s>", false) == std::vector<int32_t>{1, 18567, 2});
}

TEST_CASE("Llama 2 decode equals HF decode", "[sentencepiece]") {
  const auto tok = Llama2();
  const auto corpus = LoadCorpus();
  const auto expected = LoadFixture("llama2_expected.json");
  size_t ok = 0, ok_special = 0;
  for (size_t i = 0; i < corpus.size(); ++i) {
    ok += tok->Decode(expected["ids"][i].get<std::vector<int32_t>>(), false) ==
          expected["decoded"][i].get<std::string>();
    ok_special += tok->Decode(expected["ids_special"][i].get<std::vector<int32_t>>(), false) ==
                  expected["decoded_special"][i].get<std::string>();
  }
  CHECK(ok == corpus.size());
  CHECK(ok_special == corpus.size());
  const auto m = testing::CountDecodeMatches(*tok, expected["decode_cases"]);
  INFO(m.matched << "/" << m.total << " decode cases match. " << m.first_mismatch);
  CHECK(m.matched == m.total);
}

TEST_CASE("Llama 2 token bytes, ids and specials", "[sentencepiece]") {
  const auto tok = Llama2();
  CHECK(tok->vocab_size() == 32000);
  CHECK(tok->bos_id() == 1);
  CHECK(tok->eos_id() == 2);
  CHECK(tok->add_bos_by_default());
  CHECK(tok->IsSpecial(0));
  CHECK(tok->IsSpecial(1));
  CHECK_FALSE(tok->IsSpecial(15043));
  CHECK(tok->TokenId("▁Hello") == 15043);
  CHECK(tok->TokenBytes(15043) == " Hello");
  CHECK(tok->TokenBytes(*tok->TokenId("<0xE4>")) == "\xE4");
  CHECK(tok->IsByteToken(*tok->TokenId("<0xE4>")));
  CHECK_FALSE(tok->TokenId("not a piece").has_value());
  CHECK(tok->Encode("Hello", /*add_bos=*/true) == std::vector<int32_t>{1, 15043});
}

TEST_CASE("A missing or corrupt tokenizer.model is an error", "[sentencepiece]") {
  CHECK_FALSE(LoadSentencePiece("/nonexistent/tokenizer.model").ok());
  CHECK_FALSE(LoadSentencePiece(testing::SourcePath("tests/data/tokenizer/corpus.json")).ok());
}

}  // namespace
}  // namespace alignserve
