// LoadTokenizerJson: a byte-level BPE tokenizer from an HF tokenizer.json.
// Recognised pre-tokenizers (anything else is a clear error):
//   ByteLevel(use_regex=true)                         -> GPT-2 pattern
//   Sequence[Split(Regex R, Isolated), ByteLevel(use_regex=false)]
//     with R the GPT-2, Llama 3 or Qwen2 pattern      -> that pattern
//   Sequence[Digits(individual_digits), ByteLevel(use_regex=true)] -> SmolLM2
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "models/tokenizer/bpe_tokenizer.h"
#include "models/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace alignserve {
namespace {

using Json = nlohmann::json;

constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

std::string Str(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

bool Flag(const Json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

absl::StatusOr<Json> ReadJson(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream buf;
  buf << in.rdbuf();
  Json j = Json::parse(buf.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a JSON object"));
  }
  return j;
}

absl::Status Unsupported(const std::string& what) {
  return absl::UnimplementedError(
      absl::StrCat("tokenizer.json: unsupported ", what,
                   "; supported pre-tokenizers: "
                   "ByteLevel(use_regex), Sequence[Split(GPT-2 | Llama 3 | Qwen2 regex), "
                   "ByteLevel], Sequence[Digits(individual_digits), ByteLevel]"));
}

bool IsByteLevel(const Json& p, bool use_regex) {
  return p.is_object() && Str(p, "type") == "ByteLevel" &&
         Flag(p, "use_regex", true) == use_regex && !Flag(p, "add_prefix_space", false);
}

absl::StatusOr<PreTokenizerKind> SplitPattern(const Json& split) {
  if (Str(split, "behavior") != "Isolated" || Flag(split, "invert", false)) {
    return Unsupported("Split behaviour (only Isolated, not inverted)");
  }
  auto pattern = split.find("pattern");
  if (pattern == split.end() || !pattern->is_object()) {
    return Unsupported("Split without a pattern");
  }
  const std::string regex = Str(*pattern, "Regex");
  if (regex == kGpt2Pattern) return PreTokenizerKind::kGpt2;
  if (regex == kLlama3Pattern) return PreTokenizerKind::kLlama3;
  if (regex == kQwen2Pattern) return PreTokenizerKind::kQwen2;
  return Unsupported(absl::StrCat("Split regex ", pattern->dump()));
}

absl::StatusOr<PreTokenizerKind> ParsePreTokenizer(const Json& p) {
  if (IsByteLevel(p, /*use_regex=*/true)) return PreTokenizerKind::kGpt2;
  const Json* seq = nullptr;
  if (p.is_object() && Str(p, "type") == "Sequence") {
    auto it = p.find("pretokenizers");
    if (it != p.end() && it->is_array() && it->size() == 2) seq = &*it;
  }
  if (seq == nullptr) return Unsupported(absl::StrCat("pre_tokenizer ", p.dump()));
  const Json& first = (*seq)[0];
  const Json& second = (*seq)[1];
  if (Str(first, "type") == "Digits" && Flag(first, "individual_digits", false) &&
      IsByteLevel(second, /*use_regex=*/true)) {
    return PreTokenizerKind::kSmolLm;
  }
  if (Str(first, "type") == "Split" && IsByteLevel(second, /*use_regex=*/false)) {
    return SplitPattern(first);
  }
  return Unsupported(absl::StrCat("pre_tokenizer ", p.dump()));
}

absl::Status ParseModel(const Json& model, BpeTokenizerSpec* spec) {
  if (!model.is_object() || Str(model, "type") != "BPE") {
    return Unsupported("model (only type BPE)");
  }
  if (Flag(model, "byte_fallback", false) || !Str(model, "continuing_subword_prefix").empty() ||
      !Str(model, "end_of_word_suffix").empty()) {
    return Unsupported("BPE options (byte_fallback / subword prefix / suffix)");
  }
  spec->ignore_merges = Flag(model, "ignore_merges", false);
  auto vocab = model.find("vocab");
  auto merges = model.find("merges");
  if (vocab == model.end() || !vocab->is_object() || merges == model.end() || !merges->is_array()) {
    return absl::InvalidArgumentError("tokenizer.json: model lacks vocab/merges");
  }
  for (const auto& [piece, id] : vocab->items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > (1 << 24)) {
      return absl::InvalidArgumentError(absl::StrCat("bad vocab id for ", piece));
    }
    const size_t i = id.get<size_t>();
    if (i >= spec->tokens.size()) spec->tokens.resize(i + 1);
    spec->tokens[i] = piece;
  }
  for (const Json& m : *merges) {
    if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      spec->merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      continue;
    }
    const std::string s = m.is_string() ? m.get<std::string>() : "";
    const size_t space = s.find(' ');
    if (space == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("bad merge ", m.dump()));
    }
    spec->merges.emplace_back(s.substr(0, space), s.substr(space + 1));
  }
  return absl::OkStatus();
}

