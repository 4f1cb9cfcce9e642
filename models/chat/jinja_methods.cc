#include "models/chat/jinja_methods.h"

#include <algorithm>
#include <ctime>
#include <optional>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "models/chat/jinja_interpreter.h"
#include "models/chat/jinja_operators.h"
#include "models/chat/jinja_strings.h"

namespace alignserve::jinja {
namespace {

const std::set<std::string>& StringMethods() {
  static const auto* kNames = new std::set<std::string>{
      "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "startswith", "endswith",
      "upper", "lower", "replace", "title", "capitalize", "format", "join", "find", "rfind",
      "count", "isdigit", "isalpha", "isalnum", "isspace", "islower", "isupper"};
  return *kNames;
}

// Every attribute a Python dict has: they shadow keys of the same name in
// `d.name` lookups, as in jinja2.
const std::set<std::string>& DictAttributes() {
  static const auto* kNames = new std::set<std::string>{
      "get", "items", "keys", "values", "pop", "popitem", "setdefault", "update", "clear", "copy",
      "fromkeys"};
  return *kNames;
}

const std::set<std::string>& ListAttributes() {
  static const auto* kNames = new std::set<std::string>{
      "append", "extend", "insert", "pop", "remove", "reverse", "sort", "clear", "copy", "count",
      "index"};
  return *kNames;
}

// A method looked up on a value, called later: `message.get`, `s.strip`.
class BoundMethod : public Callable {
 public:
  BoundMethod(Value self, std::string name) : self_(std::move(self)), name_(std::move(name)) {}
  absl::StatusOr<Value> Call(Interpreter& interp, CallArgs args) const override;
  std::string Name() const override { return self_.TypeName() + "." + name_; }

 private:
  absl::StatusOr<Value> CallStringMethod(Interpreter& interp, const CallArgs& args) const;
  absl::StatusOr<Value> CallDictMethod(const CallArgs& args) const;

