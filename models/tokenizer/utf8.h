// UTF-8 decoding helpers shared by the pre-tokenizers, Decode and the
// incremental detokenizer. Invalid input never aborts: ill-formed bytes are
// replaced by U+FFFD one "maximal subpart" at a time (Unicode 3.9, Table 3-7),
// which is what Rust's String::from_utf8_lossy (HF tokenizers) and Python's
// bytes.decode(errors="replace") produce. Pure functions: thread-safe.
#ifndef ALIGNSERVE_MODELS_TOKENIZER_UTF8_H_
#define ALIGNSERVE_MODELS_TOKENIZER_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "models/utf8_append.h"
#include <string_view>

namespace alignserve {

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

struct Utf8Step {
  enum Kind : uint8_t {
    kValid,       // `length` bytes encode `code_point`
    kInvalid,     // the first `length` bytes are one maximal ill-formed subpart
    kIncomplete,  // all `length` remaining bytes are a valid but cut prefix
  };
  Kind kind;
  uint8_t length;  // >= 1
  uint32_t code_point;
};

// Decodes the sequence starting at bytes[pos]; pos < bytes.size().
Utf8Step StepUtf8(std::string_view bytes, size_t pos);

// Appends bytes to *out with every ill-formed subpart (including a cut
// sequence at the end) replaced by U+FFFD.
void AppendLossyUtf8(std::string_view bytes, std::string* out);

// Like AppendLossyUtf8, but a valid-yet-incomplete sequence at the very end is
// not emitted; returns how many trailing bytes were held back (0..3).
size_t AppendLossyUtf8HoldTail(std::string_view bytes, std::string* out);

bool IsValidUtf8(std::string_view bytes);


}  // namespace alignserve

#endif  // ALIGNSERVE_MODELS_TOKENIZER_UTF8_H_