absl::Status ParseAddedTokens(const Json& added, BpeTokenizerSpec* spec) {
  if (added.is_null()) return absl::OkStatus();
  if (!added.is_array()) {
    return absl::InvalidArgumentError("tokenizer.json: added_tokens is not a list");
  }
  for (const Json& t : added) {
    auto id = t.find("id");
    if (!t.is_object() || id == t.end() || !id->is_number_integer() || id->get<int64_t>() < 0 ||
        id->get<int64_t>() > (1 << 24)) {
      return absl::InvalidArgumentError(absl::StrCat("bad added token ", t.dump()));
    }
    if (Flag(t, "lstrip", false) || Flag(t, "rstrip", false) || Flag(t, "single_word", false)) {
      return Unsupported(absl::StrCat("added token flags in ", t.dump()));
    }
    const size_t i = id->get<size_t>();
    if (i >= spec->tokens.size()) spec->tokens.resize(i + 1);
    spec->tokens[i] = Str(t, "content");
    spec->added_tokens.push_back(
        {Str(t, "content"), static_cast<int32_t>(i), Flag(t, "special", false)});
  }
  return absl::OkStatus();
}

// bos/eos live in tokenizer_config.json beside tokenizer.json, when present.
void ReadTokenizerConfig(const std::string& path, BpeTokenizerSpec* spec) {
  const auto config = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
  absl::StatusOr<Json> j = ReadJson(config.string());
  if (!j.ok()) return;
  auto id_of = [&](const char* key) -> int32_t {
    auto it = j->find(key);
    if (it == j->end()) return -1;
    const std::string s = it->is_string() ? it->get<std::string>() : Str(*it, "content");
    for (const AddedToken& t : spec->added_tokens) {
      if (!s.empty() && t.content == s) return t.id;
    }
    return -1;
  };
  spec->bos_id = id_of("bos_token");
  spec->eos_id = id_of("eos_token");
  spec->add_bos = Flag(*j, "add_bos_token", false) && spec->bos_id >= 0;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& path) {
  ASSIGN_OR_RETURN(Json j, ReadJson(path));
  auto normalizer = j.find("normalizer");
  if (normalizer != j.end() && !normalizer->is_null()) {
    return Unsupported(absl::StrCat("normalizer ", normalizer->dump()));
  }
  auto decoder = j.find("decoder");
  if (decoder == j.end() || Str(*decoder, "type") != "ByteLevel") {
    return Unsupported("decoder (only ByteLevel)");
  }
  BpeTokenizerSpec spec;
  auto pre = j.find("pre_tokenizer");
  ASSIGN_OR_RETURN(spec.pre, ParsePreTokenizer(pre == j.end() ? Json() : *pre));
  auto model = j.find("model");
  RETURN_IF_ERROR(ParseModel(model == j.end() ? Json() : *model, &spec));
  auto added = j.find("added_tokens");
  RETURN_IF_ERROR(ParseAddedTokens(added == j.end() ? Json() : *added, &spec));
  ReadTokenizerConfig(path, &spec);
  return CreateBpeTokenizerFromSpec(std::move(spec));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerJson(const std::string& path) {
  // Every access above checks types first; this only guards against a
  // nlohmann exception slipping through on an unforeseen shape.
  try {
    return Load(path);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer.json ", path, ": ", e.what()));
  }
}

}  // namespace alignserve
