// Added tokens (HF added_tokens / GGUF control and user-defined tokens) are
// matched in the raw text before pre-tokenization, leftmost first and longest
// at that position, as HF's AddedVocabulary does. Special ones are matched
// only when the caller parses special tokens (HF split_special_tokens=False).
// Immutable after construction: thread-safe for concurrent const use.
#ifndef ALIGNSERVE_MODELS_TOKENIZER_ADDED_TOKENS_H_
#define ALIGNSERVE_MODELS_TOKENIZER_ADDED_TOKENS_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace alignserve {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
};

// A piece of the input: either plain text (id == -1) or one added token.
struct TextSegment {
  std::string_view text;
  int32_t id = -1;
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  explicit AddedTokenMatcher(std::vector<AddedToken> tokens);

  // Tiles `text` with segments; text segments are never empty.
  std::vector<TextSegment> Split(std::string_view text, bool parse_special) const;

  bool empty() const { return tokens_.empty(); }

 private:
  // Longest active token matching at text[pos], or nullptr.
  const AddedToken* MatchAt(std::string_view text, size_t pos, bool parse_special) const;

  std::vector<AddedToken> tokens_;      // sorted by content length, longest first
  std::array<bool, 256> first_byte_{};  // a token starts with this byte
};

}  // namespace alignserve

#endif  // ALIGNSERVE_MODELS_TOKENIZER_ADDED_TOKENS_H_
