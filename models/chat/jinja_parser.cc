#include "models/chat/jinja_parser.h"

#include <cerrno>
#include <cstdlib>
#include <initializer_list>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"

namespace alignserve::jinja {
namespace {

using T = Token::Type;

class Parser {
 public:
  Parser(const std::vector<Token>& tokens, int max_nesting)
      : tokens_(tokens), max_nesting_(max_nesting) {}

  absl::StatusOr<Body> ParseTemplate() {
    ASSIGN_OR_RETURN(Body body, SubParse({}));
    if (Cur().type != T::kEof) return Fail(absl::StrCat("unexpected '", Cur().value, "'"));
    return body;
  }

 private:
  // --- token helpers ---
  const Token& Cur() const { return tokens_[pos_]; }
  const Token& Peek(size_t n = 1) const {
    return tokens_[std::min(pos_ + n, tokens_.size() - 1)];
  }
  void Advance() {
    if (pos_ + 1 < tokens_.size()) ++pos_;
  }
  bool IsOp(const char* op) const { return Cur().type == T::kOperator && Cur().value == op; }
  bool IsName(const char* name) const { return Cur().type == T::kName && Cur().value == name; }
  bool SkipOp(const char* op) {
    if (!IsOp(op)) return false;
    Advance();
    return true;
  }
  bool SkipName(const char* name) {
    if (!IsName(name)) return false;
    Advance();
    return true;
  }

  absl::Status Fail(const std::string& message) const {
    return absl::InvalidArgumentError(absl::StrCat("template syntax error at line ", Cur().line,
                                                   ", column ", Cur().column, ": ", message));
  }
  std::string Describe() const {
    switch (Cur().type) {
      case T::kEof: return "end of template";
      case T::kBlockEnd: return "end of statement block";
      case T::kVarEnd: return "end of print statement";
      case T::kBlockBegin: return "begin of statement block";
      case T::kVarBegin: return "begin of print statement";
      default: return Cur().value;
    }
  }
  absl::Status ExpectOp(const char* op) {
    if (SkipOp(op)) return absl::OkStatus();
    return Fail(absl::StrCat("expected '", op, "', got '", Describe(), "'"));
  }
  absl::Status Expect(T type, const char* what) {
    if (Cur().type != type) return Fail(absl::StrCat("expected ", what, ", got '", Describe(), "'"));
    Advance();
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> ExpectName() {
    if (Cur().type != T::kName) return Fail(absl::StrCat("expected name, got '", Describe(), "'"));
    std::string name = Cur().value;
    Advance();
    return name;
  }

  template <typename N>
  std::unique_ptr<N> Make(typename N::Kind kind) const {
    auto node = std::make_unique<N>();
    node->kind = kind;
    node->line = Cur().line;
    node->column = Cur().column;
    return node;
  }

  // Bounds recursion; pair every Enter() with a Leave().
  absl::Status Enter() {
    if (++nesting_ > max_nesting_) return Fail("template nests too deeply");
    return absl::OkStatus();
  }
  void Leave() { --nesting_; }

  // --- statements ---
  absl::StatusOr<Body> SubParse(std::initializer_list<const char*> end_names);
  absl::StatusOr<Body> ParseStatements(std::initializer_list<const char*> end_names,
                                       bool drop_needle);
  absl::StatusOr<NodePtr> ParseStatement();
  absl::StatusOr<NodePtr> ParseIf();
  absl::StatusOr<NodePtr> ParseFor();
  absl::StatusOr<NodePtr> ParseSet();
  absl::StatusOr<NodePtr> ParseMacro();
  absl::StatusOr<NodePtr> ParseCallBlock();
  absl::StatusOr<NodePtr> ParseFilterBlock();
  absl::StatusOr<NodePtr> ParseWith();
  absl::Status ParseSignature(std::vector<MacroParam>* params);
  absl::StatusOr<Target> ParseTarget(bool with_namespace, const char* end_name);

  // --- expressions ---
  absl::StatusOr<ExprPtr> ParseTuple(bool with_condexpr, bool explicit_parens,
                                     const char* end_name = nullptr);
  absl::StatusOr<ExprPtr> ParseExpression(bool with_condexpr = true);
  absl::StatusOr<ExprPtr> ParseOr();
  absl::StatusOr<ExprPtr> ParseAnd();
  absl::StatusOr<ExprPtr> ParseNot();
  absl::StatusOr<ExprPtr> ParseCompare();
  absl::StatusOr<ExprPtr> ParseMath1();
  absl::StatusOr<ExprPtr> ParseConcat();
  absl::StatusOr<ExprPtr> ParseMath2();
  absl::StatusOr<ExprPtr> ParsePow();
  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter);
  absl::StatusOr<ExprPtr> ParsePrimary();
  absl::StatusOr<ExprPtr> ParseLiteralToken();
  absl::StatusOr<ExprPtr> ParseListOrDict(bool is_dict);
  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr node);
  absl::StatusOr<ExprPtr> ParseFilterExpr(ExprPtr node);
  absl::StatusOr<ExprPtr> ParseSubscript(ExprPtr node);
  absl::StatusOr<ExprPtr> ParseSubscribed();
  absl::StatusOr<ExprPtr> ParseFilter(ExprPtr node, bool start_inline);
  absl::StatusOr<ExprPtr> ParseTest(ExprPtr node);
  absl::Status ParseCallArgs(Expr* call);
  absl::StatusOr<ExprPtr> Binary(const std::string& op, ExprPtr left, ExprPtr right) const;

