#include "models/chat/jinja_value.h"

#include <charconv>
#include <cmath>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "models/chat/jinja_strings.h"

namespace alignserve::jinja {

const Value* CallArgs::Keyword(const std::string& name) const {
  for (const auto& [key, value] : keyword) {
    if (key == name) return &value;
  }
  return nullptr;
}

const Value* CallArgs::Get(size_t index, const std::string& name) const {
  if (index < positional.size()) return &positional[index];
  return Keyword(name);
}

Value Value::Undefined(std::string hint) {
  Value v;
  v.data_ = UndefinedData{std::move(hint)};
  return v;
}
Value Value::None() {
  Value v;
  v.data_ = NoneData{};
  return v;
}
Value Value::Bool(bool b) {
  Value v;
  v.data_ = b;
  return v;
}
Value Value::Int(int64_t i) {
  Value v;
  v.data_ = i;
  return v;
}
Value Value::Float(double f) {
  Value v;
  v.data_ = f;
  return v;
}
Value Value::String(std::string s) {
  Value v;
  v.data_ = std::make_shared<const std::string>(std::move(s));
  return v;
}
Value Value::List(std::vector<Value> items, bool is_tuple) {
  auto data = std::make_shared<ListData>();
  int depth = 0;
  for (const Value& item : items) depth = std::max(depth, item.Depth());
  data->items = std::move(items);
  data->is_tuple = is_tuple;
  data->depth = depth + 1;
  Value v;
  v.data_ = ListPtr(std::move(data));
  return v;
}
Value Value::Dict(std::vector<std::pair<Value, Value>> entries) {
  auto data = std::make_shared<DictData>();
  int depth = 0;
  for (const auto& [key, value] : entries) depth = std::max(depth, value.Depth());
  data->entries = std::move(entries);
  data->depth = depth + 1;
  Value v;
  v.data_ = DictPtr(std::move(data));
  return v;
}
Value Value::Namespace(std::shared_ptr<NamespaceData> ns) {
  Value v;
  v.data_ = std::move(ns);
  return v;
}
Value Value::Function(std::shared_ptr<const Callable> fn) {
  Value v;
  v.data_ = std::move(fn);
  return v;
}

namespace {

absl::StatusOr<Value> FromJsonAt(const nlohmann::ordered_json& json, int depth) {
  if (depth > Value::kMaxDepth) {
    return absl::InvalidArgumentError("chat template input nests too deeply");
  }
  using T = nlohmann::ordered_json::value_t;
  switch (json.type()) {
    case T::null: return Value::None();
    case T::boolean: return Value::Bool(json.get<bool>());
    case T::number_integer: return Value::Int(json.get<int64_t>());
    case T::number_unsigned: {
      uint64_t u = json.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return Value::Float(static_cast<double>(u));
      return Value::Int(static_cast<int64_t>(u));
    }
    case T::number_float: return Value::Float(json.get<double>());
    case T::string: return Value::String(json.get<std::string>());
    case T::array: {
      std::vector<Value> items;
      items.reserve(json.size());
      for (const auto& item : json) {
        auto v = FromJsonAt(item, depth + 1);
        if (!v.ok()) return v.status();
        items.push_back(*std::move(v));
      }
      return Value::List(std::move(items));
    }
    case T::object: {
      std::vector<std::pair<Value, Value>> entries;
      entries.reserve(json.size());
      for (const auto& [key, item] : json.items()) {
        auto v = FromJsonAt(item, depth + 1);
        if (!v.ok()) return v.status();
        entries.emplace_back(Value::String(key), *std::move(v));
      }
      return Value::Dict(std::move(entries));
    }
    default:
      return absl::InvalidArgumentError("unsupported JSON value in chat template input");
  }
}

}  // namespace

absl::StatusOr<Value> Value::FromJson(const nlohmann::ordered_json& json) {
  return FromJsonAt(json, 0);
}

double Value::AsDouble() const {
  if (is_float()) return std::get<double>(data_);
  return static_cast<double>(AsIntegral());
}

int64_t Value::AsIntegral() const {
  if (is_bool()) return AsBool() ? 1 : 0;
  return AsInt();
}

int Value::Depth() const {
  if (is_list()) return AsList().depth;
  if (is_dict()) return AsDict().depth;
  return 0;
}

bool Value::Truthy() const {
  switch (kind()) {
    case Kind::kUndefined:
    case Kind::kNone: return false;
    case Kind::kBool: return AsBool();
    case Kind::kInt: return AsInt() != 0;
    case Kind::kFloat: return AsDouble() != 0.0;
    case Kind::kString: return !AsString().empty();
    case Kind::kList: return !AsList().items.empty();
    case Kind::kDict: return !AsDict().entries.empty();
    case Kind::kNamespace:
    case Kind::kCallable: return true;
  }
  return false;
}

std::string Value::Str() const {
  switch (kind()) {
    case Kind::kUndefined: return "";
    case Kind::kString: return AsString();
    default: return Repr();
  }
}

std::string Value::Repr() const {
  switch (kind()) {
    case Kind::kUndefined: return "Undefined";
    case Kind::kNone: return "None";
    case Kind::kBool: return AsBool() ? "True" : "False";
    case Kind::kInt: return std::to_string(AsInt());
    case Kind::kFloat: return FormatPythonFloat(AsDouble());
    case Kind::kString: return PyReprString(AsString());
    case Kind::kList: {
      const ListData& list = AsList();
      std::string out = list.is_tuple ? "(" : "[";
      for (size_t i = 0; i < list.items.size(); ++i) {
        if (i) out += ", ";
        out += list.items[i].Repr();
      }
      if (list.is_tuple && list.items.size() == 1) out += ",";
      out += list.is_tuple ? ")" : "]";
      return out;
    }
    case Kind::kDict: {
      std::string out = "{";
      bool first = true;
      for (const auto& [key, value] : AsDict().entries) {
        if (!first) out += ", ";
        first = false;
        absl::StrAppend(&out, key.Repr(), ": ", value.Repr());
      }
      return out + "}";
    }
    case Kind::kNamespace: {
      // Attributes are listed one level deep: a namespace may hold itself.
      std::string out = "<Namespace {";
      bool first = true;
      for (const auto& [key, value] : AsNamespace().attrs) {
        if (!first) out += ", ";
        first = false;
        absl::StrAppend(&out, PyReprString(key), ": ",
                        value.is_namespace() ? "<Namespace {...}>" : value.Repr());
      }
      return out + "}>";
    }
    case Kind::kCallable: return "<function " + AsCallable().Name() + ">";
  }
  return "";
}

bool Value::Equals(const Value& other) const {
  if (is_number() && other.is_number()) {
    if (is_float() || other.is_float()) return AsDouble() == other.AsDouble();
    return AsIntegral() == other.AsIntegral();
  }
  if (kind() != other.kind()) return false;
  switch (kind()) {
    case Kind::kUndefined:
    case Kind::kNone: return true;
    case Kind::kString: return AsString() == other.AsString();
    case Kind::kList: {
      const ListData& a = AsList();
      const ListData& b = other.AsList();
      if (a.is_tuple != b.is_tuple || a.items.size() != b.items.size()) return false;
      for (size_t i = 0; i < a.items.size(); ++i) {
        if (!a.items[i].Equals(b.items[i])) return false;
      }
      return true;
    }
    case Kind::kDict: {
      const DictData& a = AsDict();
      const DictData& b = other.AsDict();
      if (a.entries.size() != b.entries.size()) return false;
      for (const auto& [key, value] : a.entries) {
        const Value* found = b.Find(key);
        if (found == nullptr || !found->Equals(value)) return false;
      }
      return true;
    }
    case Kind::kNamespace: return &AsNamespace() == &other.AsNamespace();
    case Kind::kCallable: return &AsCallable() == &other.AsCallable();
    default: return false;
  }
}

std::string Value::TypeName() const {
  switch (kind()) {
    case Kind::kUndefined: return "Undefined";
    case Kind::kNone: return "NoneType";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kString: return "str";
    case Kind::kList: return AsList().is_tuple ? "tuple" : "list";
    case Kind::kDict: return "dict";
    case Kind::kNamespace: return "Namespace";
    case Kind::kCallable: return "function";
  }
  return "object";
}

const Value* DictData::Find(const Value& key) const {
  for (const auto& entry : entries) {
    if (entry.first.Equals(key)) return &entry.second;
  }
  return nullptr;
}

const Value* DictData::Find(const std::string& key) const {
  for (const auto& entry : entries) {
    if (entry.first.is_string() && entry.first.AsString() == key) return &entry.second;
  }
  return nullptr;
}

const Value* NamespaceData::Find(const std::string& name) const {
  for (const auto& attr : attrs) {
    if (attr.first == name) return &attr.second;
  }
  return nullptr;
}

void NamespaceData::Set(const std::string& name, Value value) {
  for (auto& attr : attrs) {
    if (attr.first == name) {
      attr.second = std::move(value);
      return;
    }
  }
  attrs.emplace_back(name, std::move(value));
}

std::string FormatPythonFloat(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value < 0 ? "-inf" : "inf";
  if (value == 0) return std::signbit(value) ? "-0.0" : "0.0";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::scientific);
  std::string sci(buf, res.ptr);  // e.g. "-1.2345e+02"
  bool negative = sci[0] == '-';
  if (negative) sci.erase(0, 1);
  size_t e_pos = sci.find('e');
  int exp10 = std::atoi(sci.c_str() + e_pos + 1);
  std::string digits;
  for (size_t i = 0; i < e_pos; ++i) {
    if (sci[i] != '.') digits.push_back(sci[i]);
  }
  std::string out = negative ? "-" : "";
  // Python's repr switches to exponent form when decpt <= -4 or decpt > 16,
  // where decpt = exp10 + 1.
  if (exp10 < -4 || exp10 >= 16) {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char exp_buf[16];
    std::snprintf(exp_buf, sizeof(exp_buf), "e%c%02d", exp10 < 0 ? '-' : '+', std::abs(exp10));
    return out + exp_buf;
  }
  if (exp10 < 0) {
    return out + "0." + std::string(-exp10 - 1, '0') + digits;
  }
  size_t int_len = static_cast<size_t>(exp10) + 1;
  if (digits.size() <= int_len) {
    return out + digits + std::string(int_len - digits.size(), '0') + ".0";
  }
  return out + digits.substr(0, int_len) + "." + digits.substr(int_len);
}

}  // namespace alignserve::jinja