  Value self_;
  std::string name_;
};

absl::StatusOr<std::optional<std::string>> OptionalString(const CallArgs& args, size_t i,
                                                          const char* name) {
  const Value* v = args.Get(i, name);
  if (v == nullptr || v->is_none()) return std::optional<std::string>();
  if (!v->is_string()) return absl::InvalidArgumentError(absl::StrCat(name, " must be str or None"));
  return std::optional<std::string>(v->AsString());
}

int64_t OptionalInt(const CallArgs& args, size_t i, const char* name, int64_t fallback) {
  const Value* v = args.Get(i, name);
  if (v == nullptr || !(v->is_int() || v->is_bool())) return fallback;
  return v->AsIntegral();
}

Value StringList(const std::vector<std::string>& parts) {
  std::vector<Value> items;
  items.reserve(parts.size());
  for (const auto& p : parts) items.push_back(Value::String(p));
  return Value::List(std::move(items));
}

absl::StatusOr<bool> AffixMatch(const std::string& s, const Value& affix, bool prefix) {
  std::vector<Value> options;
  if (affix.is_list() && affix.AsList().is_tuple) {
    options = affix.AsList().items;
  } else {
    options.push_back(affix);
  }
  for (const Value& option : options) {
    if (!option.is_string()) {
      return absl::InvalidArgumentError("startswith/endswith first arg must be str or a tuple of str");
    }
    const std::string& a = option.AsString();
    if (a.size() > s.size()) continue;
    if (prefix ? s.compare(0, a.size(), a) == 0 : s.compare(s.size() - a.size(), a.size(), a) == 0) {
      return true;
    }
  }
  return false;
}

// str.format with {}, {0}, {name} fields and {{ }} escapes; no format specs.
absl::StatusOr<Value> PyFormat(const std::string& fmt, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    char c = fmt[i];
    if (c == '}' ) {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') ++i;
      out.push_back('}');
      continue;
    }
    if (c != '{') {
      out.push_back(c);
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out.push_back('{');
      ++i;
      continue;
    }
    size_t close = fmt.find('}', i);
    if (close == std::string::npos) return absl::InvalidArgumentError("Single '{' encountered in format string");
    std::string field = fmt.substr(i + 1, close - i - 1);
    if (field.find_first_of(":!") != std::string::npos) {
      return absl::InvalidArgumentError("format specs in str.format are not supported");
    }
    const Value* v = nullptr;
    if (field.empty()) {
      v = auto_index < args.positional.size() ? &args.positional[auto_index] : nullptr;
      ++auto_index;
    } else if (std::all_of(field.begin(), field.end(), ::isdigit)) {
      size_t k = std::stoul(field);
      v = k < args.positional.size() ? &args.positional[k] : nullptr;
    } else {
      v = args.Keyword(field);
    }
    if (v == nullptr) return absl::InvalidArgumentError("str.format: missing argument " + field);
    out += v->Str();
    i = close;
  }
  return Value::String(std::move(out));
}

template <typename Pred>
Value AllCodePoints(const std::string& s, Pred pred) {
  std::vector<char32_t> cps = DecodeUtf8(s);
  return Value::Bool(!cps.empty() && std::all_of(cps.begin(), cps.end(), pred));
}

absl::StatusOr<Value> BoundMethod::CallStringMethod(Interpreter& interp,
                                                    const CallArgs& args) const {
  const std::string& s = self_.AsString();
  const std::string& m = name_;
  if (m == "strip" || m == "lstrip" || m == "rstrip") {
    ASSIGN_OR_RETURN(auto chars, OptionalString(args, 0, "chars"));
    return Value::String(PyStrip(s, chars, m != "rstrip", m != "lstrip"));
  }
  if (m == "split" || m == "rsplit") {
    ASSIGN_OR_RETURN(auto sep, OptionalString(args, 0, "sep"));
    if (sep && sep->empty()) return absl::InvalidArgumentError("empty separator");
    int64_t maxsplit = OptionalInt(args, 1, "maxsplit", -1);
    RETURN_IF_ERROR(interp.ChargeSize(s.size()));
    return StringList(m == "split" ? PySplit(s, sep, maxsplit) : PyRSplit(s, sep, maxsplit));
  }
  if (m == "splitlines") return StringList(PySplitLines(s));
  if (m == "startswith" || m == "endswith") {
    const Value* affix = args.Get(0, "prefix");
    if (affix == nullptr) return absl::InvalidArgumentError(m + "() takes at least 1 argument");
    ASSIGN_OR_RETURN(bool match, AffixMatch(s, *affix, m == "startswith"));
    return Value::Bool(match);
  }
  if (m == "upper") return Value::String(PyUpper(s));
  if (m == "lower") return Value::String(PyLower(s));
  if (m == "title") return Value::String(PyTitle(s));
  if (m == "capitalize") return Value::String(PyCapitalize(s));
  if (m == "replace") {
    const Value* old_v = args.Get(0, "old");
    const Value* new_v = args.Get(1, "new");
    if (old_v == nullptr || new_v == nullptr || !old_v->is_string() || !new_v->is_string()) {
      return absl::InvalidArgumentError("replace() arguments must be str");
    }
    std::string out = PyReplace(s, old_v->AsString(), new_v->AsString(), OptionalInt(args, 2, "count", -1));
    RETURN_IF_ERROR(interp.ChargeSize(out.size()));
    return Value::String(std::move(out));
  }
  if (m == "format") {
    ASSIGN_OR_RETURN(Value out, PyFormat(s, args));
    RETURN_IF_ERROR(interp.ChargeSize(out.AsString().size()));
    return out;
  }
  if (m == "join") {
    const Value* seq = args.Get(0, "iterable");
    if (seq == nullptr) return absl::InvalidArgumentError("join() takes exactly one argument");
    ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(*seq));
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
      if (!items[i].is_string()) {
        return absl::InvalidArgumentError(absl::StrCat("sequence item ", i, ": expected str instance, ",
                                                       items[i].TypeName(), " found"));
      }
      if (i) out += s;
      out += items[i].AsString();
      RETURN_IF_ERROR(interp.ChargeSize(out.size()));
    }
    return Value::String(std::move(out));
  }
  if (m == "find" || m == "rfind" || m == "count") {
    const Value* sub = args.Get(0, "sub");
    if (sub == nullptr || !sub->is_string()) return absl::InvalidArgumentError(m + "() argument must be str");
    const std::string& needle = sub->AsString();
    if (m == "count") {
      if (needle.empty()) return Value::Int(static_cast<int64_t>(CodePointLength(s)) + 1);
      int64_t n = 0;
      for (size_t at = s.find(needle); at != std::string::npos; at = s.find(needle, at + needle.size())) ++n;
      return Value::Int(n);
    }
    size_t at = m == "find" ? s.find(needle) : s.rfind(needle);
    if (at == std::string::npos) return Value::Int(-1);
    return Value::Int(static_cast<int64_t>(CodePointLength(std::string_view(s).substr(0, at))));
  }
  if (m == "isdigit") return AllCodePoints(s, [](char32_t c) { return c >= '0' && c <= '9'; });
  if (m == "isalpha") {
    return AllCodePoints(s, [](char32_t c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; });
  }
  if (m == "isalnum") {
    return AllCodePoints(s, [](char32_t c) {
      return ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (c >= '0' && c <= '9');
    });
  }
  if (m == "isspace") return AllCodePoints(s, IsPythonSpace);
  if (m == "islower") return Value::Bool(PyLower(s) == s && PyUpper(s) != s);
  if (m == "isupper") return Value::Bool(PyUpper(s) == s && PyLower(s) != s);
  return absl::InvalidArgumentError("unsupported str method " + m);
}

