#include "alignment/answer_extractor.h"

#include <exception>
#include <regex>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace alignserve {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlnum(char c) { return IsDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

size_t DigitRun(std::string_view s, size_t i) {
  size_t j = i;
  while (j < s.size() && IsDigit(s[j])) ++j;
  return j - i;
}

// Length of the unsigned literal at s[i]: digits with optional ",ddd" groups
// (only after a 1-3 digit head, each group exactly three digits), then an
// optional ".digits". s[i] is a digit, or a '.' followed by a digit.
size_t ScanUnsigned(std::string_view s, size_t i) {
  size_t j = i;
  const size_t head = DigitRun(s, j);
  j += head;
  if (head >= 1 && head <= 3) {
    while (j + 3 < s.size() && s[j] == ',' && DigitRun(s, j + 1) == 3) j += 4;
  }
  if (j + 1 < s.size() && s[j] == '.' && IsDigit(s[j + 1])) j += 1 + DigitRun(s, j + 1);
  return j - i;
}

// Start of a sign belonging to the literal at `start`: a '+' or '-' right
// before it that is not itself preceded by a word character or a digit
// ("3-5" is a range, "x = -5" a negative number).
size_t SignedStart(std::string_view s, size_t start) {
  if (start == 0 || (s[start - 1] != '-' && s[start - 1] != '+')) return start;
  if (start >= 2 && (IsAlnum(s[start - 2]) || s[start - 2] == '.')) return start;
  return start - 1;
}

// The last number literal in `text` (sign included), or empty.
std::string_view LastNumberLiteral(std::string_view text) {
  std::string_view last;
  size_t i = 0;
  while (i < text.size()) {
    const bool digit = IsDigit(text[i]);
    const bool dot_start = text[i] == '.' && i + 1 < text.size() && IsDigit(text[i + 1]) &&
                           (i == 0 || (!IsDigit(text[i - 1]) && text[i - 1] != '.'));
    if (!digit && !dot_start) {
      ++i;
      continue;
    }
    const size_t len = ScanUnsigned(text, i);
    const size_t begin = SignedStart(text, i);
    last = text.substr(begin, i + len - begin);
    i += len;
  }
  return last;
}

class LastNumberExtractor : public AnswerExtractor {
 public:
  std::optional<std::string> Extract(std::string_view text) const override {
    const std::string_view literal = LastNumberLiteral(text);
    if (literal.empty()) return std::nullopt;
    return NormalizeNumber(literal);
  }
  std::string spec() const override { return "last_number"; }
};

std::string_view Trim(std::string_view s) {
  const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

// The braced group opening at text[open] == '{', without its braces, or
// nullopt when it never closes. "\{" and "\}" are literal characters.
std::optional<std::string_view> BracedGroup(std::string_view text, size_t open) {
  int depth = 0;
  for (size_t i = open; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\\') {
      ++i;  // An escaped character never opens or closes a group.
    } else if (c == '{') {
      ++depth;
    } else if (c == '}' && --depth == 0) {
      return text.substr(open + 1, i - open - 1);
    }
  }
  return std::nullopt;
}

class BoxedExtractor : public AnswerExtractor {
 public:
  std::optional<std::string> Extract(std::string_view text) const override {
    size_t end = text.size();
    while (true) {
      const size_t boxed = text.rfind("\\boxed", end);
      const size_t fbox = text.rfind("\\fbox", end);
      size_t at;
      size_t name_len;
      if (boxed != std::string_view::npos && (fbox == std::string_view::npos || boxed > fbox)) {
        at = boxed, name_len = 6;
      } else if (fbox != std::string_view::npos) {
        at = fbox, name_len = 5;
      } else {
        return std::nullopt;
      }
      if (std::optional<std::string> answer = TryAt(text, at + name_len)) return answer;
      if (at == 0) return std::nullopt;
      end = at - 1;
    }
  }
  std::string spec() const override { return "boxed"; }

 private:
  static std::optional<std::string> TryAt(std::string_view text, size_t i) {
    while (i < text.size() && text[i] == ' ') ++i;
    if (i >= text.size() || text[i] != '{') return std::nullopt;
    const std::optional<std::string_view> group = BracedGroup(text, i);
    if (!group) return std::nullopt;
    const std::string_view content = Trim(*group);
    if (content.empty()) return std::nullopt;
    if (std::optional<std::string> number = NormalizeNumber(content)) return number;
    return std::string(content);
  }
};

