#include "models/chat/jinja_lexer.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "models/chat/jinja_strings.h"

namespace alignserve::jinja {
namespace {

// jinja2 splits the source on \r\n, \r and \n, drops one trailing empty line
// (keep_trailing_newline=False) and joins with "\n".
std::string NormalizeNewlines(const std::string& source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsNameStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool IsNameChar(char c) { return IsNameStart(c) || IsDigit(c); }

class Lexer {
 public:
  explicit Lexer(const std::string& source) : src_(NormalizeNewlines(source)) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i) {
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  absl::StatusOr<std::vector<Token>> Run() {
    while (pos_ < src_.size()) {
      size_t open = FindTagOpen(pos_);
      if (open == std::string::npos) {
        Emit(Token::Type::kText, src_.substr(pos_), pos_);
        pos_ = src_.size();
        break;
      }
      absl::Status status = LexTag(open);
      if (!status.ok()) return status;
    }
    Emit(Token::Type::kEof, "", src_.size());
    return std::move(tokens_);
  }

 private:
  size_t FindTagOpen(size_t from) const {
    for (size_t i = src_.find('{', from); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && std::strchr("{%#", src_[i + 1]) != nullptr) return i;
    }
    return std::string::npos;
  }

  void Emit(Token::Type type, std::string value, size_t offset) {
    if (type == Token::Type::kText && value.empty()) return;
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
    size_t line = static_cast<size_t>(it - line_starts_.begin());
    Token token{type, std::move(value), static_cast<int>(line),
                static_cast<int>(offset - line_starts_[line - 1] + 1)};
    tokens_.push_back(std::move(token));
  }

  absl::Status Error(const std::string& message, size_t offset) const {
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
    size_t line = static_cast<size_t>(it - line_starts_.begin());
    return absl::InvalidArgumentError(absl::StrCat("template syntax error at line ", line,
                                                   ", column ", offset - line_starts_[line - 1] + 1,
                                                   ": ", message));
  }

  bool StartsWith(size_t at, const char* s) const {
    return src_.compare(at, std::strlen(s), s) == 0;
  }

  // Skips Python whitespace from `at`; returns the new position.
  size_t SkipSpaces(size_t at) const {
    while (at < src_.size()) {
      unsigned char c = static_cast<unsigned char>(src_[at]);
      size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : 4;
      std::vector<char32_t> cp = DecodeUtf8(std::string_view(src_).substr(at, len));
      if (cp.size() != 1 || !IsPythonSpace(cp[0])) break;
      at += len;
    }
    return at;
  }

  // Applies "-" / lstrip_blocks to the text before a tag and emits it.
  void EmitLeadingText(size_t open, char sign, bool is_variable) {
    std::string text = src_.substr(pos_, open - pos_);
    if (sign == '-') {
      text = PyStrip(text, std::nullopt, false, true);
    } else if (sign != '+' && !is_variable) {
      size_t l_pos = text.rfind('\n');
      l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
      if ((l_pos > 0 || line_starting_) && l_pos < text.size() &&
          PyStrip(text.substr(l_pos), std::nullopt, true, true).empty()) {
        text.resize(l_pos);
      }
    }
    Emit(Token::Type::kText, std::move(text), pos_);
  }

  // Matches `{%[-+]? raw [-]?%}` at `open`; sets *body to the body start.
  bool MatchRawBegin(size_t after_sign, size_t* body) const {
    size_t p = SkipSpaces(after_sign);
    if (!StartsWith(p, "raw")) return false;
    p = SkipSpaces(p + 3);
    if (StartsWith(p, "-%}")) {
      *body = SkipSpaces(p + 3);
      return true;
    }
    if (StartsWith(p, "%}")) {
      *body = p + 2;
      return true;
    }
    return false;
  }

  absl::Status LexTag(size_t open) {
    const char kind = src_[open + 1];
    size_t after = open + 2;
    char sign = 0;
    if (after < src_.size() && (src_[after] == '-' || src_[after] == '+')) sign = src_[after++];
    size_t raw_body = 0;
    bool is_raw = kind == '%' && MatchRawBegin(after, &raw_body);
    EmitLeadingText(open, sign, kind == '{');
    line_starting_ = false;
    if (is_raw) return LexRaw(open, raw_body);
    if (kind == '#') return LexComment(open, after);
    Emit(kind == '{' ? Token::Type::kVarBegin : Token::Type::kBlockBegin, "", open);
    pos_ = after;
    return LexInside(open, kind == '{');
  }

  // Consumes the end of a block-like tag at `at` ("+%}", "-%}\s*", "%}\n?"
  // with trim_blocks; `close` is "%}" or "#}"). Returns npos if none there.
  size_t MatchBlockEnd(size_t at, const char* close) {
    const size_t n = std::strlen(close);
    if (src_[at] == '+' && src_.compare(at + 1, n, close) == 0) {
      line_starting_ = false;
      return at + 1 + n;
    }
    if (src_[at] == '-' && src_.compare(at + 1, n, close) == 0) {
      size_t end = SkipSpaces(at + 1 + n);
      line_starting_ = end > at + 1 + n && src_[end - 1] == '\n';
      return end;
    }
    if (src_.compare(at, n, close) == 0) {
      size_t end = at + n;
      line_starting_ = end < src_.size() && src_[end] == '\n';
      return line_starting_ ? end + 1 : end;
    }
    return std::string::npos;
  }

  absl::Status LexComment(size_t open, size_t from) {
    for (size_t at = src_.find('#', from); at != std::string::npos; at = src_.find('#', at + 1)) {
      if (at + 1 >= src_.size() || src_[at + 1] != '}') continue;
      size_t start = (at > from && (src_[at - 1] == '-' || src_[at - 1] == '+')) ? at - 1 : at;
      pos_ = MatchBlockEnd(start, "#}");
      return absl::OkStatus();
    }
    return Error("missing end of comment tag", open);
  }

  absl::Status LexRaw(size_t open, size_t body) {
    for (size_t at = src_.find("{%", body); at != std::string::npos;
         at = src_.find("{%", at + 1)) {
      size_t p = at + 2;
      char sign = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
      p = SkipSpaces(p);
      if (!StartsWith(p, "endraw")) continue;
      p = SkipSpaces(p + 6);
      size_t end = MatchBlockEnd(p, "%}");
      if (end == std::string::npos) continue;
      pos_ = body;
      bool saved = line_starting_;
      EmitLeadingText(at, sign, false);
      line_starting_ = saved;
      pos_ = end;
      return absl::OkStatus();
    }
    return Error("missing end of raw directive", open);
  }

  absl::Status LexInside(size_t open, bool is_variable) {
    std::vector<char> balance;
    while (true) {
      if (pos_ >= src_.size()) {
        return Error(is_variable ? "unexpected end of template, expected '}}'"
                                 : "unexpected end of template, expected '%}'",
                     open);
      }
      if (balance.empty()) {
        if (is_variable) {
          if (StartsWith(pos_, "-}}") || StartsWith(pos_, "}}")) {
            Emit(Token::Type::kVarEnd, "", pos_);
            bool dash = src_[pos_] == '-';
            pos_ += dash ? 3 : 2;
            if (dash) pos_ = SkipSpaces(pos_);
            line_starting_ = dash && src_[pos_ - 1] == '\n';
            return absl::OkStatus();
          }
        } else {
          size_t end = MatchBlockEnd(pos_, "%}");
          if (end != std::string::npos) {
            Emit(Token::Type::kBlockEnd, "", pos_);
            pos_ = end;
            return absl::OkStatus();
          }
        }
      }
      absl::Status status = LexOne(&balance);
      if (!status.ok()) return status;
    }
  }

  absl::Status LexOne(std::vector<char>* balance) {
    size_t start = pos_;
    size_t after_space = SkipSpaces(pos_);
    if (after_space != pos_) {
      pos_ = after_space;
      return absl::OkStatus();
    }
    char c = src_[pos_];
    if (IsDigit(c)) return LexNumber();
    if (IsNameStart(c)) {
      while (pos_ < src_.size() && IsNameChar(src_[pos_])) ++pos_;
      Emit(Token::Type::kName, src_.substr(start, pos_ - start), start);
      return absl::OkStatus();
    }
    if (c == '\'' || c == '"') return LexString();
    static const char* kTwoChar[] = {"//", "**", "==", "!=", ">=", "<="};
    for (const char* op : kTwoChar) {
      if (StartsWith(pos_, op)) {
        pos_ += 2;
        Emit(Token::Type::kOperator, op, start);
        return absl::OkStatus();
      }
    }
    if (std::strchr("+-/*%~[](){}><=.:|,;", c) == nullptr || c == 0) {
      return Error(absl::StrCat("unexpected char '", std::string(1, c), "'"), start);
    }
    if (c == '(' || c == '[' || c == '{') {
      balance->push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
    } else if (c == ')' || c == ']' || c == '}') {
      if (balance->empty()) return Error(absl::StrCat("unexpected '", std::string(1, c), "'"), start);
      if (balance->back() != c) {
        return Error(absl::StrCat("unexpected '", std::string(1, c), "', expected '",
                                  std::string(1, balance->back()), "'"),
                     start);
      }
      balance->pop_back();
    }
    ++pos_;
    Emit(Token::Type::kOperator, std::string(1, c), start);
    return absl::OkStatus();
  }

  size_t ScanDigits(size_t at, bool (*is_digit)(char)) const {
    // (\d+_)*\d+ style: digits with single underscores between them.
    while (at < src_.size() &&
           (is_digit(src_[at]) ||
            (src_[at] == '_' && at + 1 < src_.size() && is_digit(src_[at + 1])))) {
      ++at;
    }
    return at;
  }

  absl::Status LexNumber() {
    size_t start = pos_;
    auto strip = [](std::string s) {
      s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
      return s;
    };
    char next = start + 1 < src_.size() ? static_cast<char>(src_[start + 1] | 0x20) : 0;
    if (src_[start] == '0' && (next == 'x' || next == 'o' || next == 'b')) {
      size_t p = start + 2;
      while (p < src_.size() && (std::isxdigit(static_cast<unsigned char>(src_[p])) ||
                                 src_[p] == '_')) {
        ++p;
      }
      pos_ = p;
      Emit(Token::Type::kInteger, strip(src_.substr(start, p - start)), start);
      return absl::OkStatus();
    }
    size_t p = ScanDigits(start, IsDigit);
    bool is_float = false;
    if (p + 1 < src_.size() && src_[p] == '.' && IsDigit(src_[p + 1])) {
      p = ScanDigits(p + 1, IsDigit);
      is_float = true;
    }
    if (p < src_.size() && (src_[p] == 'e' || src_[p] == 'E')) {
      size_t q = p + 1;
      if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
      if (q < src_.size() && IsDigit(src_[q])) {
        p = ScanDigits(q, IsDigit);
        is_float = true;
      }
    }
    pos_ = p;
    Emit(is_float ? Token::Type::kFloat : Token::Type::kInteger,
         strip(src_.substr(start, p - start)), start);
    return absl::OkStatus();
  }

  absl::Status LexString();

  std::string src_;
  std::vector<size_t> line_starts_;
  size_t pos_ = 0;
  bool line_starting_ = true;
  std::vector<Token> tokens_;
};

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = static_cast<char>(c | 0x20);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Python's unicode-escape decoding of a string literal's body.
bool Unescape(const std::string& body, std::string* out) {
  for (size_t i = 0; i < body.size(); ++i) {
    char c = body[i];
    if (c != '\\' || i + 1 >= body.size()) {
      out->push_back(c);
      continue;
    }
    char e = body[++i];
    switch (e) {
      case '\n': break;
      case '\\': out->push_back('\\'); break;
      case '\'': out->push_back('\''); break;
      case '"': out->push_back('"'); break;
      case 'a': out->push_back('\a'); break;
      case 'b': out->push_back('\b'); break;
      case 'f': out->push_back('\f'); break;
      case 'n': out->push_back('\n'); break;
      case 'r': out->push_back('\r'); break;
      case 't': out->push_back('\t'); break;
      case 'v': out->push_back('\v'); break;
      case 'x':
      case 'u':
      case 'U': {
        int width = e == 'x' ? 2 : e == 'u' ? 4 : 8;
        char32_t cp = 0;
        for (int k = 1; k <= width; ++k) {
          int h = i + k < body.size() ? HexValue(body[i + k]) : -1;
          if (h < 0) return false;
          cp = cp * 16 + static_cast<char32_t>(h);
        }
        if (cp > 0x10FFFF) return false;
        AppendUtf8(cp, out);
        i += width;
        break;
      }
      default:
        if (e >= '0' && e <= '7') {
          char32_t cp = 0;
          size_t k = i;
          for (; k < body.size() && k < i + 3 && body[k] >= '0' && body[k] <= '7'; ++k) {
            cp = cp * 8 + static_cast<char32_t>(body[k] - '0');
          }
          AppendUtf8(cp, out);
          i = k - 1;
        } else {
          out->push_back('\\');
          out->push_back(e);
        }
    }
  }
  return true;
}

absl::Status Lexer::LexString() {
  size_t start = pos_;
  char quote = src_[pos_];
  size_t p = pos_ + 1;
  while (p < src_.size() && src_[p] != quote) p += src_[p] == '\\' ? 2 : 1;
  if (p >= src_.size()) return Error("unterminated string literal", start);
  std::string value;
  if (!Unescape(src_.substr(start + 1, p - start - 1), &value)) {
    return Error("truncated escape in string literal", start);
  }
  pos_ = p + 1;
  Emit(Token::Type::kString, std::move(value), start);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<Token>> Tokenize(const std::string& source) {
  return Lexer(source).Run();
}

}  // namespace alignserve::jinja
