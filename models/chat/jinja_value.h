// Value: the dynamic value of the Jinja-subset interpreter, modelled on the
// Python objects jinja2 sees when transformers renders a chat template
// (None, bool, int, float, str, list/tuple, dict, jinja2's Undefined and
// Namespace, and callables such as macros and globals).
//
// Thread safety: strings, lists and dicts are immutable once built (jinja2's
// ImmutableSandboxedEnvironment forbids mutating them too), so Values that
// share them may be read from many threads. A Namespace is mutable and lives
// inside one render; it must not be shared across threads.
#ifndef ALIGNSERVE_MODELS_CHAT_JINJA_VALUE_H_
#define ALIGNSERVE_MODELS_CHAT_JINJA_VALUE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace alignserve::jinja {

class Value;
class Interpreter;

// Arguments of a call to a macro, global function, filter or method.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;

  // The keyword argument `name`, or nullptr.
  const Value* Keyword(const std::string& name) const;
  // Positional argument `index`, else keyword `name`, else nullptr.
  const Value* Get(size_t index, const std::string& name) const;
};

// A macro, `caller`, or a global such as range() or namespace().
class Callable {
 public:
  virtual ~Callable() = default;
  virtual absl::StatusOr<Value> Call(Interpreter& interp, CallArgs args) const = 0;
  virtual std::string Name() const = 0;
};

struct ListData;
struct DictData;
struct NamespaceData;

class Value {
 public:
  enum class Kind : uint8_t {
    kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kNamespace, kCallable
  };

  Value() = default;  // undefined
  static Value Undefined(std::string hint = "");
  static Value None();
  static Value Bool(bool b);
  static Value Int(int64_t i);
  static Value Float(double f);
  static Value String(std::string s);
  static Value List(std::vector<Value> items, bool is_tuple = false);
  static Value Dict(std::vector<std::pair<Value, Value>> entries);
  static Value Namespace(std::shared_ptr<NamespaceData> ns);
  static Value Function(std::shared_ptr<const Callable> fn);

  // Converts parsed JSON input (messages, tools, ...). Objects keep their key
  // order, as Python dicts do. Fails when nesting exceeds kMaxDepth.
  static absl::StatusOr<Value> FromJson(const nlohmann::ordered_json& json);

  Kind kind() const { return static_cast<Kind>(data_.index()); }
  bool is_undefined() const { return kind() == Kind::kUndefined; }
  bool is_none() const { return kind() == Kind::kNone; }
  bool is_bool() const { return kind() == Kind::kBool; }
  bool is_int() const { return kind() == Kind::kInt; }
  bool is_float() const { return kind() == Kind::kFloat; }
  // Python's numbers.Number: bool counts, as in jinja2's `number` test.
  bool is_number() const { return is_bool() || is_int() || is_float(); }
  bool is_string() const { return kind() == Kind::kString; }
  bool is_list() const { return kind() == Kind::kList; }
  bool is_dict() const { return kind() == Kind::kDict; }
  bool is_namespace() const { return kind() == Kind::kNamespace; }
  bool is_callable() const { return kind() == Kind::kCallable; }

  bool AsBool() const { return std::get<bool>(data_); }
  int64_t AsInt() const { return std::get<int64_t>(data_); }
  // Int, bool or float as a double.
  double AsDouble() const;
  // Int or bool as an integer (Python's bool is an int).
  int64_t AsIntegral() const;
  const std::string& AsString() const { return *std::get<StrPtr>(data_); }
  const ListData& AsList() const { return *std::get<ListPtr>(data_); }
  const DictData& AsDict() const { return *std::get<DictPtr>(data_); }
  NamespaceData& AsNamespace() const { return *std::get<NsPtr>(data_); }
  const Callable& AsCallable() const { return *std::get<FnPtr>(data_); }
  // For undefined values: what was looked up, for error messages.
  const std::string& UndefinedHint() const { return std::get<UndefinedData>(data_).hint; }

  // Nesting depth of lists and dicts (a scalar is 0). Bounded by kMaxDepth
  // when built through the interpreter, so recursive walks cannot overflow.
  int Depth() const;

  // Python truthiness.
  bool Truthy() const;
  // Python's str(): what {{ value }} prints. Undefined prints as "".
  std::string Str() const;
  // Python's repr(), used for items inside lists and dicts.
  std::string Repr() const;
  // Python ==, deep for lists and dicts; 1 == 1.0 == True.
  bool Equals(const Value& other) const;
  // Python's type name, for error messages ("str", "list", ...).
  std::string TypeName() const;

  static constexpr int kMaxDepth = 500;

 private:
  struct UndefinedData { std::string hint; };
  struct NoneData {};
  using StrPtr = std::shared_ptr<const std::string>;
  using ListPtr = std::shared_ptr<const ListData>;
  using DictPtr = std::shared_ptr<const DictData>;
  using NsPtr = std::shared_ptr<NamespaceData>;
  using FnPtr = std::shared_ptr<const Callable>;
  // Alternative order matches Kind.
  std::variant<UndefinedData, NoneData, bool, int64_t, double, StrPtr, ListPtr, DictPtr, NsPtr,
               FnPtr>
      data_;
};

struct ListData {
  std::vector<Value> items;
  bool is_tuple = false;  // prints as (a, b)
  int depth = 1;
};

// An insertion-ordered dict; keys are compared with Python ==. Lookup is
// linear: chat-template dicts are small (message fields, tool schemas).
struct DictData {
  std::vector<std::pair<Value, Value>> entries;
  int depth = 1;

  const Value* Find(const Value& key) const;
  const Value* Find(const std::string& key) const;
};

// jinja2's Namespace: the one mutable object, written by {% set ns.x = ... %}.
struct NamespaceData {
  std::vector<std::pair<std::string, Value>> attrs;

  const Value* Find(const std::string& name) const;
  void Set(const std::string& name, Value value);
};

// Python float repr: shortest round-trip digits, "1.0", "1e-05", "1e+16".
std::string FormatPythonFloat(double value);

}  // namespace alignserve::jinja

#endif  // ALIGNSERVE_MODELS_CHAT_JINJA_VALUE_H_
