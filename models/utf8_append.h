// AppendUtf8: the UTF-8 encoding of one code point, shared by the
// tokenizers and the chat-template interpreter (header-only, so neither
// library depends on the other).
// Thread-safety: a pure function.
#ifndef ALIGNSERVE_MODELS_UTF8_APPEND_H_
#define ALIGNSERVE_MODELS_UTF8_APPEND_H_

#include <cstdint>
#include <string>

namespace alignserve {

// Appends cp (< 0x110000; callers pass valid scalar values or U+FFFD).
inline void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace alignserve

#endif  // ALIGNSERVE_MODELS_UTF8_APPEND_H_