// Product of the upper bounds of the counted repetitions ({n}, {n,}, {n,m})
// outside character classes: an upper bound on how many times any piece of
// the pattern is copied into the automaton.
double RepeatProduct(std::string_view pattern) {
  double product = 1;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\') {
      ++i;
    } else if (in_class) {
      in_class = c != ']';
    } else if (c == '[') {
      in_class = true;
    } else if (c == '{') {
      size_t j = i + 1;
      double bound = 0;
      bool any = false;
      while (j < pattern.size() && (IsDigit(pattern[j]) || pattern[j] == ',')) {
        if (IsDigit(pattern[j])) {
          bound = pattern[j - 1] == ',' ? (pattern[j] - '0') : bound * 10 + (pattern[j] - '0');
          any = true;
        }
        ++j;
      }
      if (any && j < pattern.size() && pattern[j] == '}') product *= bound < 1 ? 1 : bound;
    }
  }
  return product;
}

class RegexExtractor : public AnswerExtractor {
 public:
  RegexExtractor(std::string pattern, std::regex re)
      : pattern_(std::move(pattern)), re_(std::move(re)) {}

  std::optional<std::string> Extract(std::string_view text) const override {
    if (text.size() > kMaxAnswerRegexScanBytes) {
      text.remove_prefix(text.size() - kMaxAnswerRegexScanBytes);
    }
    const int group = re_.mark_count() >= 1 ? 1 : 0;
    std::optional<std::string> last;
    try {
      for (std::cregex_iterator it(text.data(), text.data() + text.size(), re_), end; it != end;
           ++it) {
        const std::csub_match& sub = (*it)[group];
        if (sub.matched) {
          last = sub.str();
        } else {
          last.reset();
        }
      }
    } catch (const std::exception&) {
      return std::nullopt;  // e.g. regex_error(error_complexity) or bad_alloc
    }
    return last;
  }
  std::string spec() const override { return "regex:" + pattern_; }

 private:
  std::string pattern_;
  std::regex re_;
};

absl::StatusOr<std::unique_ptr<AnswerExtractor>> MakeRegexExtractor(std::string_view pattern) {
  if (pattern.empty()) return absl::InvalidArgumentError("answer regex is empty");
  if (pattern.size() > kMaxAnswerRegexLength) {
    return absl::InvalidArgumentError(absl::StrCat("answer regex is ", pattern.size(),
                                                   " characters; at most ", kMaxAnswerRegexLength,
                                                   " are allowed"));
  }
  if (RepeatProduct(pattern) > kMaxAnswerRegexRepeatProduct) {
    return absl::InvalidArgumentError(absl::StrCat(
        "answer regex counted repetitions multiply to more than ", kMaxAnswerRegexRepeatProduct));
  }
  std::string owned(pattern);
  try {
    std::regex re(owned, std::regex::ECMAScript | std::regex_constants::__polynomial);
    return std::unique_ptr<AnswerExtractor>(new RegexExtractor(owned, std::move(re)));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("answer regex '", owned, "' is invalid: ", e.what()));
  }
}

}  // namespace

std::optional<std::string> NormalizeNumber(std::string_view literal) {
  bool negative = false;
  if (!literal.empty() && (literal[0] == '-' || literal[0] == '+')) {
    negative = literal[0] == '-';
    literal.remove_prefix(1);
  }
  if (literal.empty() || !(IsDigit(literal[0]) || literal[0] == '.')) return std::nullopt;
  if (ScanUnsigned(literal, 0) != literal.size()) return std::nullopt;
  std::string integer;
  std::string fraction;
  const size_t dot = literal.find('.');
  for (char c : literal.substr(0, dot)) {
    if (c != ',') integer.push_back(c);
  }
  if (dot != std::string_view::npos) fraction = std::string(literal.substr(dot + 1));
  const size_t first_nonzero = integer.find_first_not_of('0');
  integer = first_nonzero == std::string::npos ? "0" : integer.substr(first_nonzero);
  while (!fraction.empty() && fraction.back() == '0') fraction.pop_back();
  std::string out = integer;
  if (!fraction.empty()) absl::StrAppend(&out, ".", fraction);
  if (negative && out != "0") out.insert(out.begin(), '-');
  return out;
}

absl::StatusOr<std::unique_ptr<AnswerExtractor>> MakeAnswerExtractor(std::string_view spec) {
  if (spec == "last_number") return std::unique_ptr<AnswerExtractor>(new LastNumberExtractor());
  if (spec == "boxed") return std::unique_ptr<AnswerExtractor>(new BoxedExtractor());
  constexpr std::string_view kRegexPrefix = "regex:";
  if (spec.substr(0, kRegexPrefix.size()) == kRegexPrefix) {
    return MakeRegexExtractor(spec.substr(kRegexPrefix.size()));
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown answer extractor '", std::string(spec),
                                                 "'; expected last_number, boxed or "
                                                 "regex:<pattern>"));
}

}  // namespace alignserve
