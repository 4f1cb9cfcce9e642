// ToJson (declared in jinja_builtins.h): Python's json.dumps as transformers'
// tojson filter calls it: ensure_ascii=False, key order kept, separators
// (", ", ": ") without indent and (",", ": ") with it.
#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "models/chat/jinja_builtins.h"
#include "models/chat/jinja_strings.h"

namespace alignserve::jinja {
namespace {

struct JsonStyle {
  int indent = -1;  // < 0: single line
  bool sort_keys = false;
};

absl::StatusOr<std::string> KeyString(const Value& key) {
  switch (key.kind()) {
    case Value::Kind::kString: return key.AsString();
    case Value::Kind::kBool: return std::string(key.AsBool() ? "true" : "false");
    case Value::Kind::kNone: return std::string("null");
    case Value::Kind::kInt: return std::to_string(key.AsInt());
    case Value::Kind::kFloat: return FormatPythonFloat(key.AsDouble());
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "keys must be str, int, float, bool or None, not ", key.TypeName()));
  }
}

std::string FloatJson(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v < 0 ? "-Infinity" : "Infinity";
  return FormatPythonFloat(v);
}

absl::Status Dump(const Value& v, const JsonStyle& style, int level, std::string* out) {
  const std::string newline =
      style.indent < 0 ? "" : "\n" + std::string(static_cast<size_t>(style.indent) * (level + 1), ' ');
  const std::string closing =
      style.indent < 0 ? "" : "\n" + std::string(static_cast<size_t>(style.indent) * level, ' ');
  const char* item_sep = style.indent < 0 ? ", " : ",";
  switch (v.kind()) {
    case Value::Kind::kNone: *out += "null"; return absl::OkStatus();
    case Value::Kind::kBool: *out += v.AsBool() ? "true" : "false"; return absl::OkStatus();
    case Value::Kind::kInt: *out += std::to_string(v.AsInt()); return absl::OkStatus();
    case Value::Kind::kFloat: *out += FloatJson(v.AsDouble()); return absl::OkStatus();
    case Value::Kind::kString: *out += JsonQuote(v.AsString()); return absl::OkStatus();
    case Value::Kind::kList: {
      const auto& items = v.AsList().items;
      if (items.empty()) {
        *out += "[]";
        return absl::OkStatus();
      }
      *out += "[";
      for (size_t i = 0; i < items.size(); ++i) {
        *out += i ? item_sep : "";
        *out += newline;
        RETURN_IF_ERROR(Dump(items[i], style, level + 1, out));
      }
      *out += closing + "]";
      return absl::OkStatus();
    }
    case Value::Kind::kDict: {
      const auto& entries = v.AsDict().entries;
      if (entries.empty()) {
        *out += "{}";
        return absl::OkStatus();
      }
      std::vector<std::pair<std::string, const Value*>> fields;
      for (const auto& [key, value] : entries) {
        ASSIGN_OR_RETURN(std::string name, KeyString(key));
        fields.emplace_back(std::move(name), &value);
      }
      if (style.sort_keys) {
        std::stable_sort(fields.begin(), fields.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
      }
      *out += "{";
      for (size_t i = 0; i < fields.size(); ++i) {
        *out += i ? item_sep : "";
        *out += newline;
        *out += JsonQuote(fields[i].first);
        *out += ": ";
        RETURN_IF_ERROR(Dump(*fields[i].second, style, level + 1, out));
      }
      *out += closing + "}";
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("Object of type ", v.TypeName(), " is not JSON serializable"));
  }
}

}  // namespace

absl::StatusOr<std::string> ToJson(const Value& value, int indent, bool sort_keys) {
  std::string out;
  JsonStyle style{indent, sort_keys};
  RETURN_IF_ERROR(Dump(value, style, 0, &out));
  return out;
}

}  // namespace alignserve::jinja
