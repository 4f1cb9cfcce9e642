#include "models/tokenizer/byte_level.h"

#include <array>

#include "models/tokenizer/utf8.h"

namespace alignserve {
namespace {

struct Tables {
  std::array<std::string, 256> spelling;
  std::array<int16_t, 512> byte_of_code_point;  // -1: not in the alphabet

  Tables() {
    byte_of_code_point.fill(-1);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      const int cp = printable ? b : next++;
      AppendUtf8(static_cast<uint32_t>(cp), &spelling[b]);
      byte_of_code_point[cp] = static_cast<int16_t>(b);
    }
  }
};

const Tables& GetTables() {
  static const Tables* tables = new Tables();
  return *tables;
}

}  // namespace

const std::string& ByteLevelChar(uint8_t b) { return GetTables().spelling[b]; }

std::string ByteLevelToBytes(std::string_view token) {
  const Tables& t = GetTables();
  std::string out;
  out.reserve(token.size());
  for (size_t pos = 0; pos < token.size();) {
    const Utf8Step step = StepUtf8(token, pos);
    if (step.kind != Utf8Step::kValid || step.code_point >= 512 ||
        t.byte_of_code_point[step.code_point] < 0) {
      return std::string(token);
    }
    out.push_back(static_cast<char>(t.byte_of_code_point[step.code_point]));
    pos += step.length;
  }
  return out;
}

std::string BytesToByteLevel(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += ByteLevelChar(static_cast<uint8_t>(c));
  return out;
}

}  // namespace alignserve