  bool IsTupleEnd(const char* end_name) const {
    if (Cur().type == T::kVarEnd || Cur().type == T::kBlockEnd || Cur().type == T::kEof) {
      return true;
    }
    if (IsOp(")")) return true;
    return end_name != nullptr && IsName(end_name);
  }

  const std::vector<Token>& tokens_;
  size_t pos_ = 0;
  int nesting_ = 0;
  const int max_nesting_;
};

absl::StatusOr<Body> Parser::SubParse(std::initializer_list<const char*> end_names) {
  RETURN_IF_ERROR(Enter());
  Body body;
  while (Cur().type != T::kEof) {
    if (Cur().type == T::kText) {
      auto node = Make<Node>(Node::Kind::kText);
      node->text = Cur().value;
      body.push_back(std::move(node));
      Advance();
    } else if (Cur().type == T::kVarBegin) {
      auto node = Make<Node>(Node::Kind::kOutput);
      Advance();
      ASSIGN_OR_RETURN(node->expr, ParseTuple(true, false));
      RETURN_IF_ERROR(Expect(T::kVarEnd, "end of print statement"));
      body.push_back(std::move(node));
    } else if (Cur().type == T::kBlockBegin) {
      Advance();
      for (const char* end : end_names) {
        if (IsName(end)) {
          Leave();
          return body;
        }
      }
      ASSIGN_OR_RETURN(NodePtr node, ParseStatement());
      if (node) body.push_back(std::move(node));
      RETURN_IF_ERROR(Expect(T::kBlockEnd, "end of statement block"));
    } else {
      return Fail(absl::StrCat("unexpected '", Describe(), "'"));
    }
  }
  Leave();
  return body;
}

absl::StatusOr<Body> Parser::ParseStatements(std::initializer_list<const char*> end_names,
                                             bool drop_needle) {
  SkipOp(":");
  RETURN_IF_ERROR(Expect(T::kBlockEnd, "end of statement block"));
  ASSIGN_OR_RETURN(Body body, SubParse(end_names));
  if (Cur().type == T::kEof) {
    std::string expected;
    for (const char* end : end_names) absl::StrAppend(&expected, expected.empty() ? "" : " or ", "'", end, "'");
    return Fail(absl::StrCat("unexpected end of template, expected ", expected));
  }
  if (drop_needle) Advance();
  return body;
}

absl::StatusOr<NodePtr> Parser::ParseStatement() {
  if (Cur().type != T::kName) return Fail("tag name expected");
  const std::string tag = Cur().value;
  if (tag == "if") return ParseIf();
  if (tag == "for") return ParseFor();
  if (tag == "set") return ParseSet();
  if (tag == "macro") return ParseMacro();
  if (tag == "call") return ParseCallBlock();
  if (tag == "filter") return ParseFilterBlock();
  if (tag == "with") return ParseWith();
  if (tag == "break" || tag == "continue") {
    auto node = Make<Node>(tag == "break" ? Node::Kind::kBreak : Node::Kind::kContinue);
    Advance();
    return node;
  }
  if (tag == "generation") {  // transformers' AssistantTracker extension
    auto node = Make<Node>(Node::Kind::kScope);
    Advance();
    ASSIGN_OR_RETURN(Body body, ParseStatements({"endgeneration"}, true));
    node->bodies.push_back(std::move(body));
    return node;
  }
  return Fail(absl::StrCat("unsupported or unknown tag '", tag, "'"));
}

absl::StatusOr<NodePtr> Parser::ParseIf() {
  auto node = Make<Node>(Node::Kind::kIf);
  Advance();
  while (true) {
    ASSIGN_OR_RETURN(ExprPtr cond, ParseTuple(false, false));
    ASSIGN_OR_RETURN(Body body, ParseStatements({"elif", "else", "endif"}, false));
    node->conditions.push_back(std::move(cond));
    node->bodies.push_back(std::move(body));
    std::string token = Cur().value;
    Advance();
    if (token == "elif") continue;
    if (token == "else") {
      ASSIGN_OR_RETURN(node->else_body, ParseStatements({"endif"}, true));
    }
    break;
  }
  return node;
}

absl::StatusOr<Target> Parser::ParseTarget(bool with_namespace, const char* end_name) {
  Target target;
  while (true) {
    if (!target.names.empty()) {
      if (!SkipOp(",")) break;
      target.unpack = true;
      if (IsTupleEnd(end_name) || IsOp("=") || IsOp("|")) break;
    }
    ASSIGN_OR_RETURN(std::string name, ExpectName());
    if (with_namespace && target.names.empty() && IsOp(".")) {
      Advance();
      ASSIGN_OR_RETURN(target.ns_attr, ExpectName());
      target.names.push_back(name);
      return target;
    }
    target.names.push_back(name);
  }
  return target;
}

absl::StatusOr<NodePtr> Parser::ParseFor() {
  auto node = Make<Node>(Node::Kind::kFor);
  Advance();
  ASSIGN_OR_RETURN(node->target, ParseTarget(false, "in"));
  if (!SkipName("in")) return Fail("expected 'in'");
  ASSIGN_OR_RETURN(node->expr, ParseTuple(false, false, "recursive"));
  if (SkipName("if")) {
    ASSIGN_OR_RETURN(node->filter, ParseExpression());
  }
  if (IsName("recursive")) return Fail("recursive loops are not supported");
  ASSIGN_OR_RETURN(Body body, ParseStatements({"endfor", "else"}, false));
  node->bodies.push_back(std::move(body));
  bool has_else = Cur().value == "else";
  Advance();
  if (has_else) {
    ASSIGN_OR_RETURN(node->else_body, ParseStatements({"endfor"}, true));
  }
  return node;
}

absl::StatusOr<NodePtr> Parser::ParseSet() {
  auto node = Make<Node>(Node::Kind::kSet);
  Advance();
  ASSIGN_OR_RETURN(node->target, ParseTarget(true, nullptr));
  if (SkipOp("=")) {
    ASSIGN_OR_RETURN(node->expr, ParseTuple(true, false));
    return node;
  }
  node->kind = Node::Kind::kSetBlock;
  if (IsOp("|")) {
    ASSIGN_OR_RETURN(node->filter, ParseFilter(nullptr, false));
  }
  ASSIGN_OR_RETURN(Body body, ParseStatements({"endset"}, true));
  node->bodies.push_back(std::move(body));
  return node;
}

absl::Status Parser::ParseSignature(std::vector<MacroParam>* params) {
  RETURN_IF_ERROR(ExpectOp("("));
  while (!IsOp(")")) {
    if (!params->empty()) RETURN_IF_ERROR(ExpectOp(","));
    MacroParam param;
    ASSIGN_OR_RETURN(param.name, ExpectName());
    if (SkipOp("=")) {
      ASSIGN_OR_RETURN(param.default_value, ParseExpression());
    } else if (!params->empty() && params->back().default_value) {
      return Fail("non-default argument follows default argument");
    }
    params->push_back(std::move(param));
  }
  return ExpectOp(")");
}

absl::StatusOr<NodePtr> Parser::ParseMacro() {
  auto node = Make<Node>(Node::Kind::kMacro);
  Advance();
  ASSIGN_OR_RETURN(node->name, ExpectName());
  RETURN_IF_ERROR(ParseSignature(&node->params));
  ASSIGN_OR_RETURN(Body body, ParseStatements({"endmacro"}, true));
  node->bodies.push_back(std::move(body));
  return node;
}

absl::StatusOr<NodePtr> Parser::ParseCallBlock() {
  auto node = Make<Node>(Node::Kind::kCallBlock);
  Advance();
  if (IsOp("(")) RETURN_IF_ERROR(ParseSignature(&node->params));
  ASSIGN_OR_RETURN(node->expr, ParseExpression());
  if (node->expr->kind != Expr::Kind::kCall) return Fail("expected call");
  ASSIGN_OR_RETURN(Body body, ParseStatements({"endcall"}, true));
  node->bodies.push_back(std::move(body));
  return node;
}

absl::StatusOr<NodePtr> Parser::ParseFilterBlock() {
  auto node = Make<Node>(Node::Kind::kFilterBlock);
  Advance();
  ASSIGN_OR_RETURN(node->filter, ParseFilter(nullptr, true));
  ASSIGN_OR_RETURN(Body body, ParseStatements({"endfilter"}, true));
  node->bodies.push_back(std::move(body));
  return node;
}

absl::StatusOr<NodePtr> Parser::ParseWith() {
  auto node = Make<Node>(Node::Kind::kWith);
  Advance();
  while (Cur().type != T::kBlockEnd) {
    if (!node->assignments.empty()) RETURN_IF_ERROR(ExpectOp(","));
    ASSIGN_OR_RETURN(std::string name, ExpectName());
    RETURN_IF_ERROR(ExpectOp("="));
    ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
    node->assignments.emplace_back(name, std::move(value));
  }
  ASSIGN_OR_RETURN(Body body, ParseStatements({"endwith"}, true));
  node->bodies.push_back(std::move(body));
  return node;
}

// --- expressions ---

absl::StatusOr<ExprPtr> Parser::ParseTuple(bool with_condexpr, bool explicit_parens,
                                           const char* end_name) {
  auto tuple = Make<Expr>(Expr::Kind::kTuple);
  bool is_tuple = false;
  while (true) {
    if (!tuple->children.empty()) RETURN_IF_ERROR(ExpectOp(","));
    if (IsTupleEnd(end_name)) break;
    ASSIGN_OR_RETURN(ExprPtr item, ParseExpression(with_condexpr));
    tuple->children.push_back(std::move(item));
    if (IsOp(",")) {
      is_tuple = true;
    } else {
      break;
    }
  }
  if (!is_tuple) {
    if (!tuple->children.empty()) return std::move(tuple->children[0]);
    if (!explicit_parens) {
      return Fail(absl::StrCat("expected an expression, got '", Describe(), "'"));
    }
  }
  return tuple;
}

absl::StatusOr<ExprPtr> Parser::ParseExpression(bool with_condexpr) {
  RETURN_IF_ERROR(Enter());
  absl::StatusOr<ExprPtr> result;
  if (!with_condexpr) {
    result = ParseOr();
  } else {
    result = ParseOr();
    while (result.ok() && IsName("if")) {
      auto cond = Make<Expr>(Expr::Kind::kCondExpr);
      Advance();
      ASSIGN_OR_RETURN(ExprPtr test, ParseOr());
      ExprPtr otherwise;
      if (SkipName("else")) {
        ASSIGN_OR_RETURN(otherwise, ParseExpression(true));
      }
      cond->children.push_back(std::move(test));
      cond->children.push_back(*std::move(result));
      cond->children.push_back(std::move(otherwise));
      result = ExprPtr(std::move(cond));
    }
  }
  Leave();
  return result;
}

absl::StatusOr<ExprPtr> Parser::Binary(const std::string& op, ExprPtr left, ExprPtr right) const {
  auto node = std::make_unique<Expr>();
  node->kind = Expr::Kind::kBinary;
  node->line = left->line;
  node->column = left->column;
  node->name = op;
  node->children.push_back(std::move(left));
  node->children.push_back(std::move(right));
  return node;
}

absl::StatusOr<ExprPtr> Parser::ParseOr() {
  ASSIGN_OR_RETURN(ExprPtr left, ParseAnd());
  while (SkipName("or")) {
    ASSIGN_OR_RETURN(ExprPtr right, ParseAnd());
    ASSIGN_OR_RETURN(left, Binary("or", std::move(left), std::move(right)));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseAnd() {
  ASSIGN_OR_RETURN(ExprPtr left, ParseNot());
  while (SkipName("and")) {
    ASSIGN_OR_RETURN(ExprPtr right, ParseNot());
    ASSIGN_OR_RETURN(left, Binary("and", std::move(left), std::move(right)));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseNot() {
  if (IsName("not")) {
    auto node = Make<Expr>(Expr::Kind::kNot);
    Advance();
    RETURN_IF_ERROR(Enter());
    auto operand = ParseNot();
    Leave();
    if (!operand.ok()) return operand.status();
    node->children.push_back(*std::move(operand));
    return node;
  }
  return ParseCompare();
}

absl::StatusOr<ExprPtr> Parser::ParseCompare() {
  ASSIGN_OR_RETURN(ExprPtr first, ParseMath1());
  auto node = Make<Expr>(Expr::Kind::kCompare);
  node->line = first->line;
  node->column = first->column;
  node->children.push_back(std::move(first));
  while (true) {
    std::string op;
    if (Cur().type == T::kOperator &&
        (Cur().value == "==" || Cur().value == "!=" || Cur().value == "<" ||
         Cur().value == "<=" || Cur().value == ">" || Cur().value == ">=")) {
      op = Cur().value;
      Advance();
    } else if (IsName("in")) {
      op = "in";
      Advance();
    } else if (IsName("not") && Peek().type == T::kName && Peek().value == "in") {
      op = "notin";
      Advance();
      Advance();
    } else {
      break;
    }
    ASSIGN_OR_RETURN(ExprPtr operand, ParseMath1());
    node->ops.push_back(op);
    node->children.push_back(std::move(operand));
  }
  if (node->ops.empty()) return std::move(node->children[0]);
  return node;
}

absl::StatusOr<ExprPtr> Parser::ParseMath1() {
  ASSIGN_OR_RETURN(ExprPtr left, ParseConcat());
  while (IsOp("+") || IsOp("-")) {
    std::string op = Cur().value;
    Advance();
    ASSIGN_OR_RETURN(ExprPtr right, ParseConcat());
    ASSIGN_OR_RETURN(left, Binary(op, std::move(left), std::move(right)));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseConcat() {
  ASSIGN_OR_RETURN(ExprPtr first, ParseMath2());
  if (!IsOp("~")) return first;
  auto node = Make<Expr>(Expr::Kind::kConcat);
  node->children.push_back(std::move(first));
  while (SkipOp("~")) {
    ASSIGN_OR_RETURN(ExprPtr next, ParseMath2());
    node->children.push_back(std::move(next));
  }
  return node;
}

absl::StatusOr<ExprPtr> Parser::ParseMath2() {
  ASSIGN_OR_RETURN(ExprPtr left, ParsePow());
  while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
    std::string op = Cur().value;
    Advance();
    ASSIGN_OR_RETURN(ExprPtr right, ParsePow());
    ASSIGN_OR_RETURN(left, Binary(op, std::move(left), std::move(right)));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParsePow() {
  ASSIGN_OR_RETURN(ExprPtr left, ParseUnary(true));
  while (SkipOp("**")) {
    ASSIGN_OR_RETURN(ExprPtr right, ParseUnary(true));
    ASSIGN_OR_RETURN(left, Binary("**", std::move(left), std::move(right)));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseUnary(bool with_filter) {
  RETURN_IF_ERROR(Enter());
  ExprPtr node;
  if (IsOp("-") || IsOp("+")) {
    node = Make<Expr>(IsOp("-") ? Expr::Kind::kNeg : Expr::Kind::kPos);
    Advance();
    auto operand = ParseUnary(false);
    if (!operand.ok()) return operand.status();
    node->children.push_back(*std::move(operand));
  } else {
    auto primary = ParsePrimary();
    if (!primary.ok()) return primary.status();
    node = *std::move(primary);
  }
  ASSIGN_OR_RETURN(node, ParsePostfix(std::move(node)));
  if (with_filter) {
    ASSIGN_OR_RETURN(node, ParseFilterExpr(std::move(node)));
  }
  Leave();
  return node;
}

absl::StatusOr<ExprPtr> Parser::ParseLiteralToken() {
  auto node = Make<Expr>(Expr::Kind::kLiteral);
  const Token& token = Cur();
  if (token.type == T::kString) {
    std::string value;
    while (Cur().type == T::kString) {
      value += Cur().value;
      Advance();
    }
    node->literal = Value::String(std::move(value));
    return node;
  }
  if (token.type == T::kFloat) {
    node->literal = Value::Float(std::strtod(token.value.c_str(), nullptr));
    Advance();
    return node;
  }
  std::string digits = token.value;
  int base = 10;
  if (digits.size() > 2 && digits[0] == '0') {
    char p = static_cast<char>(digits[1] | 0x20);
    base = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 10;
    if (base != 10) digits = digits.substr(2);
  }
  errno = 0;
  char* end = nullptr;
  long long value = std::strtoll(digits.c_str(), &end, base);
  if (errno == ERANGE || end == digits.c_str() || *end != '\0') {
    return Fail(absl::StrCat("integer literal out of range or malformed: ", token.value));
  }
  node->literal = Value::Int(value);
  Advance();
  return node;
}

absl::StatusOr<ExprPtr> Parser::ParsePrimary() {
  const Token& token = Cur();
  if (token.type == T::kName) {
    auto node = Make<Expr>(Expr::Kind::kLiteral);
    const std::string& name = token.value;
    if (name == "true" || name == "True") {
      node->literal = Value::Bool(true);
    } else if (name == "false" || name == "False") {
      node->literal = Value::Bool(false);
    } else if (name == "none" || name == "None") {
      node->literal = Value::None();
    } else {
      node->kind = Expr::Kind::kName;
      node->name = name;
    }
    Advance();
    return node;
  }
  if (token.type == T::kString || token.type == T::kInteger || token.type == T::kFloat) {
    return ParseLiteralToken();
  }
  if (IsOp("(")) {
    Advance();
    ASSIGN_OR_RETURN(ExprPtr node, ParseTuple(true, true));
    RETURN_IF_ERROR(ExpectOp(")"));
    return node;
  }
  if (IsOp("[")) return ParseListOrDict(false);
  if (IsOp("{")) return ParseListOrDict(true);
  return Fail(absl::StrCat("unexpected '", Describe(), "'"));
}

absl::StatusOr<ExprPtr> Parser::ParseListOrDict(bool is_dict) {
  auto node = Make<Expr>(is_dict ? Expr::Kind::kDict : Expr::Kind::kList);
  const char* close = is_dict ? "}" : "]";
  Advance();
  while (!IsOp(close)) {
    if (!node->children.empty()) {
      RETURN_IF_ERROR(ExpectOp(","));
      if (IsOp(close)) break;
    }
    ASSIGN_OR_RETURN(ExprPtr item, ParseExpression());
    node->children.push_back(std::move(item));
    if (is_dict) {
      RETURN_IF_ERROR(ExpectOp(":"));
      ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
      node->children.push_back(std::move(value));
    }
  }
  RETURN_IF_ERROR(ExpectOp(close));
  return node;
}

absl::StatusOr<ExprPtr> Parser::ParsePostfix(ExprPtr node) {
  while (true) {
    if (IsOp(".") || IsOp("[")) {
      ASSIGN_OR_RETURN(node, ParseSubscript(std::move(node)));
    } else if (IsOp("(")) {
      auto call = Make<Expr>(Expr::Kind::kCall);
      call->children.push_back(std::move(node));
      RETURN_IF_ERROR(ParseCallArgs(call.get()));
      node = std::move(call);
    } else {
      return node;
    }
  }
}

absl::StatusOr<ExprPtr> Parser::ParseFilterExpr(ExprPtr node) {
  while (true) {
    if (IsOp("|")) {
      ASSIGN_OR_RETURN(node, ParseFilter(std::move(node), false));
    } else if (IsName("is")) {
      ASSIGN_OR_RETURN(node, ParseTest(std::move(node)));
    } else if (IsOp("(")) {
      auto call = Make<Expr>(Expr::Kind::kCall);
      call->children.push_back(std::move(node));
      RETURN_IF_ERROR(ParseCallArgs(call.get()));
      node = std::move(call);
    } else {
      return node;
    }
  }
}

absl::StatusOr<ExprPtr> Parser::ParseSubscript(ExprPtr node) {
  if (SkipOp(".")) {
    if (Cur().type == T::kName) {
      auto attr = Make<Expr>(Expr::Kind::kGetattr);
      attr->name = Cur().value;
      Advance();
      attr->children.push_back(std::move(node));
      return attr;
    }
    if (Cur().type != T::kInteger) return Fail("expected name or number");
    auto item = Make<Expr>(Expr::Kind::kGetitem);
    ASSIGN_OR_RETURN(ExprPtr index, ParseLiteralToken());
    item->children.push_back(std::move(node));
    item->children.push_back(std::move(index));
    return item;
  }
  auto item = Make<Expr>(Expr::Kind::kGetitem);
  RETURN_IF_ERROR(ExpectOp("["));
  std::vector<ExprPtr> args;
  while (!IsOp("]")) {
    if (!args.empty()) RETURN_IF_ERROR(ExpectOp(","));
    ASSIGN_OR_RETURN(ExprPtr arg, ParseSubscribed());
    args.push_back(std::move(arg));
  }
  RETURN_IF_ERROR(ExpectOp("]"));
  if (args.empty()) return Fail("expected subscript expression");
  item->children.push_back(std::move(node));
  if (args.size() == 1) {
    item->children.push_back(std::move(args[0]));
  } else {
    auto tuple = Make<Expr>(Expr::Kind::kTuple);
    tuple->children = std::move(args);
    item->children.push_back(std::move(tuple));
  }
  return item;
}

absl::StatusOr<ExprPtr> Parser::ParseSubscribed() {
  auto slice = Make<Expr>(Expr::Kind::kSlice);
  ExprPtr start;
  if (!IsOp(":")) {
    ASSIGN_OR_RETURN(start, ParseExpression());
    if (!IsOp(":")) return start;
  }
  Advance();  // the first ':'
  slice->children.push_back(std::move(start));
  ExprPtr stop, step;
  if (!IsOp(":") && !IsOp("]") && !IsOp(",")) {
    ASSIGN_OR_RETURN(stop, ParseExpression());
  }
  if (SkipOp(":") && !IsOp("]") && !IsOp(",")) {
    ASSIGN_OR_RETURN(step, ParseExpression());
  }
  slice->children.push_back(std::move(stop));
  slice->children.push_back(std::move(step));
  return slice;
}

absl::Status Parser::ParseCallArgs(Expr* call) {
  RETURN_IF_ERROR(ExpectOp("("));
  bool need_comma = false;
  while (!IsOp(")")) {
    if (need_comma) {
      RETURN_IF_ERROR(ExpectOp(","));
      if (IsOp(")")) break;
    }
    if (IsOp("*") || IsOp("**")) return Fail("*args and **kwargs in calls are not supported");
    if (Cur().type == T::kName && Peek().type == T::kOperator && Peek().value == "=") {
      std::string key = Cur().value;
      Advance();
      Advance();
      ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
      call->kwargs.emplace_back(key, std::move(value));
    } else {
      if (!call->kwargs.empty()) return Fail("invalid syntax for function call expression");
      ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
      call->args.push_back(std::move(value));
    }
    need_comma = true;
  }
  return ExpectOp(")");
}

absl::StatusOr<ExprPtr> Parser::ParseFilter(ExprPtr node, bool start_inline) {
  while (IsOp("|") || start_inline) {
    if (!start_inline) Advance();
    start_inline = false;
    auto filter = Make<Expr>(Expr::Kind::kFilter);
    ASSIGN_OR_RETURN(filter->name, ExpectName());
    while (SkipOp(".")) {
      ASSIGN_OR_RETURN(std::string part, ExpectName());
      filter->name += "." + part;
    }
    if (IsOp("(")) RETURN_IF_ERROR(ParseCallArgs(filter.get()));
    filter->children.push_back(std::move(node));
    node = std::move(filter);
  }
  return node;
}

absl::StatusOr<ExprPtr> Parser::ParseTest(ExprPtr node) {
  Advance();  // 'is'
  bool negated = SkipName("not");
  auto test = Make<Expr>(Expr::Kind::kTest);
  ASSIGN_OR_RETURN(test->name, ExpectName());
  while (SkipOp(".")) {
    ASSIGN_OR_RETURN(std::string part, ExpectName());
    test->name += "." + part;
  }
  if (IsOp("(")) {
    RETURN_IF_ERROR(ParseCallArgs(test.get()));
  } else if ((Cur().type == T::kName || Cur().type == T::kString ||
              Cur().type == T::kInteger || Cur().type == T::kFloat || IsOp("[") ||
              IsOp("{")) &&
             !IsName("else") && !IsName("or") && !IsName("and")) {
    if (IsName("is")) return Fail("You cannot chain multiple tests with is");
    ASSIGN_OR_RETURN(ExprPtr arg, ParsePrimary());
    ASSIGN_OR_RETURN(arg, ParsePostfix(std::move(arg)));
    test->args.push_back(std::move(arg));
  }
  test->children.push_back(std::move(node));
  if (!negated) return test;
  auto not_node = Make<Expr>(Expr::Kind::kNot);
  not_node->children.push_back(std::move(test));
  return not_node;
}

}  // namespace

absl::StatusOr<Body> Parse(const std::vector<Token>& tokens, int max_nesting) {
  return Parser(tokens, max_nesting).ParseTemplate();
}

}  // namespace alignserve::jinja