absl::StatusOr<Value> BoundMethod::CallDictMethod(const CallArgs& args) const {
  const DictData& dict = self_.AsDict();
  if (name_ == "get") {
    const Value* key = args.Get(0, "key");
    if (key == nullptr) return absl::InvalidArgumentError("get expected at least 1 argument, got 0");
    const Value* found = dict.Find(*key);
    if (found != nullptr) return *found;
    const Value* fallback = args.Get(1, "default");
    return fallback != nullptr ? *fallback : Value::None();
  }
  std::vector<Value> out;
  out.reserve(dict.entries.size());
  for (const auto& [key, value] : dict.entries) {
    if (name_ == "keys") {
      out.push_back(key);
    } else if (name_ == "values") {
      out.push_back(value);
    } else if (name_ == "items") {
      out.push_back(Value::List({key, value}, /*is_tuple=*/true));
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("access to attribute '", name_, "' of 'dict' object is unsafe."));
    }
  }
  return Value::List(std::move(out));
}

absl::StatusOr<Value> BoundMethod::Call(Interpreter& interp, CallArgs args) const {
  RETURN_IF_ERROR(interp.Charge(1));
  if (self_.is_string()) return CallStringMethod(interp, args);
  if (self_.is_dict()) return CallDictMethod(args);
  if (self_.is_list() && (name_ == "count" || name_ == "index")) {
    const Value* x = args.Get(0, "value");
    if (x == nullptr) return absl::InvalidArgumentError(name_ + "() takes exactly one argument");
    const auto& items = self_.AsList().items;
    int64_t n = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      if (!items[i].Equals(*x)) continue;
      if (name_ == "index") return Value::Int(static_cast<int64_t>(i));
      ++n;
    }
    if (name_ == "index") return absl::InvalidArgumentError("value is not in list");
    return Value::Int(n);
  }
  return absl::InvalidArgumentError(absl::StrCat("access to attribute '", name_, "' of '",
                                                 self_.TypeName(), "' object is unsafe."));
}

Value NoAttribute(const Value& obj, const std::string& name) {
  return Value::Undefined(absl::StrCat("'", obj.TypeName(), " object' has no attribute '", name, "'"));
}

// Python-style index into a sequence of `size` items; nullopt if out of range.
std::optional<size_t> NormalizeIndex(int64_t index, size_t size) {
  if (index < 0) index += static_cast<int64_t>(size);
  if (index < 0 || index >= static_cast<int64_t>(size)) return std::nullopt;
  return static_cast<size_t>(index);
}

}  // namespace

absl::StatusOr<Value> GetAttr(const Value& obj, const std::string& name) {
  if (obj.is_undefined()) return UndefinedError(obj);
  if (!name.empty() && name[0] == '_') return NoAttribute(obj, name);
  switch (obj.kind()) {
    case Value::Kind::kString:
      if (StringMethods().count(name)) {
        return Value::Function(std::make_shared<BoundMethod>(obj, name));
      }
      return NoAttribute(obj, name);
    case Value::Kind::kDict: {
      if (DictAttributes().count(name)) {
        return Value::Function(std::make_shared<BoundMethod>(obj, name));
      }
      const Value* found = obj.AsDict().Find(name);
      return found != nullptr ? *found : NoAttribute(obj, name);
    }
    case Value::Kind::kList:
      if (ListAttributes().count(name)) {
        return Value::Function(std::make_shared<BoundMethod>(obj, name));
      }
      return NoAttribute(obj, name);
    case Value::Kind::kNamespace: {
      const Value* found = obj.AsNamespace().Find(name);
      return found != nullptr ? *found : NoAttribute(obj, name);
    }
    default: return NoAttribute(obj, name);
  }
}

