#include "models/tokenizer/utf8.h"

#include <algorithm>
#include <span>

#include "models/tokenizer/unicode_tables.h"

namespace alignserve {
namespace {

// Allowed range of the second byte for each lead byte (Table 3-7); later
// continuation bytes are always 80..BF.
struct LeadInfo {
  uint8_t length;  // 0: not a valid lead byte
  uint8_t second_lo;
  uint8_t second_hi;
};

LeadInfo Lead(uint8_t b) {
  if (b < 0x80) return {1, 0, 0};
  if (b < 0xC2) return {0, 0, 0};
  if (b < 0xE0) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b < 0xF0) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b < 0xF4) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

bool InRanges(std::span<const CodePointRange> ranges, uint32_t cp) {
  auto it = std::upper_bound(ranges.begin(), ranges.end(), cp,
                             [](uint32_t v, const CodePointRange& r) { return v < r.first; });
  return it != ranges.begin() && cp <= std::prev(it)->last;
}

}  // namespace

Utf8Step StepUtf8(std::string_view bytes, size_t pos) {
  const auto b0 = static_cast<uint8_t>(bytes[pos]);
  const LeadInfo lead = Lead(b0);
  if (lead.length == 1) return {Utf8Step::kValid, 1, b0};
  if (lead.length == 0) return {Utf8Step::kInvalid, 1, 0};
  uint32_t cp = b0 & (0x7F >> lead.length);
  for (uint8_t k = 1; k < lead.length; ++k) {
    if (pos + k >= bytes.size()) return {Utf8Step::kIncomplete, k, 0};
    const auto b = static_cast<uint8_t>(bytes[pos + k]);
    const uint8_t lo = k == 1 ? lead.second_lo : 0x80;
    const uint8_t hi = k == 1 ? lead.second_hi : 0xBF;
    if (b < lo || b > hi) return {Utf8Step::kInvalid, k, 0};
    cp = (cp << 6) | (b & 0x3F);
  }
  return {Utf8Step::kValid, lead.length, cp};
}

size_t AppendLossyUtf8HoldTail(std::string_view bytes, std::string* out) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    const Utf8Step step = StepUtf8(bytes, pos);
    if (step.kind == Utf8Step::kIncomplete) return bytes.size() - pos;
    if (step.kind == Utf8Step::kValid) {
      out->append(bytes.substr(pos, step.length));
    } else {
      out->append(kReplacementChar);
    }
    pos += step.length;
  }
  return 0;
}

void AppendLossyUtf8(std::string_view bytes, std::string* out) {
  // A cut sequence at the end is one maximal subpart: one U+FFFD.
  if (AppendLossyUtf8HoldTail(bytes, out) > 0) out->append(kReplacementChar);
}

bool IsValidUtf8(std::string_view bytes) {
  for (size_t pos = 0; pos < bytes.size();) {
    const Utf8Step step = StepUtf8(bytes, pos);
    if (step.kind != Utf8Step::kValid) return false;
    pos += step.length;
  }
  return true;
}

CharClass ClassifyCodePoint(uint32_t cp) {
  if (cp == kInvalidCodePoint) return CharClass::kOther;
  if (cp < 0x80) {
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) {
      return CharClass::kLetter;
    }
    if (cp >= '0' && cp <= '9') return CharClass::kNumber;
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return CharClass::kSpace;
    return CharClass::kOther;
  }
  if (InRanges(unicode_tables::Letters(), cp)) return CharClass::kLetter;
  if (InRanges(unicode_tables::Numbers(), cp)) return CharClass::kNumber;
  if (InRanges(unicode_tables::WhiteSpace(), cp)) return CharClass::kSpace;
  return CharClass::kOther;
}

}  // namespace alignserve
