// Filters (declared in jinja_builtins.h), following jinja2/filters.py.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "models/chat/jinja_builtins.h"
#include "models/chat/jinja_interpreter.h"
#include "models/chat/jinja_methods.h"
#include "models/chat/jinja_operators.h"
#include "models/chat/jinja_strings.h"

namespace alignserve::jinja {
namespace {

using FilterFn =
    std::function<absl::StatusOr<Value>(Interpreter&, const Value&, const CallArgs&)>;

bool ArgBool(const CallArgs& args, size_t i, const char* name, bool fallback) {
  const Value* v = args.Get(i, name);
  return v == nullptr ? fallback : v->Truthy();
}

// make_attrgetter: "a.b.0" walks items; each part uses subscript rules.
absl::StatusOr<Value> AttrPath(const Value& item, const std::string& path) {
  Value cur = item;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    Value key = Value::String(part);
    if (!part.empty() && std::all_of(part.begin(), part.end(), ::isdigit)) {
      key = Value::Int(std::atoll(part.c_str()));
    }
    ASSIGN_OR_RETURN(cur, GetItem(cur, key));
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

absl::StatusOr<Value> Attribute(const CallArgs& args, size_t i, const Value& item) {
  const Value* attr = args.Get(i, "attribute");
  if (attr == nullptr || attr->is_none()) return item;
  if (attr->is_int()) return GetItem(item, *attr);
  return AttrPath(item, attr->Str());
}

// select / reject / selectattr / rejectattr.
absl::StatusOr<Value> FilterItems(Interpreter& interp, const Value& seq, const CallArgs& args,
                                  bool by_attr, bool keep_if) {
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(seq));
  size_t next = 0;
  std::string attr;
  if (by_attr) {
    if (args.positional.empty()) return absl::InvalidArgumentError("missing attribute for selectattr");
    attr = args.positional[next++].Str();
  }
  std::optional<std::string> test;
  if (next < args.positional.size()) test = args.positional[next++].Str();
  CallArgs test_args;
  test_args.positional.assign(args.positional.begin() + next, args.positional.end());
  test_args.keyword = args.keyword;
  std::vector<Value> out;
  for (const Value& item : items) {
    RETURN_IF_ERROR(interp.Charge(1));
    Value subject = item;
    if (by_attr) {
      ASSIGN_OR_RETURN(subject, AttrPath(item, attr));
    }
    bool passed = subject.Truthy();
    if (test) {
      ASSIGN_OR_RETURN(passed, ApplyTest(interp, *test, subject, test_args));
    }
    if (passed == keep_if) out.push_back(item);
  }
  return Value::List(std::move(out));
}

absl::StatusOr<Value> Map(Interpreter& interp, const Value& seq, const CallArgs& args) {
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(seq));
  std::vector<Value> out;
  const Value* attr = args.Keyword("attribute");
  if (attr != nullptr) {
    const Value* fallback = args.Keyword("default");
    for (const Value& item : items) {
      ASSIGN_OR_RETURN(Value v, AttrPath(item, attr->Str()));
      out.push_back(v.is_undefined() && fallback != nullptr ? *fallback : v);
    }
    return Value::List(std::move(out));
  }
  if (args.positional.empty()) return absl::InvalidArgumentError("map requires a filter name or attribute=");
  std::string filter = args.positional[0].Str();
  CallArgs rest;
  rest.positional.assign(args.positional.begin() + 1, args.positional.end());
  rest.keyword = args.keyword;
  for (const Value& item : items) {
    ASSIGN_OR_RETURN(Value v, ApplyFilter(interp, filter, item, rest));
    out.push_back(std::move(v));
  }
  return Value::List(std::move(out));
}

// Key for sort / unique: the attribute, lower-cased unless case_sensitive.
absl::StatusOr<Value> SortKey(const Value& item, const CallArgs& args, bool case_sensitive) {
  ASSIGN_OR_RETURN(Value key, Attribute(args, 2, item));
  if (!case_sensitive && key.is_string()) return Value::String(PyLower(key.AsString()));
  return key;
}

absl::StatusOr<Value> Sort(Interpreter& interp, const Value& seq, const CallArgs& args) {
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(seq));
  RETURN_IF_ERROR(interp.Charge(static_cast<int64_t>(items.size()) * 8));
  bool reverse = ArgBool(args, 0, "reverse", false);
  bool case_sensitive = ArgBool(args, 1, "case_sensitive", false);
  std::vector<std::pair<Value, Value>> keyed;
  for (const Value& item : items) {
    ASSIGN_OR_RETURN(Value key, SortKey(item, args, case_sensitive));
    keyed.emplace_back(std::move(key), item);
  }
  absl::Status error;
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    auto less = reverse ? LessThan(b.first, a.first) : LessThan(a.first, b.first);
    if (!less.ok()) {
      error = less.status();
      return false;
    }
    return *less;
  });
  RETURN_IF_ERROR(error);
  std::vector<Value> out;
  for (auto& [key, item] : keyed) out.push_back(std::move(item));
  return Value::List(std::move(out));
}

