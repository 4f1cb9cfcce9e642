// Lossy UTF-8 decoding replaces each maximal ill-formed subpart by one U+FFFD,
// as Python's bytes.decode("utf-8", "replace") and Rust's from_utf8_lossy
// (HF tokenizers) do; the expected strings are Python's results.
#include "models/tokenizer/utf8.h"

#include <catch2/catch.hpp>
#include <string>
#include <thread>
#include <vector>

#include "models/tokenizer/pre_tokenizer.h"
#include "models/tokenizer/tokenizer.h"
#include "tests/models/tokenizer/tokenizer_fixtures.h"

namespace alignserve {
namespace {

std::string Lossy(const std::string& bytes) {
  std::string out;
  AppendLossyUtf8(bytes, &out);
  return out;
}

const std::string kFffd = "\xEF\xBF\xBD";

TEST_CASE("Lossy UTF-8 replaces maximal subparts like Python", "[utf8]") {
  CHECK(Lossy("abc") == "abc");
  CHECK(Lossy("\xE4\xBD\xA0") == "\xE4\xBD\xA0");
  CHECK(Lossy("\xE0\x80") == kFffd + kFffd);  // E0 needs A0..BF next
  CHECK(Lossy("\xF0\x9F\x98"
              "A") == kFffd + "A");                       // cut 4-byte sequence
  CHECK(Lossy("\xED\xA0\x80") == kFffd + kFffd + kFffd);  // surrogate
  CHECK(Lossy("\xF4\x90\x80\x80") == kFffd + kFffd + kFffd + kFffd);
  CHECK(Lossy("\xC0\xAF") == kFffd + kFffd);  // overlong
  CHECK(Lossy("\xFF\xFE") == kFffd + kFffd);
  CHECK(Lossy("\xE4\xBD") == kFffd);  // cut at the end
  CHECK(Lossy("\x80\x80") == kFffd + kFffd);
}

TEST_CASE("Holding the tail keeps only a valid-but-cut sequence", "[utf8]") {
  std::string out;
  CHECK(AppendLossyUtf8HoldTail("a\xF0\x9F\x98", &out) == 3);
  CHECK(out == "a");
  out.clear();
  CHECK(AppendLossyUtf8HoldTail("a\xE0\x80", &out) == 0);  // already invalid
  CHECK(out == "a" + kFffd + kFffd);
}

std::vector<std::string> Words(PreTokenizerKind kind, const std::string& text) {
  std::vector<std::string_view> views;
  PreTokenize(kind, text, &views);
  return std::vector<std::string>(views.begin(), views.end());
}

TEST_CASE("Pre-tokenizers split as their regexes do", "[pretokenizer]") {
  using V = std::vector<std::string>;
  CHECK(Words(PreTokenizerKind::kGpt2, "Hello world  it's 12345!!") ==
        V{"Hello", " world", " ", " it", "'s", " 12345", "!!"});
  CHECK(Words(PreTokenizerKind::kLlama3, "Hello world  IT'S 12345!!\r\n\n x") ==
        V{"Hello", " world", " ", " IT", "'S", " ", "123", "45", "!!\r\n\n", " x"});
  CHECK(Words(PreTokenizerKind::kQwen2, "ab12 \n\n  c") == V{"ab", "1", "2", " \n\n", " ", " c"});
  CHECK(Words(PreTokenizerKind::kSmolLm, "a  12b") == V{"a", "  ", "1", "2", "b"});
  CHECK(Words(PreTokenizerKind::kGpt2, "a  12b") == V{"a", " ", " 12", "b"});
  CHECK(Words(PreTokenizerKind::kGpt2, "").empty());
}

TEST_CASE("Concurrent Encode calls on one tokenizer agree", "[threads]") {
  auto tok = LoadTokenizerJson(testing::SourcePath("tests/data/tokenizer/qwen2_tokenizer.json"));
  REQUIRE(tok.ok());
  const auto corpus = testing::LoadCorpus();
  std::vector<std::vector<int32_t>> serial;
  for (const auto& line : corpus) serial.push_back((*tok)->Encode(line, false));
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = t; i < corpus.size(); i += 2) {
        mismatches[t] += (*tok)->Encode(corpus[i], false) != serial[i];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int m : mismatches) CHECK(m == 0);
}

}  // namespace
}  // namespace alignserve
