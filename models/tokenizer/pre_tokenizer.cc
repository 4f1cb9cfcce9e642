#include "models/tokenizer/pre_tokenizer.h"

#include <cstdint>

#include "models/tokenizer/unicode_tables.h"
#include "models/tokenizer/utf8.h"

namespace alignserve {
namespace {

struct Char {
  uint32_t cp;
  uint32_t offset;  // byte offset in the text
  CharClass cls;
};

// A decoded view of the text; chars[n].offset == text size (sentinel).
class CharView {
 public:
  explicit CharView(std::string_view text) {
    chars_.reserve(text.size() + 1);
    for (size_t pos = 0; pos < text.size();) {
      const Utf8Step step = StepUtf8(text, pos);
      const uint32_t cp = step.kind == Utf8Step::kValid ? step.code_point : kInvalidCodePoint;
      const size_t len = step.kind == Utf8Step::kValid ? step.length : 1;
      chars_.push_back({cp, static_cast<uint32_t>(pos), ClassifyCodePoint(cp)});
      pos += len;
    }
    chars_.push_back({0, static_cast<uint32_t>(text.size()), CharClass::kOther});
  }
  size_t size() const { return chars_.size() - 1; }
  const Char& operator[](size_t i) const { return chars_[i]; }

 private:
  std::vector<Char> chars_;
};

bool IsNewline(uint32_t cp) { return cp == '\r' || cp == '\n'; }

uint32_t Lower(uint32_t cp) { return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp; }

// Length of the contraction suffix after an apostrophe at i, or 0.
size_t Contraction(const CharView& c, size_t i, size_t end, bool ignore_case) {
  if (c[i].cp != '\'' || i + 1 >= end) return 0;
  auto at = [&](size_t k) {
    if (i + k >= end) return uint32_t{0};
    return ignore_case ? Lower(c[i + k].cp) : c[i + k].cp;
  };
  const uint32_t a = at(1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  const uint32_t b = at(2);
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) {
    return 3;
  }
  return 0;
}

size_t RunOf(const CharView& c, size_t i, size_t end, CharClass cls) {
  while (i < end && c[i].cls == cls) ++i;
  return i;
}

// \s+(?!\S) then \s+ for a whitespace run starting at i.
size_t TrailingSpace(const CharView& c, size_t i, size_t end) {
  const size_t j = RunOf(c, i, end, CharClass::kSpace);
  if (j == end || j - i < 2) return j;
  return j - 1;
}

// End of the GPT-2 pattern's match starting at i (> i).
size_t MatchGpt2(const CharView& c, size_t i, size_t end) {
  if (size_t n = Contraction(c, i, end, /*ignore_case=*/false)) return i + n;
  size_t s = i;
  if (c[i].cp == ' ' && i + 1 < end && c[i + 1].cls != CharClass::kSpace) {
    s = i + 1;  // the optional leading space of " ?X+"
  }
  if (c[s].cls != CharClass::kSpace) return RunOf(c, s, end, c[s].cls);
  return TrailingSpace(c, i, end);
}

// End of the Llama 3 (max_digits 3) / Qwen2 (max_digits 1) match at i.
size_t MatchLlama3(const CharView& c, size_t i, size_t end, size_t max_digits) {
  if (size_t n = Contraction(c, i, end, /*ignore_case=*/true)) return i + n;
  const CharClass cls = c[i].cls;
  if (cls == CharClass::kLetter) return RunOf(c, i, end, cls);
  if (cls != CharClass::kNumber && !IsNewline(c[i].cp) && i + 1 < end &&
      c[i + 1].cls == CharClass::kLetter) {
    return RunOf(c, i + 1, end, CharClass::kLetter);
  }
  if (cls == CharClass::kNumber) {
    size_t j = i;
    while (j < end && j - i < max_digits && c[j].cls == cls) ++j;
    return j;
  }
  size_t s = i;
  if (c[i].cp == ' ' && i + 1 < end && c[i + 1].cls == CharClass::kOther) {
    s = i + 1;
  }
  if (c[s].cls == CharClass::kOther) {
    size_t j = RunOf(c, s, end, CharClass::kOther);
    while (j < end && IsNewline(c[j].cp)) ++j;
    return j;
  }
  // Whitespace: \s*[\r\n]+ ends after the run's last newline, if any.
  const size_t j = RunOf(c, i, end, CharClass::kSpace);
  for (size_t k = j; k > i; --k) {
    if (IsNewline(c[k - 1].cp)) return k;
  }
  return TrailingSpace(c, i, end);
}

void SplitRange(PreTokenizerKind kind, const CharView& c, size_t begin, size_t end,
                std::string_view text, std::vector<std::string_view>* words) {
  for (size_t i = begin; i < end;) {
    size_t j = 0;
    switch (kind) {
      case PreTokenizerKind::kLlama3:
        j = MatchLlama3(c, i, end, 3);
        break;
      case PreTokenizerKind::kQwen2:
        j = MatchLlama3(c, i, end, 1);
        break;
      default:
        j = MatchGpt2(c, i, end);
        break;
    }
    words->push_back(text.substr(c[i].offset, c[j].offset - c[i].offset));
    i = j;
  }
}

}  // namespace

void PreTokenize(PreTokenizerKind kind, std::string_view text,
                 std::vector<std::string_view>* words) {
  const CharView c(text);
  if (kind != PreTokenizerKind::kSmolLm) {
    SplitRange(kind, c, 0, c.size(), text, words);
    return;
  }
  size_t begin = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    if (c[i].cls != CharClass::kNumber) continue;
    SplitRange(PreTokenizerKind::kGpt2, c, begin, i, text, words);
    words->push_back(text.substr(c[i].offset, c[i + 1].offset - c[i].offset));
    begin = i + 1;
  }
  SplitRange(PreTokenizerKind::kGpt2, c, begin, c.size(), text, words);
}

}  // namespace alignserve
