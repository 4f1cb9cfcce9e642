#include "models/tokenizer/added_tokens.h"

#include <algorithm>

namespace alignserve {

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
  std::erase_if(tokens_, [](const AddedToken& t) { return t.content.empty(); });
  std::stable_sort(tokens_.begin(), tokens_.end(), [](const AddedToken& a, const AddedToken& b) {
    return a.content.size() > b.content.size();
  });
  for (const AddedToken& t : tokens_) {
    first_byte_[static_cast<uint8_t>(t.content[0])] = true;
  }
}

const AddedToken* AddedTokenMatcher::MatchAt(std::string_view text, size_t pos,
                                             bool parse_special) const {
  if (!first_byte_[static_cast<uint8_t>(text[pos])]) return nullptr;
  const std::string_view rest = text.substr(pos);
  for (const AddedToken& t : tokens_) {
    if (t.special && !parse_special) continue;
    if (rest.starts_with(t.content)) return &t;
  }
  return nullptr;
}

std::vector<TextSegment> AddedTokenMatcher::Split(std::string_view text, bool parse_special) const {
  std::vector<TextSegment> out;
  size_t start = 0;
  for (size_t pos = 0; pos < text.size();) {
    const AddedToken* t = tokens_.empty() ? nullptr : MatchAt(text, pos, parse_special);
    if (t == nullptr) {
      ++pos;
      continue;
    }
    if (pos > start) out.push_back({text.substr(start, pos - start), -1});
    out.push_back({text.substr(pos, t->content.size()), t->id});
    pos += t->content.size();
    start = pos;
  }
  if (start < text.size()) out.push_back({text.substr(start), -1});
  return out;
}

}  // namespace alignserve
