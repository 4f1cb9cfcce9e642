// The syntax tree of a parsed chat template: expressions (Expr) and
// statements (Node), one struct each with a kind tag, mirroring jinja2's
// nodes closely enough that evaluation follows jinja2's semantics.
//
// Thread safety: built once by the parser, then only read; a tree may be
// evaluated by many threads at once.
#ifndef ALIGNSERVE_MODELS_CHAT_JINJA_AST_H_
#define ALIGNSERVE_MODELS_CHAT_JINJA_AST_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/chat/jinja_value.h"

namespace alignserve::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,   // literal
    kName,      // name
    kList,      // children
    kTuple,     // children
    kDict,      // children: key0, value0, key1, value1, ...
    kGetattr,   // children[0] . name
    kGetitem,   // children[0] [ children[1] ]
    kSlice,     // children: start, stop, step (each may be null); only as a subscript
    kCall,      // children[0] ( args, kwargs )
    kFilter,    // children[0] (null inside {% filter %}) | name ( args, kwargs )
    kTest,      // children[0] is name ( args, kwargs )
    kNeg,       // - children[0]
    kPos,       // + children[0]
    kNot,       // not children[0]
    kBinary,    // children[0] op children[1]: + - * / // % ** and or
    kConcat,    // children joined with ~
    kCompare,   // children[0] ops[i] children[i + 1]  (chained like Python)
    kCondExpr,  // children[1] if children[0] else children[2] (children[2] may be null)
  };

  Kind kind;
  int line = 0;
  int column = 0;
  Value literal;
  std::string name;             // name, attribute, filter/test name, or binary operator
  std::vector<std::string> ops; // kCompare operators: == != < <= > >= in notin
  std::vector<ExprPtr> children;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
};

struct Node;
using NodePtr = std::unique_ptr<Node>;
using Body = std::vector<NodePtr>;

// Where {% set %} and {% for %} store values.
struct Target {
  std::vector<std::string> names;  // one name, or several to unpack a tuple
  std::string ns_attr;             // non-empty: {% set names[0].ns_attr = ... %}
  bool unpack = false;             // written as a tuple (`a, b`)
};

struct MacroParam {
  std::string name;
  ExprPtr default_value;  // null: required
};

struct Node {
  enum class Kind {
    kText,         // text
    kOutput,       // {{ expr }}
    kIf,           // conditions[i] -> bodies[i]; else_body
    kFor,          // for target in expr [if filter] : bodies[0]; else_body
    kSet,          // {% set target = expr %}
    kSetBlock,     // {% set target [| filter] %} bodies[0] {% endset %}
    kMacro,        // {% macro name(params) %} bodies[0]
    kCallBlock,    // {% call[(params)] expr %} bodies[0]
    kFilterBlock,  // {% filter expr %} bodies[0]
    kWith,         // {% with targets = values %} bodies[0]
    kBreak,
    kContinue,
    kScope,        // bodies[0], rendered as is ({% generation %})
  };

  Kind kind;
  int line = 0;
  int column = 0;
  std::string text;
  std::string name;
  ExprPtr expr;    // output, set value, for iterable, call, filter
  ExprPtr filter;  // for-loop `if` filter, or set-block filter chain
  Target target;
  std::vector<ExprPtr> conditions;
  std::vector<Body> bodies;
  Body else_body;
  std::vector<MacroParam> params;
  std::vector<std::pair<std::string, ExprPtr>> assignments;  // kWith
};

}  // namespace alignserve::jinja

#endif  // ALIGNSERVE_MODELS_CHAT_JINJA_AST_H_