absl::StatusOr<Value> Unique(Interpreter& interp, const Value& seq, const CallArgs& args) {
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(seq));
  RETURN_IF_ERROR(interp.Charge(static_cast<int64_t>(items.size())));
  bool case_sensitive = ArgBool(args, 0, "case_sensitive", false);
  CallArgs key_args;
  if (const Value* attr = args.Get(1, "attribute")) key_args.keyword.emplace_back("attribute", *attr);
  std::vector<Value> seen, out;
  for (const Value& item : items) {
    ASSIGN_OR_RETURN(Value key, SortKey(item, key_args, case_sensitive));
    bool dup = false;
    for (const Value& s : seen) dup = dup || s.Equals(key);
    if (dup) continue;
    seen.push_back(key);
    out.push_back(item);
  }
  return Value::List(std::move(out));
}

absl::StatusOr<Value> MinMax(const Value& seq, const CallArgs& args, bool want_max) {
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(seq));
  if (items.empty()) return Value::Undefined("No aggregated item, sequence was empty.");
  bool case_sensitive = ArgBool(args, 0, "case_sensitive", false);
  CallArgs key_args;
  if (const Value* attr = args.Get(1, "attribute")) key_args.keyword.emplace_back("attribute", *attr);
  size_t best = 0;
  ASSIGN_OR_RETURN(Value best_key, SortKey(items[0], key_args, case_sensitive));
  for (size_t i = 1; i < items.size(); ++i) {
    ASSIGN_OR_RETURN(Value key, SortKey(items[i], key_args, case_sensitive));
    ASSIGN_OR_RETURN(bool better, want_max ? LessThan(best_key, key) : LessThan(key, best_key));
    if (better) {
      best = i;
      best_key = key;
    }
  }
  return items[best];
}

absl::StatusOr<Value> Indent(Interpreter& interp, const Value& v, const CallArgs& args) {
  std::string indention = "    ";
  if (const Value* width = args.Get(0, "width")) {
    indention = width->is_string() ? width->AsString()
                                   : std::string(static_cast<size_t>(std::max<int64_t>(0, width->AsIntegral())), ' ');
  }
  bool first = ArgBool(args, 1, "first", false);
  bool blank = ArgBool(args, 2, "blank", false);
  std::vector<std::string> lines = PySplitLines(v.Str() + "\n");
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) {
      out += "\n";
      if (blank || !lines[i].empty()) out += indention;
    }
    out += lines[i];
  }
  if (first) out = indention + out;
  RETURN_IF_ERROR(interp.ChargeSize(out.size()));
  return Value::String(std::move(out));
}

