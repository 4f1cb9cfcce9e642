// Expression evaluation for Interpreter (declared in jinja_interpreter.h).
#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "models/chat/jinja_builtins.h"
#include "models/chat/jinja_interpreter.h"
#include "models/chat/jinja_methods.h"
#include "models/chat/jinja_operators.h"

namespace alignserve::jinja {

absl::Status Interpreter::ErrorAt(const Expr& expr, const absl::Status& status) const {
  // Limit errors and raise_exception() keep their exact message.
  if (status.code() != absl::StatusCode::kInvalidArgument ||
      status.GetPayload(kRaiseExceptionPayload).has_value() ||
      status.message().rfind("template error at line", 0) == 0) {
    return status;
  }
  return absl::InvalidArgumentError(absl::StrCat("template error at line ", expr.line,
                                                 ", column ", expr.column, ": ",
                                                 status.message()));
}

absl::StatusOr<Value> Interpreter::Eval(const Expr& expr, const std::shared_ptr<Frame>& frame) {
  RETURN_IF_ERROR(Charge(1));
  switch (expr.kind) {
    case Expr::Kind::kLiteral: return expr.literal;
    case Expr::Kind::kName: {
      const Value* value = frame->Find(expr.name);
      if (value == nullptr) return Value::Undefined(absl::StrCat("'", expr.name, "' is undefined"));
      return *value;
    }
    default: {
      absl::StatusOr<Value> result = EvalCompound(expr, frame);
      if (!result.ok()) return ErrorAt(expr, result.status());
      return result;
    }
  }
}

absl::StatusOr<Value> Interpreter::EvalCompound(const Expr& expr,
                                                const std::shared_ptr<Frame>& frame) {
  const auto& kids = expr.children;
  switch (expr.kind) {
    case Expr::Kind::kList:
    case Expr::Kind::kTuple: {
      std::vector<Value> items;
      items.reserve(kids.size());
      for (const ExprPtr& kid : kids) {
        ASSIGN_OR_RETURN(Value item, Eval(*kid, frame));
        items.push_back(std::move(item));
      }
      Value list = Value::List(std::move(items), expr.kind == Expr::Kind::kTuple);
      if (list.Depth() > Value::kMaxDepth) {
        return absl::ResourceExhaustedError("chat template value nests too deeply");
      }
      return list;
    }
    case Expr::Kind::kDict: {
      std::vector<std::pair<Value, Value>> entries;
      for (size_t i = 0; i + 1 < kids.size(); i += 2) {
        ASSIGN_OR_RETURN(Value key, Eval(*kids[i], frame));
        ASSIGN_OR_RETURN(Value value, Eval(*kids[i + 1], frame));
        if (key.is_list() || key.is_dict() || key.is_namespace()) {
          return absl::InvalidArgumentError(absl::StrCat("unhashable type: '", key.TypeName(), "'"));
        }
        bool replaced = false;
        for (auto& entry : entries) {
          if (entry.first.Equals(key)) {
            entry.second = value;
            replaced = true;
          }
        }
        if (!replaced) entries.emplace_back(std::move(key), std::move(value));
      }
      Value dict = Value::Dict(std::move(entries));
      if (dict.Depth() > Value::kMaxDepth) {
        return absl::ResourceExhaustedError("chat template value nests too deeply");
      }
      return dict;
    }
    case Expr::Kind::kGetattr: {
      ASSIGN_OR_RETURN(Value obj, Eval(*kids[0], frame));
      return GetAttr(obj, expr.name);
    }
    case Expr::Kind::kGetitem: return EvalSubscript(expr, frame);
    case Expr::Kind::kSlice: return absl::InvalidArgumentError("slice outside of a subscript");
    case Expr::Kind::kCall: return EvalCall(expr, frame);
    case Expr::Kind::kFilter: return EvalFilter(expr, frame, nullptr);
    case Expr::Kind::kTest: {
      ASSIGN_OR_RETURN(Value operand, Eval(*kids[0], frame));
      ASSIGN_OR_RETURN(CallArgs args, EvalArgs(expr, frame));
      ASSIGN_OR_RETURN(bool passed, ApplyTest(*this, expr.name, operand, args));
      return Value::Bool(passed);
    }
    case Expr::Kind::kNeg:
    case Expr::Kind::kPos: {
      ASSIGN_OR_RETURN(Value operand, Eval(*kids[0], frame));
      return UnaryOp(operand, expr.kind == Expr::Kind::kNeg);
    }
    case Expr::Kind::kNot: {
      ASSIGN_OR_RETURN(Value operand, Eval(*kids[0], frame));
      return Value::Bool(!operand.Truthy());
    }
    case Expr::Kind::kBinary: {
      ASSIGN_OR_RETURN(Value left, Eval(*kids[0], frame));
      // `and` / `or` short-circuit and yield an operand, as in Python.
      if (expr.name == "and") return left.Truthy() ? Eval(*kids[1], frame) : left;
      if (expr.name == "or") return left.Truthy() ? left : Eval(*kids[1], frame);
      ASSIGN_OR_RETURN(Value right, Eval(*kids[1], frame));
      return BinaryOp(*this, expr.name, left, right);
    }
    case Expr::Kind::kConcat: {
      std::string out;
      for (const ExprPtr& kid : kids) {
        ASSIGN_OR_RETURN(Value part, Eval(*kid, frame));
        out += part.Str();
        RETURN_IF_ERROR(ChargeSize(out.size()));
      }
      return Value::String(std::move(out));
    }
    case Expr::Kind::kCompare: return EvalCompare(expr, frame);
    case Expr::Kind::kCondExpr: {
      ASSIGN_OR_RETURN(Value cond, Eval(*kids[0], frame));
      if (cond.Truthy()) return Eval(*kids[1], frame);
      if (kids[2]) return Eval(*kids[2], frame);
      return Value::Undefined("the inline if-expression evaluated to false and no else section was defined");
    }
    default: return absl::InternalError("unknown expression");
  }
}

absl::StatusOr<Value> Interpreter::EvalSubscript(const Expr& expr,
                                                 const std::shared_ptr<Frame>& frame) {
  ASSIGN_OR_RETURN(Value obj, Eval(*expr.children[0], frame));
  const Expr& index = *expr.children[1];
  if (index.kind != Expr::Kind::kSlice) {
    ASSIGN_OR_RETURN(Value key, Eval(index, frame));
    return GetItem(obj, key);
  }
  Value bounds[3];
  for (int i = 0; i < 3; ++i) {
    if (index.children[i]) {
      ASSIGN_OR_RETURN(bounds[i], Eval(*index.children[i], frame));
    } else {
      bounds[i] = Value::None();
    }
  }
  return SliceValue(*this, obj, bounds[0], bounds[1], bounds[2]);
}

absl::StatusOr<CallArgs> Interpreter::EvalArgs(const Expr& expr,
                                               const std::shared_ptr<Frame>& frame) {
  CallArgs args;
  for (const ExprPtr& arg : expr.args) {
    ASSIGN_OR_RETURN(Value value, Eval(*arg, frame));
    args.positional.push_back(std::move(value));
  }
  for (const auto& [key, arg] : expr.kwargs) {
    ASSIGN_OR_RETURN(Value value, Eval(*arg, frame));
    args.keyword.emplace_back(key, std::move(value));
  }
  return args;
}

absl::StatusOr<Value> Interpreter::EvalCall(const Expr& expr, const std::shared_ptr<Frame>& frame) {
  ASSIGN_OR_RETURN(Value callee, Eval(*expr.children[0], frame));
  ASSIGN_OR_RETURN(CallArgs args, EvalArgs(expr, frame));
  ASSIGN_OR_RETURN(Value result, CallValue(callee, std::move(args)));
  if (result.Depth() > Value::kMaxDepth) {
    return absl::ResourceExhaustedError("chat template value nests too deeply");
  }
  return result;
}

absl::StatusOr<Value> Interpreter::EvalFilter(const Expr& expr, const std::shared_ptr<Frame>& frame,
                                              const Value* block_input) {
  Value operand;
  if (expr.children[0] == nullptr) {
    operand = block_input != nullptr ? *block_input : Value();
  } else if (expr.children[0]->kind == Expr::Kind::kFilter && block_input != nullptr) {
    ASSIGN_OR_RETURN(operand, EvalFilter(*expr.children[0], frame, block_input));
  } else {
    ASSIGN_OR_RETURN(operand, Eval(*expr.children[0], frame));
  }
  ASSIGN_OR_RETURN(CallArgs args, EvalArgs(expr, frame));
  return ApplyFilter(*this, expr.name, operand, args);
}

absl::StatusOr<Value> Interpreter::EvalCompare(const Expr& expr,
                                               const std::shared_ptr<Frame>& frame) {
  ASSIGN_OR_RETURN(Value left, Eval(*expr.children[0], frame));
  for (size_t i = 0; i < expr.ops.size(); ++i) {
    ASSIGN_OR_RETURN(Value right, Eval(*expr.children[i + 1], frame));
    ASSIGN_OR_RETURN(bool holds, CompareOp(expr.ops[i], left, right));
    if (!holds) return Value::Bool(false);
    left = std::move(right);
  }
  return Value::Bool(true);
}

}  // namespace alignserve::jinja
