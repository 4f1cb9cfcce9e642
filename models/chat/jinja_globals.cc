// The global functions transformers' chat-template environment provides
// (declared in jinja_methods.h): range, namespace, dict, raise_exception,
// strftime_now.
#include <ctime>
#include <functional>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "models/chat/jinja_interpreter.h"
#include "models/chat/jinja_methods.h"
#include "models/chat/jinja_operators.h"

namespace alignserve::jinja {
namespace {

using Fn = std::function<absl::StatusOr<Value>(Interpreter&, const CallArgs&)>;

class Builtin : public Callable {
 public:
  Builtin(std::string name, Fn fn) : name_(std::move(name)), fn_(std::move(fn)) {}
  absl::StatusOr<Value> Call(Interpreter& interp, CallArgs args) const override {
    RETURN_IF_ERROR(interp.Charge(1));
    return fn_(interp, args);
  }
  std::string Name() const override { return name_; }

 private:
  std::string name_;
  Fn fn_;
};

// jinja2's sandbox refuses ranges longer than this.
constexpr int64_t kMaxRange = 100000;

absl::StatusOr<Value> Range(Interpreter& interp, const CallArgs& args) {
  int64_t bounds[3] = {0, 0, 1};
  const size_t n = args.positional.size();
  if (n < 1 || n > 3 || !args.keyword.empty()) {
    return absl::InvalidArgumentError("range expected 1 to 3 integer arguments");
  }
  for (size_t i = 0; i < n; ++i) {
    const Value& v = args.positional[i];
    if (!v.is_int() && !v.is_bool()) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", v.TypeName(), "' object cannot be interpreted as an integer"));
    }
  }
  if (n == 1) {
    bounds[1] = args.positional[0].AsIntegral();
  } else {
    for (size_t i = 0; i < n; ++i) bounds[i] = args.positional[i].AsIntegral();
  }
  const int64_t start = bounds[0], stop = bounds[1], step = bounds[2];
  if (step == 0) return absl::InvalidArgumentError("range() arg 3 must not be zero");
  int64_t count = 0;
  if (step > 0 && stop > start) count = (stop - start + step - 1) / step;
  if (step < 0 && stop < start) count = (start - stop - step - 1) / -step;
  if (count > kMaxRange) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Range too big. The sandbox blocks ranges larger than MAX_RANGE (", kMaxRange, ")."));
  }
  RETURN_IF_ERROR(interp.Charge(count));
  std::vector<Value> items;
  items.reserve(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) items.push_back(Value::Int(start + i * step));
  return Value::List(std::move(items));
}

// dict(mapping_or_pairs, **kwargs) as (key, value) entries.
absl::StatusOr<std::vector<std::pair<Value, Value>>> DictEntries(const CallArgs& args) {
  std::vector<std::pair<Value, Value>> entries;
  auto put = [&entries](Value key, Value value) {
    for (auto& entry : entries) {
      if (entry.first.Equals(key)) {
        entry.second = std::move(value);
        return;
      }
    }
    entries.emplace_back(std::move(key), std::move(value));
  };
  if (args.positional.size() > 1) {
    return absl::InvalidArgumentError("dict expected at most 1 argument");
  }
  if (!args.positional.empty()) {
    const Value& source = args.positional[0];
    if (source.is_dict()) {
      for (const auto& [key, value] : source.AsDict().entries) put(key, value);
    } else {
      ASSIGN_OR_RETURN(std::vector<Value> pairs, Iterate(source));
      for (const Value& pair : pairs) {
        ASSIGN_OR_RETURN(std::vector<Value> kv, Iterate(pair));
        if (kv.size() != 2) {
          return absl::InvalidArgumentError("dictionary update sequence element has wrong length");
        }
        put(kv[0], kv[1]);
      }
    }
  }
  for (const auto& [key, value] : args.keyword) put(Value::String(key), value);
  return entries;
}

absl::StatusOr<Value> MakeNamespace(Interpreter& interp, const CallArgs& args) {
  ASSIGN_OR_RETURN(auto entries, DictEntries(args));
  std::shared_ptr<NamespaceData> ns = interp.NewNamespace();
  for (auto& [key, value] : entries) {
    if (!key.is_string()) return absl::InvalidArgumentError("namespace attribute names must be str");
    if (!key.AsString().empty() && key.AsString()[0] == '_') {
      return absl::InvalidArgumentError(absl::StrCat(
          "Chat templates cannot store underscore-prefixed attributes on a namespace, but got ",
          key.Repr(), ". Please rename the attribute."));
    }
    ns->Set(key.AsString(), std::move(value));
  }
  return Value::Namespace(std::move(ns));
}

absl::StatusOr<Value> RaiseException(Interpreter&, const CallArgs& args) {
  const Value* message = args.Get(0, "message");
  absl::Status status =
      absl::InvalidArgumentError(message != nullptr ? message->Str() : "raise_exception()");
  status.SetPayload(kRaiseExceptionPayload, absl::Cord("1"));
  return status;
}

absl::StatusOr<Value> StrftimeNow(Interpreter&, const CallArgs& args) {
  const Value* format = args.Get(0, "format");
  if (format == nullptr || !format->is_string()) {
    return absl::InvalidArgumentError("strftime_now() expects a format string");
  }
  std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char buf[512];
  size_t n = std::strftime(buf, sizeof(buf), format->AsString().c_str(), &local);
  return Value::String(std::string(buf, n));
}

}  // namespace

std::vector<std::pair<std::string, Value>> BuiltinGlobals() {
  auto make = [](const char* name, Fn fn) {
    return std::make_pair(std::string(name), Value::Function(std::make_shared<Builtin>(name, std::move(fn))));
  };
  return {
      make("range", Range),
      make("namespace", MakeNamespace),
      make("dict",
           [](Interpreter&, const CallArgs& args) -> absl::StatusOr<Value> {
             ASSIGN_OR_RETURN(auto entries, DictEntries(args));
             return Value::Dict(std::move(entries));
           }),
      make("raise_exception", RaiseException),
      make("strftime_now", StrftimeNow),
  };
}

}  // namespace alignserve::jinja