absl::StatusOr<Value> GetItem(const Value& obj, const Value& key) {
  if (obj.is_undefined()) return UndefinedError(obj);
  switch (obj.kind()) {
    case Value::Kind::kDict: {
      const Value* found = obj.AsDict().Find(key);
      if (found != nullptr) return *found;
      break;
    }
    case Value::Kind::kList:
      if (key.is_int() || key.is_bool()) {
        const auto& items = obj.AsList().items;
        auto index = NormalizeIndex(key.AsIntegral(), items.size());
        if (index) return items[*index];
        return Value::Undefined(absl::StrCat(obj.TypeName(), " index out of range"));
      }
      break;
    case Value::Kind::kString:
      if (key.is_int() || key.is_bool()) {
        std::vector<char32_t> cps = DecodeUtf8(obj.AsString());
        auto index = NormalizeIndex(key.AsIntegral(), cps.size());
        if (!index) return Value::Undefined("string index out of range");
        std::string out;
        AppendUtf8(cps[*index], &out);
        return Value::String(std::move(out));
      }
      break;
    default: break;
  }
  if (key.is_string()) {
    // jinja2 falls back to the attribute: d['items'] is the method when no
    // such key exists, ns['x'] is the namespace attribute.
    if (obj.is_dict() && !DictAttributes().count(key.AsString())) {
      return NoAttribute(obj, key.AsString());
    }
    return GetAttr(obj, key.AsString());
  }
  return Value::Undefined(absl::StrCat("'", obj.TypeName(), " object' has no item ", key.Repr()));
}

absl::StatusOr<Value> SliceValue(Interpreter& interp, const Value& obj, const Value& start,
                                 const Value& stop, const Value& step) {
  if (obj.is_undefined()) return UndefinedError(obj);
  for (const Value* bound : {&start, &stop, &step}) {
    if (!bound->is_none() && !bound->is_int() && !bound->is_bool()) {
      return absl::InvalidArgumentError(
          "slice indices must be integers or None or have an __index__ method");
    }
  }
  int64_t st = step.is_none() ? 1 : step.AsIntegral();
  if (st == 0) return absl::InvalidArgumentError("slice step cannot be zero");
  std::vector<char32_t> cps;
  size_t n = 0;
  if (obj.is_string()) {
    cps = DecodeUtf8(obj.AsString());
    n = cps.size();
  } else if (obj.is_list()) {
    n = obj.AsList().items.size();
  } else {
    return Value::Undefined("object is not sliceable");
  }
  const int64_t len = static_cast<int64_t>(n);
  auto clamp = [&](const Value& v, int64_t fallback) {
    if (v.is_none()) return fallback;
    int64_t i = v.AsIntegral();
    if (i < 0) i += len;
    if (st > 0) return std::clamp<int64_t>(i, 0, len);
    return std::clamp<int64_t>(i, -1, len - 1);
  };
  int64_t b = clamp(start, st > 0 ? 0 : len - 1);
  int64_t e = clamp(stop, st > 0 ? len : -1);
  std::vector<size_t> picks;
  for (int64_t i = b; st > 0 ? i < e : i > e; i += st) picks.push_back(static_cast<size_t>(i));
  RETURN_IF_ERROR(interp.Charge(static_cast<int64_t>(picks.size())));
  if (obj.is_string()) {
    std::string out;
    for (size_t i : picks) AppendUtf8(cps[i], &out);
    return Value::String(std::move(out));
  }
  std::vector<Value> out;
  out.reserve(picks.size());
  for (size_t i : picks) out.push_back(obj.AsList().items[i]);
  return Value::List(std::move(out), obj.AsList().is_tuple);
}

}  // namespace alignserve::jinja
