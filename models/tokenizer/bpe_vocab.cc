// CreateBpeTokenizer: a byte-level BPE tokenizer from GGUF metadata
// (tokenizer.ggml.model == "gpt2").
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "models/tokenizer/bpe_tokenizer.h"
#include "models/tokenizer/tokenizer.h"

namespace alignserve {
namespace {

constexpr int32_t kTokenTypeControl = 3;
constexpr int32_t kTokenTypeUserDefined = 4;

struct PreSetting {
  const char* name;
  PreTokenizerKind kind;
  bool ignore_merges;
};

// GGUF tokenizer.ggml.pre values and the HF pre-tokenizer each stands for.
constexpr PreSetting kPreSettings[] = {
    {"gpt2", PreTokenizerKind::kGpt2, false},       {"default", PreTokenizerKind::kGpt2, false},
    {"llama-bpe", PreTokenizerKind::kLlama3, true}, {"llama3", PreTokenizerKind::kLlama3, true},
    {"qwen2", PreTokenizerKind::kQwen2, false},     {"smollm", PreTokenizerKind::kSmolLm, false},
};

absl::StatusOr<PreSetting> FindPre(const std::string& pre) {
  std::string names;
  for (const PreSetting& s : kPreSettings) {
    if (pre == s.name) return s;
    absl::StrAppend(&names, names.empty() ? "" : ", ", "\"", s.name, "\"");
  }
  return absl::UnimplementedError(absl::StrCat(
      "unsupported BPE pre-tokenizer (tokenizer.ggml.pre) \"", pre, "\"; supported: ", names));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> CreateBpeTokenizer(const BpeVocab& vocab) {
  absl::StatusOr<PreSetting> pre = FindPre(vocab.pre);
  if (!pre.ok()) return pre.status();
  const size_t n = vocab.tokens.size();
  if (n == 0) return absl::InvalidArgumentError("BPE vocabulary is empty");
  if (!vocab.token_types.empty() && vocab.token_types.size() != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("token_types has ", vocab.token_types.size(), " entries for ", n, " tokens"));
  }
  for (int32_t id : {vocab.bos_id, vocab.eos_id, vocab.unk_id}) {
    if (id < -1 || id >= static_cast<int32_t>(n)) {
      return absl::InvalidArgumentError(
          absl::StrCat("special token id ", id, " outside the vocabulary"));
    }
  }
  BpeTokenizerSpec spec;
  spec.tokens = vocab.tokens;
  spec.pre = pre->kind;
  spec.ignore_merges = pre->ignore_merges;
  spec.bos_id = vocab.bos_id;
  spec.eos_id = vocab.eos_id;
  spec.add_bos = vocab.add_bos;
  spec.merges.reserve(vocab.merges.size());
  for (const std::string& m : vocab.merges) {
    const size_t space = m.find(' ');
    if (space == std::string::npos || m.find(' ', space + 1) != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("BPE merge \"", m, "\" is not two tokens \"a b\""));
    }
    spec.merges.emplace_back(m.substr(0, space), m.substr(space + 1));
  }
  for (size_t id = 0; id < n; ++id) {
    const int32_t type = vocab.token_types.empty() ? 1 : vocab.token_types[id];
    const bool control = vocab.token_types.empty() ? (static_cast<int32_t>(id) == vocab.bos_id ||
                                                      static_cast<int32_t>(id) == vocab.eos_id)
                                                   : type == kTokenTypeControl;
    if (control || type == kTokenTypeUserDefined) {
      spec.added_tokens.push_back({vocab.tokens[id], static_cast<int32_t>(id), control});
    }
  }
  return CreateBpeTokenizerFromSpec(std::move(spec));
}

}  // namespace alignserve
