// Unicode character classes used by the pre-tokenizer regexes (\p{L}, \p{N},
// \s), as sorted, non-overlapping code point ranges generated from Python's
// unicodedata by tests/reference/gen_unicode_tables.py, plus a classifier
// over them. Immutable tables: thread-safe.
#ifndef ALIGNSERVE_MODELS_TOKENIZER_UNICODE_TABLES_H_
#define ALIGNSERVE_MODELS_TOKENIZER_UNICODE_TABLES_H_

#include <cstdint>
#include <span>

namespace alignserve {

struct CodePointRange {
  uint32_t first;
  uint32_t last;  // inclusive
};

namespace unicode_tables {
std::span<const CodePointRange> Letters();     // general category L*
std::span<const CodePointRange> Numbers();     // general category N*
std::span<const CodePointRange> WhiteSpace();  // property White_Space
}  // namespace unicode_tables

// The class of one code point as the regexes see it. Invalid UTF-8 bytes are
// decoded as kInvalidCodePoint and classify as kOther (like punctuation).
enum class CharClass : uint8_t { kLetter, kNumber, kSpace, kOther };

inline constexpr uint32_t kInvalidCodePoint = 0xFFFFFFFF;

CharClass ClassifyCodePoint(uint32_t cp);

}  // namespace alignserve

#endif  // ALIGNSERVE_MODELS_TOKENIZER_UNICODE_TABLES_H_
