// Byte-level BPE tokenizer (GPT-2 family: SmolLM2, Llama 3, Qwen2, ...).
// Encode: split at added tokens, pre-tokenize each text piece into words
// (pre_tokenizer.h), spell each word's bytes in the byte-level alphabet and
// apply the merges by rank with a priority queue (O(n log n) per word).
// Both factories (GGUF metadata and tokenizer.json) fill a BpeTokenizerSpec.
// Immutable after creation: thread-safe for concurrent const use.
#ifndef ALIGNSERVE_MODELS_TOKENIZER_BPE_TOKENIZER_H_
#define ALIGNSERVE_MODELS_TOKENIZER_BPE_TOKENIZER_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "models/tokenizer/added_tokens.h"
#include "models/tokenizer/pre_tokenizer.h"
#include "models/tokenizer/tokenizer.h"

namespace alignserve {

struct BpeTokenizerSpec {
  // [vocab_size] id -> stored spelling: byte-level for model tokens, raw text
  // for added tokens; "" for ids nothing uses.
  std::vector<std::string> tokens;
  // By rank: the pair of spellings that merge into their concatenation.
  std::vector<std::pair<std::string, std::string>> merges;
  std::vector<AddedToken> added_tokens;
  PreTokenizerKind pre = PreTokenizerKind::kGpt2;
  // A word whose whole spelling is in the vocabulary is that token, merges
  // unused (HF BPE ignore_merges; Llama 3).
  bool ignore_merges = false;
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  bool add_bos = false;
};

absl::StatusOr<std::unique_ptr<Tokenizer>> CreateBpeTokenizerFromSpec(BpeTokenizerSpec spec);

class BpeTokenizer : public Tokenizer {
 public:
  std::vector<int32_t> Encode(std::string_view text, bool add_bos,
                              bool parse_special = true) const override;
  std::string TokenBytes(int32_t id) const override;
  std::string Decode(std::span<const int32_t> ids, bool skip_special) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(token_bytes_.size()); }
  bool IsSpecial(int32_t id) const override;
  std::optional<int32_t> TokenId(std::string_view piece) const override;
  TextRule text_rule() const override { return TextRule::kByteLevel; }

 private:
  friend absl::StatusOr<std::unique_ptr<Tokenizer>> CreateBpeTokenizerFromSpec(
      BpeTokenizerSpec spec);

  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };
  static uint64_t PairKey(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }

  BpeTokenizer() = default;
  void EncodeWord(std::string_view word, std::vector<int32_t>* out) const;
  void ApplyMerges(std::vector<int32_t>* symbols) const;

  PreTokenizerKind pre_ = PreTokenizerKind::kGpt2;
  bool ignore_merges_ = false;
  std::vector<std::string> token_bytes_;                 // [vocab_size] raw bytes per id
  std::vector<bool> special_;                            // [vocab_size]
  absl::flat_hash_map<std::string, int32_t> token_ids_;  // spelling -> id
  absl::flat_hash_map<uint64_t, Merge> merges_;          // (left, right) ->
  std::array<int32_t, 256> byte_token_{};                // byte -> its token id, or -1
  AddedTokenMatcher added_;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_MODELS_TOKENIZER_BPE_TOKENIZER_H_