absl::StatusOr<Value> ToInt(const Value& v, const CallArgs& args) {
  const Value* fallback = args.Get(0, "default");
  Value def = fallback != nullptr ? *fallback : Value::Int(0);
  if (v.is_int() || v.is_bool()) return Value::Int(v.AsIntegral());
  if (v.is_float()) {
    double d = v.AsDouble();
    if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return def;
    return Value::Int(static_cast<int64_t>(d));
  }
  if (!v.is_string()) return def;
  std::string s = PyStrip(v.AsString(), std::nullopt, true, true);
  s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
  int base = static_cast<int>(args.Get(1, "base") ? args.Get(1, "base")->AsIntegral() : 10);
  char* end = nullptr;
  errno = 0;
  long long i = s.empty() ? 0 : std::strtoll(s.c_str(), &end, base);
  if (!s.empty() && errno == 0 && *end == '\0') return Value::Int(i);
  double d = s.empty() ? 0 : std::strtod(s.c_str(), &end);
  if (!s.empty() && *end == '\0' && std::isfinite(d) && std::fabs(d) < 9.2e18) {
    return Value::Int(static_cast<int64_t>(d));
  }
  return def;
}

absl::StatusOr<Value> ToFloat(const Value& v, const CallArgs& args) {
  const Value* fallback = args.Get(0, "default");
  Value def = fallback != nullptr ? *fallback : Value::Float(0.0);
  if (v.is_number()) return Value::Float(v.AsDouble());
  if (!v.is_string()) return def;
  std::string s = PyStrip(v.AsString(), std::nullopt, true, true);
  char* end = nullptr;
  double d = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0') return def;
  return Value::Float(d);
}

absl::StatusOr<Value> Round(const Value& v, const CallArgs& args) {
  if (!v.is_number()) return absl::InvalidArgumentError("round() requires a number");
  int64_t precision = args.Get(0, "precision") ? args.Get(0, "precision")->AsIntegral() : 0;
  std::string method = args.Get(1, "method") ? args.Get(1, "method")->Str() : "common";
  if (method == "common" && !v.is_float()) return Value::Int(v.AsIntegral());
  double scale = std::pow(10.0, static_cast<double>(precision));
  double x = v.AsDouble() * scale;
  double r;
  if (method == "common") {
    r = std::nearbyint(x);  // Python's round(): half to even
  } else if (method == "floor") {
    r = std::floor(x);
  } else if (method == "ceil") {
    r = std::ceil(x);
  } else {
    return absl::InvalidArgumentError("method must be common, ceil or floor");
  }
  return Value::Float(r / scale);
}

absl::StatusOr<Value> ToJsonFilter(Interpreter& interp, const Value& v, const CallArgs& args) {
  int indent = -1;
  if (const Value* i = args.Get(0, "indent"); i != nullptr && !i->is_none()) {
    indent = static_cast<int>(std::clamp<int64_t>(i->AsIntegral(), 0, 64));
  }
  bool sort_keys = ArgBool(args, 3, "sort_keys", false);
  ASSIGN_OR_RETURN(std::string json, ToJson(v, indent, sort_keys));
  RETURN_IF_ERROR(interp.ChargeSize(json.size()));
  return Value::String(std::move(json));
}

absl::StatusOr<Value> Join(Interpreter& interp, const Value& v, const CallArgs& args) {
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  std::string sep = args.Get(0, "d") ? args.Get(0, "d")->Str() : "";
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    ASSIGN_OR_RETURN(Value item, Attribute(args, 1, items[i]));
    out += item.Str();
    RETURN_IF_ERROR(interp.ChargeSize(out.size()));
  }
  return Value::String(std::move(out));
}

absl::StatusOr<Value> FirstOrLast(const Value& v, bool last) {
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  if (items.empty()) return Value::Undefined("No first item, sequence was empty.");
  return last ? items.back() : items.front();
}

absl::StatusOr<Value> Reverse(const Value& v) {
  if (v.is_string()) {
    std::vector<char32_t> cps = DecodeUtf8(v.AsString());
    std::reverse(cps.begin(), cps.end());
    return Value::String(EncodeUtf8(cps));
  }
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  std::reverse(items.begin(), items.end());
  return Value::List(std::move(items));
}

absl::StatusOr<Value> Escape(const Value& v) {
  std::string out;
  for (char c : v.Str()) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return Value::String(std::move(out));
}

