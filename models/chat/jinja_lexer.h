// Lexer: turns a chat template's source into tokens, applying jinja2's
// whitespace rules as transformers configures them: trim_blocks (one newline
// after %} and #} is dropped), lstrip_blocks (spaces before {% and {# on their
// own line are dropped), "-" and "+" markers, newline normalisation and the
// dropped final newline (keep_trailing_newline=False), {% raw %} blocks.
//
// Thread safety: pure function.
#ifndef ALIGNSERVE_MODELS_CHAT_JINJA_LEXER_H_
#define ALIGNSERVE_MODELS_CHAT_JINJA_LEXER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace alignserve::jinja {

struct Token {
  enum class Type {
    kText,        // template data outside tags (value: the text)
    kVarBegin,    // {{
    kVarEnd,      // }}
    kBlockBegin,  // {%
    kBlockEnd,    // %}
    kName,        // identifiers and keywords (value)
    kString,      // string literal, escapes resolved (value)
    kInteger,     // value: digits as written, '_' removed
    kFloat,       // value: as written, '_' removed
    kOperator,    // value: "+", "//", "==", "(", ...
    kEof,
  };
  Type type;
  std::string value;
  int line = 1;    // 1-based
  int column = 1;  // 1-based, in bytes
};

// Fails with InvalidArgument naming line:column for unterminated tags,
// strings or comments, unknown characters and unbalanced brackets.
absl::StatusOr<std::vector<Token>> Tokenize(const std::string& source);

}  // namespace alignserve::jinja

#endif  // ALIGNSERVE_MODELS_CHAT_JINJA_LEXER_H_
