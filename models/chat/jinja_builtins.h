// The filters and tests of jinja2 that chat templates use, plus
// transformers' own tojson (json.dumps with ensure_ascii=False, optional
// indent, separators and sort_keys).
//
// Thread safety: pure functions over Values; they charge the calling
// interpreter's budget for what they build.
#ifndef ALIGNSERVE_MODELS_CHAT_JINJA_BUILTINS_H_
#define ALIGNSERVE_MODELS_CHAT_JINJA_BUILTINS_H_

#include <string>

#include "absl/status/statusor.h"
#include "models/chat/jinja_value.h"

namespace alignserve::jinja {

class Interpreter;

bool IsKnownFilter(const std::string& name);
bool IsKnownTest(const std::string& name);

absl::StatusOr<Value> ApplyFilter(Interpreter& interp, const std::string& name,
                                  const Value& operand, const CallArgs& args);
absl::StatusOr<bool> ApplyTest(Interpreter& interp, const std::string& name, const Value& operand,
                               const CallArgs& args);

// json.dumps(value, ensure_ascii=False, indent=indent (<0: None),
// separators=None, sort_keys=sort_keys).
absl::StatusOr<std::string> ToJson(const Value& value, int indent, bool sort_keys);

}  // namespace alignserve::jinja

#endif  // ALIGNSERVE_MODELS_CHAT_JINJA_BUILTINS_H_