int64_t WordCount(const std::string& s) {
  // Python's \w+: letters, digits, underscore; non-ASCII letters count too.
  int64_t n = 0;
  bool in_word = false;
  for (char32_t c : DecodeUtf8(s)) {
    bool word = (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || c == '_' ||
                (c >= 0xAA && !IsPythonSpace(c) && c != 0xD7 && c != 0xF7 &&
                 !(c >= 0x2000 && c <= 0x206F) && !(c >= 0x3000 && c <= 0x303F));
    if (word && !in_word) ++n;
    in_word = word;
  }
  return n;
}

const std::map<std::string, FilterFn>& Filters() {
  static const auto* kFilters = new std::map<std::string, FilterFn>{
      {"trim", [](Interpreter&, const Value& v, const CallArgs& a) -> absl::StatusOr<Value> {
         const Value* chars = a.Get(0, "chars");
         std::optional<std::string> set;
         if (chars != nullptr && !chars->is_none()) set = chars->Str();
         return Value::String(PyStrip(v.Str(), set, true, true));
       }},
      {"length", [](Interpreter&, const Value& v, const CallArgs&) -> absl::StatusOr<Value> {
         ASSIGN_OR_RETURN(int64_t n, Length(v));
         return Value::Int(n);
       }},
      {"tojson", ToJsonFilter},
      {"upper", [](Interpreter&, const Value& v, const CallArgs&) -> absl::StatusOr<Value> {
         return Value::String(PyUpper(v.Str()));
       }},
      {"lower", [](Interpreter&, const Value& v, const CallArgs&) -> absl::StatusOr<Value> {
         return Value::String(PyLower(v.Str()));
       }},
      {"title", [](Interpreter&, const Value& v, const CallArgs&) -> absl::StatusOr<Value> {
         return Value::String(JinjaTitle(v.Str()));
       }},
      {"capitalize", [](Interpreter&, const Value& v, const CallArgs&) -> absl::StatusOr<Value> {
         return Value::String(PyCapitalize(v.Str()));
       }},
      {"default", [](Interpreter&, const Value& v, const CallArgs& a) -> absl::StatusOr<Value> {
         const Value* def = a.Get(0, "default_value");
         bool use = v.is_undefined() || (ArgBool(a, 1, "boolean", false) && !v.Truthy());
         if (!use) return v;
         return def != nullptr ? *def : Value::String("");
       }},
      {"first", [](Interpreter&, const Value& v, const CallArgs&) { return FirstOrLast(v, false); }},
      {"last", [](Interpreter&, const Value& v, const CallArgs&) { return FirstOrLast(v, true); }},
      {"join", Join},
      {"replace", [](Interpreter& interp, const Value& v, const CallArgs& a) -> absl::StatusOr<Value> {
         const Value* old_v = a.Get(0, "old");
         const Value* new_v = a.Get(1, "new");
         if (old_v == nullptr || new_v == nullptr) return absl::InvalidArgumentError("replace needs old and new");
         const Value* count = a.Get(2, "count");
         int64_t n = count != nullptr && !count->is_none() ? count->AsIntegral() : -1;
         std::string out = PyReplace(v.Str(), old_v->Str(), new_v->Str(), n);
         RETURN_IF_ERROR(interp.ChargeSize(out.size()));
         return Value::String(std::move(out));
       }},
      {"string", [](Interpreter&, const Value& v, const CallArgs&) -> absl::StatusOr<Value> {
         return Value::String(v.Str());
       }},
      {"int", [](Interpreter&, const Value& v, const CallArgs& a) { return ToInt(v, a); }},
      {"float", [](Interpreter&, const Value& v, const CallArgs& a) { return ToFloat(v, a); }},
      {"list", [](Interpreter&, const Value& v, const CallArgs&) -> absl::StatusOr<Value> {
         ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
         return Value::List(std::move(items));
       }},
      {"items", [](Interpreter&, const Value& v, const CallArgs&) -> absl::StatusOr<Value> {
         if (v.is_undefined()) return Value::List({});
         if (!v.is_dict()) return absl::InvalidArgumentError("Can only get item pairs from a mapping.");
         std::vector<Value> out;
         for (const auto& [key, value] : v.AsDict().entries) out.push_back(Value::List({key, value}, true));
         return Value::List(std::move(out));
       }},
      {"selectattr", [](Interpreter& i, const Value& v, const CallArgs& a) { return FilterItems(i, v, a, true, true); }},
      {"rejectattr", [](Interpreter& i, const Value& v, const CallArgs& a) { return FilterItems(i, v, a, true, false); }},
      {"select", [](Interpreter& i, const Value& v, const CallArgs& a) { return FilterItems(i, v, a, false, true); }},
      {"reject", [](Interpreter& i, const Value& v, const CallArgs& a) { return FilterItems(i, v, a, false, false); }},
      {"map", Map},
      {"indent", Indent},
      {"safe", [](Interpreter&, const Value& v, const CallArgs&) -> absl::StatusOr<Value> { return v; }},
      {"unique", Unique},
      {"reverse", [](Interpreter&, const Value& v, const CallArgs&) { return Reverse(v); }},
      {"sort", Sort},
      {"round", [](Interpreter&, const Value& v, const CallArgs& a) { return Round(v, a); }},
      {"abs", [](Interpreter&, const Value& v, const CallArgs&) -> absl::StatusOr<Value> {
         if (v.is_float()) return Value::Float(std::fabs(v.AsDouble()));
         if (v.is_int() || v.is_bool()) return UnaryOp(Value::Int(v.AsIntegral() < 0 ? v.AsIntegral() : -v.AsIntegral()), true);
         return absl::InvalidArgumentError(absl::StrCat("bad operand type for abs(): '", v.TypeName(), "'"));
       }},
      {"wordcount", [](Interpreter&, const Value& v, const CallArgs&) -> absl::StatusOr<Value> {
         return Value::Int(WordCount(v.Str()));
       }},
      {"escape", [](Interpreter&, const Value& v, const CallArgs&) { return Escape(v); }},
      {"min", [](Interpreter&, const Value& v, const CallArgs& a) { return MinMax(v, a, false); }},
      {"max", [](Interpreter&, const Value& v, const CallArgs& a) { return MinMax(v, a, true); }},
      {"sum", [](Interpreter& interp, const Value& v, const CallArgs& a) -> absl::StatusOr<Value> {
         ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
         Value total = a.Get(1, "start") ? *a.Get(1, "start") : Value::Int(0);
         for (const Value& item : items) {
           ASSIGN_OR_RETURN(Value x, Attribute(a, 0, item));
           ASSIGN_OR_RETURN(total, BinaryOp(interp, "+", total, x));
         }
         return total;
       }},
      {"attr", [](Interpreter&, const Value& v, const CallArgs& a) -> absl::StatusOr<Value> {
         const Value* name = a.Get(0, "name");
         if (name == nullptr) return absl::InvalidArgumentError("attr needs a name");
         return GetAttr(v, name->Str());
       }},
  };
  return *kFilters;
}

const std::string& Canonical(const std::string& name) {
  static const auto* kAliases = new std::map<std::string, std::string>{
      {"d", "default"}, {"count", "length"}, {"e", "escape"}};
  auto it = kAliases->find(name);
  return it == kAliases->end() ? name : it->second;
}

}  // namespace

bool IsKnownFilter(const std::string& name) { return Filters().count(Canonical(name)) > 0; }

absl::StatusOr<Value> ApplyFilter(Interpreter& interp, const std::string& name,
                                  const Value& operand, const CallArgs& args) {
  RETURN_IF_ERROR(interp.Charge(1));
  auto it = Filters().find(Canonical(name));
  if (it == Filters().end()) return absl::InvalidArgumentError("No filter named '" + name + "'.");
  return it->second(interp, operand, args);
}

}  // namespace alignserve::jinja
