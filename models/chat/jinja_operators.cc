#include "models/chat/jinja_operators.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "models/chat/jinja_interpreter.h"
#include "models/chat/jinja_strings.h"

namespace alignserve::jinja {
namespace {

absl::Status TypeError(const std::string& op, const Value& a, const Value& b) {
  return absl::InvalidArgumentError(absl::StrCat("unsupported operand type(s) for ", op, ": '",
                                                 a.TypeName(), "' and '", b.TypeName(), "'"));
}

bool IsIntegral(const Value& v) { return v.is_int() || v.is_bool(); }

absl::StatusOr<Value> Repeat(Interpreter& interp, const Value& seq, int64_t times) {
  if (times < 0) times = 0;
  // Sizes are checked before multiplying, so 'x' * 10**18 fails at once.
  const size_t unit = seq.is_string() ? seq.AsString().size() : seq.AsList().items.size();
  const size_t limit = static_cast<size_t>(INT32_MAX) * 16;
  if (unit > 0 && static_cast<uint64_t>(times) > limit / unit) {
    return interp.ChargeSize(limit + 1);
  }
  const size_t total = unit * static_cast<size_t>(times);
  if (seq.is_string()) {
    RETURN_IF_ERROR(interp.ChargeSize(total));
    const std::string& s = seq.AsString();
    std::string out;
    out.reserve(total);
    for (int64_t i = 0; i < times; ++i) out += s;
    return Value::String(std::move(out));
  }
  const ListData& list = seq.AsList();
  RETURN_IF_ERROR(interp.Charge(static_cast<int64_t>(total)));
  std::vector<Value> out;
  out.reserve(total);
  for (int64_t i = 0; i < times; ++i) out.insert(out.end(), list.items.begin(), list.items.end());
  return Value::List(std::move(out), list.is_tuple);
}

absl::StatusOr<Value> IntArith(const std::string& op, int64_t x, int64_t y) {
  int64_t r = 0;
  bool overflow = false;
  if (op == "+") {
    overflow = __builtin_add_overflow(x, y, &r);
  } else if (op == "-") {
    overflow = __builtin_sub_overflow(x, y, &r);
  } else if (op == "*") {
    overflow = __builtin_mul_overflow(x, y, &r);
  } else if (op == "//" || op == "%") {
    if (y == 0) return absl::InvalidArgumentError("integer division or modulo by zero");
    if (x == INT64_MIN && y == -1) return absl::InvalidArgumentError("integer overflow");
    int64_t q = x / y, m = x % y;
    if (m != 0 && ((m < 0) != (y < 0))) {  // Python floors toward -inf
      --q;
      m += y;
    }
    r = op == "//" ? q : m;
  } else if (op == "**") {
    if (y < 0) return Value::Float(std::pow(static_cast<double>(x), static_cast<double>(y)));
    // Square-and-multiply: O(log y) steps even for 1 ** 10**18.
    r = 1;
    int64_t base = x;
    for (int64_t e = y; e > 0 && !overflow; e >>= 1) {
      if (e & 1) overflow = __builtin_mul_overflow(r, base, &r);
      if (e > 1 && !overflow) overflow = __builtin_mul_overflow(base, base, &base);
    }
  }
  if (overflow) return absl::InvalidArgumentError("integer overflow");
  return Value::Int(r);
}

absl::StatusOr<Value> FloatArith(const std::string& op, double x, double y) {
  if (op == "+") return Value::Float(x + y);
  if (op == "-") return Value::Float(x - y);
  if (op == "*") return Value::Float(x * y);
  if (op == "/") {
    if (y == 0) return absl::InvalidArgumentError("division by zero");
    return Value::Float(x / y);
  }
  if (op == "//" || op == "%") {
    if (y == 0) return absl::InvalidArgumentError("float floor division or modulo by zero");
    double m = std::fmod(x, y);
    if (m != 0 && ((m < 0) != (y < 0))) m += y;
    if (op == "%") return Value::Float(m);
    return Value::Float(std::round((x - m) / y));
  }
  if (op == "**") return Value::Float(std::pow(x, y));
  return absl::InvalidArgumentError("unknown operator " + op);
}

}  // namespace

absl::Status UndefinedError(const Value& undefined) {
  const std::string& hint = undefined.UndefinedHint();
  return absl::InvalidArgumentError(hint.empty() ? "value is undefined" : hint);
}

absl::StatusOr<Value> BinaryOp(Interpreter& interp, const std::string& op, const Value& a,
                               const Value& b) {
  if (a.is_undefined()) return UndefinedError(a);
  if (b.is_undefined()) return UndefinedError(b);
  if (a.is_number() && b.is_number()) {
    if (op == "/") return FloatArith(op, a.AsDouble(), b.AsDouble());
    if (IsIntegral(a) && IsIntegral(b)) return IntArith(op, a.AsIntegral(), b.AsIntegral());
    return FloatArith(op, a.AsDouble(), b.AsDouble());
  }
  if (op == "+") {
    if (a.is_string() && b.is_string()) {
      RETURN_IF_ERROR(interp.ChargeSize(a.AsString().size() + b.AsString().size()));
      return Value::String(a.AsString() + b.AsString());
    }
    if (a.is_list() && b.is_list() && a.AsList().is_tuple == b.AsList().is_tuple) {
      std::vector<Value> items = a.AsList().items;
      RETURN_IF_ERROR(interp.Charge(static_cast<int64_t>(items.size() + b.AsList().items.size())));
      items.insert(items.end(), b.AsList().items.begin(), b.AsList().items.end());
      return Value::List(std::move(items), a.AsList().is_tuple);
    }
  }
  if (op == "*") {
    if ((a.is_string() || a.is_list()) && IsIntegral(b)) return Repeat(interp, a, b.AsIntegral());
    if ((b.is_string() || b.is_list()) && IsIntegral(a)) return Repeat(interp, b, a.AsIntegral());
  }
  if (op == "%" && a.is_string()) {
    return absl::InvalidArgumentError("printf-style string formatting is not supported");
  }
  return TypeError(op, a, b);
}

absl::StatusOr<Value> UnaryOp(const Value& v, bool negative) {
  if (v.is_undefined()) return UndefinedError(v);
  if (v.is_float()) return Value::Float(negative ? -v.AsDouble() : v.AsDouble());
  if (IsIntegral(v)) {
    int64_t x = v.AsIntegral();
    if (negative && x == INT64_MIN) return absl::InvalidArgumentError("integer overflow");
    return Value::Int(negative ? -x : x);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("bad operand type for unary ", negative ? "-" : "+", ": '", v.TypeName(), "'"));
}

absl::StatusOr<bool> LessThan(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.AsDouble() < b.AsDouble();
    return a.AsIntegral() < b.AsIntegral();
  }
  if (a.is_string() && b.is_string()) {
    // UTF-8 byte order equals code point order.
    return a.AsString() < b.AsString();
  }
  if (a.is_list() && b.is_list()) {
    const auto& x = a.AsList().items;
    const auto& y = b.AsList().items;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (x[i].Equals(y[i])) continue;
      return LessThan(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  if (a.is_undefined()) return UndefinedError(a);
  if (b.is_undefined()) return UndefinedError(b);
  return absl::InvalidArgumentError(absl::StrCat("'<' not supported between instances of '",
                                                 a.TypeName(), "' and '", b.TypeName(), "'"));
}

absl::StatusOr<bool> CompareOp(const std::string& op, const Value& a, const Value& b) {
  if (op == "==") return a.Equals(b);
  if (op == "!=") return !a.Equals(b);
  if (op == "<") return LessThan(a, b);
  if (op == ">") return LessThan(b, a);
  if (op == "<=") {
    ASSIGN_OR_RETURN(bool greater, LessThan(b, a));
    return !greater;
  }
  if (op == ">=") {
    ASSIGN_OR_RETURN(bool less, LessThan(a, b));
    return !less;
  }
  // in / notin: `a in b`.
  bool found = false;
  if (b.is_string()) {
    if (!a.is_string()) {
      if (a.is_undefined()) return UndefinedError(a);
      return absl::InvalidArgumentError(
          absl::StrCat("'in <string>' requires string as left operand, not ", a.TypeName()));
    }
    found = b.AsString().find(a.AsString()) != std::string::npos;
  } else if (b.is_list()) {
    for (const Value& item : b.AsList().items) found = found || item.Equals(a);
  } else if (b.is_dict()) {
    found = b.AsDict().Find(a) != nullptr;
  } else if (b.is_undefined()) {
    found = false;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("argument of type '", b.TypeName(), "' is not iterable"));
  }
  return op == "in" ? found : !found;
}

absl::StatusOr<std::vector<Value>> Iterate(const Value& v) {
  std::vector<Value> out;
  switch (v.kind()) {
    case Value::Kind::kUndefined: return out;
    case Value::Kind::kList: return v.AsList().items;
    case Value::Kind::kDict:
      for (const auto& entry : v.AsDict().entries) out.push_back(entry.first);
      return out;
    case Value::Kind::kString:
      for (char32_t cp : DecodeUtf8(v.AsString())) {
        std::string s;
        AppendUtf8(cp, &s);
        out.push_back(Value::String(std::move(s)));
      }
      return out;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("'", v.TypeName(), "' object is not iterable"));
  }
}

absl::StatusOr<int64_t> Length(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return 0;
    case Value::Kind::kString: return static_cast<int64_t>(CodePointLength(v.AsString()));
    case Value::Kind::kList: return static_cast<int64_t>(v.AsList().items.size());
    case Value::Kind::kDict: return static_cast<int64_t>(v.AsDict().entries.size());
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("object of type '", v.TypeName(), "' has no len()"));
  }
}

}  // namespace alignserve::jinja
