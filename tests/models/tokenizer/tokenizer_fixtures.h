// Test-side access to the tokenizer fixtures made by
// tests/reference/make_tokenizer_fixtures.py (HF / sentencepiece oracles).
#ifndef ALIGNSERVE_TESTS_MODELS_TOKENIZER_TOKENIZER_FIXTURES_H_
#define ALIGNSERVE_TESTS_MODELS_TOKENIZER_TOKENIZER_FIXTURES_H_

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "models/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "tests/test_paths.h"

namespace alignserve::testing {

inline nlohmann::json LoadFixture(const std::string& name) {
  std::ifstream in(SourcePath("tests/data/tokenizer/" + name), std::ios::binary);
  std::stringstream buf;
  buf << in.rdbuf();
  return nlohmann::json::parse(buf.str(), nullptr, /*allow_exceptions=*/false);
}

inline std::vector<std::string> LoadCorpus() {
  return LoadFixture("corpus.json").get<std::vector<std::string>>();
}

// The SmolLM2 GGUF tokenizer metadata as gguf-py dumped it.
inline BpeVocab LoadSmolLm2GgufVocab() {
  const nlohmann::json j = LoadFixture("smollm2_gguf_vocab.json");
  BpeVocab v;
  v.tokens = j["tokens"].get<std::vector<std::string>>();
  v.token_types = j["token_types"].get<std::vector<int32_t>>();
  v.merges = j["merges"].get<std::vector<std::string>>();
  v.pre = j["pre"].get<std::string>();
  v.bos_id = j["bos_id"].get<int32_t>();
  v.eos_id = j["eos_id"].get<int32_t>();
  v.unk_id = j["unk_id"].get<int32_t>();
  v.add_bos = j["add_bos"].get<bool>();
  return v;
}

struct MatchCount {
  size_t matched = 0;
  size_t total = 0;
  std::string first_mismatch;  // description of the first failing line
};

// Encodes every corpus line and compares with the expected ids.
inline MatchCount CountEncodeMatches(const Tokenizer& tok, const std::vector<std::string>& corpus,
                                     const nlohmann::json& expected, bool parse_special) {
  MatchCount m;
  m.total = corpus.size();
  for (size_t i = 0; i < corpus.size(); ++i) {
    const auto want = expected[i].get<std::vector<int32_t>>();
    const auto got = tok.Encode(corpus[i], /*add_bos=*/false, parse_special);
    if (got == want) {
      ++m.matched;
    } else if (m.first_mismatch.empty()) {
      m.first_mismatch = "line " + std::to_string(i) + " " + nlohmann::json(corpus[i]).dump() +
                         " got " + nlohmann::json(got).dump() + " want " +
                         nlohmann::json(want).dump();
    }
  }
  return m;
}

// Decodes each case {"ids", "skip", "text"} and compares with HF's text.
inline MatchCount CountDecodeMatches(const Tokenizer& tok, const nlohmann::json& cases) {
  MatchCount m;
  m.total = cases.size();
  for (const auto& c : cases) {
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    const std::string got = tok.Decode(ids, c["skip"].get<bool>());
    if (got == c["text"].get<std::string>()) {
      ++m.matched;
    } else if (m.first_mismatch.empty()) {
      m.first_mismatch = c.dump() + " got " + nlohmann::json(got).dump();
    }
  }
  return m;
}

}  // namespace alignserve::testing

#endif  // ALIGNSERVE_TESTS_MODELS_TOKENIZER_TOKENIZER_FIXTURES_H_
