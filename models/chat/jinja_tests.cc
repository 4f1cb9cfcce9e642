// Tests (`x is name`), declared in jinja_builtins.h, following jinja2/tests.py.
#include <cmath>
#include <functional>
#include <map>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "models/chat/jinja_builtins.h"
#include "models/chat/jinja_interpreter.h"
#include "models/chat/jinja_operators.h"
#include "models/chat/jinja_strings.h"

namespace alignserve::jinja {
namespace {

using TestFn = std::function<absl::StatusOr<bool>(const Value&, const CallArgs&)>;

absl::StatusOr<const Value*> Other(const CallArgs& args, const std::string& test) {
  const Value* other = args.Get(0, "other");
  if (other == nullptr) return absl::InvalidArgumentError("test '" + test + "' needs an argument");
  return other;
}

TestFn Comparison(const std::string& op) {
  return [op](const Value& v, const CallArgs& args) -> absl::StatusOr<bool> {
    ASSIGN_OR_RETURN(const Value* other, Other(args, op));
    return CompareOp(op, v, *other);
  };
}

absl::StatusOr<bool> Parity(const Value& v, bool odd) {
  if (v.is_undefined()) return UndefinedError(v);
  if (!v.is_int() && !v.is_bool()) {
    if (v.is_float()) {
      double m = std::fmod(v.AsDouble(), 2.0);
      return odd ? (m == 1.0 || m == -1.0) : m == 0.0;
    }
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported operand type(s) for %: '", v.TypeName(), "' and 'int'"));
  }
  int64_t r = v.AsIntegral() % 2;
  return odd ? r != 0 : r == 0;
}

const std::map<std::string, TestFn>& Tests() {
  static const auto* kTests = new std::map<std::string, TestFn>{
      {"defined", [](const Value& v, const CallArgs&) -> absl::StatusOr<bool> { return !v.is_undefined(); }},
      {"undefined", [](const Value& v, const CallArgs&) -> absl::StatusOr<bool> { return v.is_undefined(); }},
      {"none", [](const Value& v, const CallArgs&) -> absl::StatusOr<bool> { return v.is_none(); }},
      {"boolean", [](const Value& v, const CallArgs&) -> absl::StatusOr<bool> { return v.is_bool(); }},
      {"true", [](const Value& v, const CallArgs&) -> absl::StatusOr<bool> { return v.is_bool() && v.AsBool(); }},
      {"false", [](const Value& v, const CallArgs&) -> absl::StatusOr<bool> { return v.is_bool() && !v.AsBool(); }},
      {"integer", [](const Value& v, const CallArgs&) -> absl::StatusOr<bool> { return v.is_int(); }},
      {"float", [](const Value& v, const CallArgs&) -> absl::StatusOr<bool> { return v.is_float(); }},
      {"number", [](const Value& v, const CallArgs&) -> absl::StatusOr<bool> { return v.is_number(); }},
      {"string", [](const Value& v, const CallArgs&) -> absl::StatusOr<bool> { return v.is_string(); }},
      {"mapping", [](const Value& v, const CallArgs&) -> absl::StatusOr<bool> { return v.is_dict(); }},
      // Undefined has __len__, __iter__ and __getitem__ in jinja2, so it
      // passes both of these.
      {"sequence", [](const Value& v, const CallArgs&) -> absl::StatusOr<bool> {
         return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
       }},
      {"iterable", [](const Value& v, const CallArgs&) -> absl::StatusOr<bool> {
         return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
       }},
      {"callable", [](const Value& v, const CallArgs&) -> absl::StatusOr<bool> { return v.is_callable(); }},
      {"odd", [](const Value& v, const CallArgs&) { return Parity(v, true); }},
      {"even", [](const Value& v, const CallArgs&) { return Parity(v, false); }},
      {"divisibleby", [](const Value& v, const CallArgs& a) -> absl::StatusOr<bool> {
         const Value* n = a.Get(0, "num");
         if (n == nullptr || !(n->is_int() || n->is_bool()) || !(v.is_int() || v.is_bool())) {
           return absl::InvalidArgumentError("divisibleby needs integers");
         }
         if (n->AsIntegral() == 0) return absl::InvalidArgumentError("integer division or modulo by zero");
         return v.AsIntegral() % n->AsIntegral() == 0;
       }},
      {"lower", [](const Value& v, const CallArgs&) -> absl::StatusOr<bool> {
         std::string s = v.Str();
         return PyLower(s) == s && PyUpper(s) != s;
       }},
      {"upper", [](const Value& v, const CallArgs&) -> absl::StatusOr<bool> {
         std::string s = v.Str();
         return PyUpper(s) == s && PyLower(s) != s;
       }},
      {"sameas", [](const Value& v, const CallArgs& a) -> absl::StatusOr<bool> {
         ASSIGN_OR_RETURN(const Value* other, Other(a, "sameas"));
         if (v.kind() != other->kind()) return false;
         if (v.is_none() || v.is_bool()) return v.Equals(*other);
         return v.Equals(*other) && (v.is_int() || v.is_string());
       }},
      {"in", [](const Value& v, const CallArgs& a) -> absl::StatusOr<bool> {
         const Value* seq = a.Get(0, "seq");
         if (seq == nullptr) return absl::InvalidArgumentError("test 'in' needs an argument");
         return CompareOp("in", v, *seq);
       }},
      {"==", Comparison("==")}, {"!=", Comparison("!=")}, {"<", Comparison("<")},
      {"<=", Comparison("<=")}, {">", Comparison(">")}, {">=", Comparison(">=")},
  };
  return *kTests;
}

const std::string& Canonical(const std::string& name) {
  static const auto* kAliases = new std::map<std::string, std::string>{
      {"eq", "=="}, {"equalto", "=="}, {"ne", "!="}, {"lt", "<"}, {"lessthan", "<"},
      {"le", "<="}, {"gt", ">"}, {"greaterthan", ">"}, {"ge", ">="}};
  auto it = kAliases->find(name);
  return it == kAliases->end() ? name : it->second;
}

}  // namespace

bool IsKnownTest(const std::string& name) { return Tests().count(Canonical(name)) > 0; }

absl::StatusOr<bool> ApplyTest(Interpreter& interp, const std::string& name, const Value& operand,
                               const CallArgs& args) {
  RETURN_IF_ERROR(interp.Charge(1));
  auto it = Tests().find(Canonical(name));
  if (it == Tests().end()) return absl::InvalidArgumentError("No test named '" + name + "'.");
  return it->second(operand, args);
}

}  // namespace alignserve::jinja
