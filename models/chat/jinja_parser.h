// Parser: tokens -> syntax tree, following jinja2's grammar and operator
// precedence (condexpr < or < and < not < compare < + - < ~ < * / // % < **
// < unary - + < postfix . [] () < | filter / is test).
//
// Thread safety: pure function.
#ifndef ALIGNSERVE_MODELS_CHAT_JINJA_PARSER_H_
#define ALIGNSERVE_MODELS_CHAT_JINJA_PARSER_H_

#include <vector>

#include "absl/status/statusor.h"
#include "models/chat/jinja_ast.h"
#include "models/chat/jinja_lexer.h"

namespace alignserve::jinja {

// Fails with InvalidArgument naming line and column. `max_nesting` bounds
// how deeply blocks and expressions may nest, so hostile templates cannot
// exhaust the stack.
absl::StatusOr<Body> Parse(const std::vector<Token>& tokens, int max_nesting);

}  // namespace alignserve::jinja

#endif  // ALIGNSERVE_MODELS_CHAT_JINJA_PARSER_H_
