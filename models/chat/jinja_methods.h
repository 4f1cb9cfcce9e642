// Attribute access, subscripts and slices with jinja2's sandboxed lookup
// rules (obj.x tries the Python attribute, then the item; obj['x'] the
// reverse; misses give undefined), the str/dict methods chat templates call
// (strip, split, startswith, get, items, ...) and the globals transformers
// provides (range, namespace, dict, raise_exception, strftime_now).
//
// Thread safety: pure functions; globals are immutable callables.
#ifndef ALIGNSERVE_MODELS_CHAT_JINJA_METHODS_H_
#define ALIGNSERVE_MODELS_CHAT_JINJA_METHODS_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "models/chat/jinja_value.h"

namespace alignserve::jinja {

class Interpreter;

// obj.name
absl::StatusOr<Value> GetAttr(const Value& obj, const std::string& name);
// obj[key]
absl::StatusOr<Value> GetItem(const Value& obj, const Value& key);
// obj[start:stop:step]; each bound may be none/undefined.
absl::StatusOr<Value> SliceValue(Interpreter& interp, const Value& obj, const Value& start,
                                 const Value& stop, const Value& step);

// The error message raise_exception() produces carries this payload key, so
// callers can tell a template's own rejection from other failures.
inline constexpr char kRaiseExceptionPayload[] = "alignserve.jinja.raise_exception";

std::vector<std::pair<std::string, Value>> BuiltinGlobals();

}  // namespace alignserve::jinja

#endif  // ALIGNSERVE_MODELS_CHAT_JINJA_METHODS_H_
