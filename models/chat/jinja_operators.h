// Python operator semantics for the Jinja interpreter: arithmetic (+ - * /
// // % **), comparisons, membership, iteration and len(), with the errors
// jinja2 raises (TypeError, ZeroDivisionError, UndefinedError).
//
// Thread safety: pure functions, except that BinaryOp charges the
// interpreter's step budget for the strings and lists it builds.
#ifndef ALIGNSERVE_MODELS_CHAT_JINJA_OPERATORS_H_
#define ALIGNSERVE_MODELS_CHAT_JINJA_OPERATORS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "models/chat/jinja_value.h"

namespace alignserve::jinja {

class Interpreter;

// The error jinja2 raises when an undefined value is used.
absl::Status UndefinedError(const Value& undefined);

// op is one of + - * / // % **.
absl::StatusOr<Value> BinaryOp(Interpreter& interp, const std::string& op, const Value& a,
                               const Value& b);
// Unary minus (negative) or plus.
absl::StatusOr<Value> UnaryOp(const Value& v, bool negative);
// op is one of == != < <= > >= in notin.
absl::StatusOr<bool> CompareOp(const std::string& op, const Value& a, const Value& b);
// Python iteration: list items, dict keys, string code points; undefined is
// empty. Other values are a TypeError.
absl::StatusOr<std::vector<Value>> Iterate(const Value& v);
// Python len(); undefined has length 0.
absl::StatusOr<int64_t> Length(const Value& v);
// Python's a < b ordering for sort(); fails on mixed types.
absl::StatusOr<bool> LessThan(const Value& a, const Value& b);

}  // namespace alignserve::jinja

#endif  // ALIGNSERVE_MODELS_CHAT_JINJA_OPERATORS_H_
