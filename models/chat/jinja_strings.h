// Python str semantics over UTF-8 std::strings, for the Jinja interpreter:
// code-point indexing and length, strip/split with Python's whitespace set,
// case mapping, repr quoting, splitlines.
//
// Thread safety: pure functions.
#ifndef ALIGNSERVE_MODELS_CHAT_JINJA_STRINGS_H_
#define ALIGNSERVE_MODELS_CHAT_JINJA_STRINGS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "models/utf8_append.h"

namespace alignserve::jinja {

// Decodes UTF-8 into code points; invalid bytes map to U+FFFD.
std::vector<char32_t> DecodeUtf8(std::string_view s);
std::string EncodeUtf8(const std::vector<char32_t>& cps);
// Number of code points (Python len()).
size_t CodePointLength(std::string_view s);

// Python str.isspace() for one code point.
bool IsPythonSpace(char32_t cp);

// str.strip/lstrip/rstrip; `chars` absent strips Python whitespace.
std::string PyStrip(std::string_view s, const std::optional<std::string>& chars, bool left,
                    bool right);
// str.split(sep, maxsplit) and str.split() (sep absent: runs of whitespace).
std::vector<std::string> PySplit(std::string_view s, const std::optional<std::string>& sep,
                                 int64_t maxsplit);
// str.rsplit(sep, maxsplit).
std::vector<std::string> PyRSplit(std::string_view s, const std::optional<std::string>& sep,
                                  int64_t maxsplit);
// str.splitlines() without keepends.
std::vector<std::string> PySplitLines(std::string_view s);
// str.replace(old, new, count); count < 0 replaces all.
std::string PyReplace(std::string_view s, std::string_view old, std::string_view repl,
                      int64_t count);

// Case mapping for ASCII and Latin-1/Latin Extended-A/Greek/Cyrillic basics.
std::string PyUpper(std::string_view s);
std::string PyLower(std::string_view s);
// str.capitalize(): first code point upper, the rest lower.
std::string PyCapitalize(std::string_view s);
// jinja2's title filter: capitalise after spaces and -({[< runs.
std::string JinjaTitle(std::string_view s);
// str.title(): capitalise after any non-letter.
std::string PyTitle(std::string_view s);

// Python repr() of a str: 'abc', "it's", with \n, \x00 style escapes.
std::string PyReprString(std::string_view s);

// Python json.dumps escaping of a str with ensure_ascii=False, quotes included.
std::string JsonQuote(std::string_view s);

}  // namespace alignserve::jinja

#endif  // ALIGNSERVE_MODELS_CHAT_JINJA_STRINGS_H_
