#include "models/chat/jinja_interpreter.h"

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "models/chat/jinja_builtins.h"
#include "models/chat/jinja_methods.h"
#include "models/chat/jinja_operators.h"

namespace alignserve::jinja {
namespace {

// A {% macro %}: renders its body in a scope below the one it was defined in.
class Macro : public Callable {
 public:
  Macro(const Node* node, std::weak_ptr<Frame> scope) : node_(node), scope_(std::move(scope)) {}
  absl::StatusOr<Value> Call(Interpreter& interp, CallArgs args) const override {
    std::shared_ptr<Frame> scope = scope_.lock();
    return interp.CallMacro(*node_, scope ? scope : interp.root(), std::move(args));
  }
  std::string Name() const override { return node_->name; }

 private:
  const Node* node_;
  std::weak_ptr<Frame> scope_;
};

// `caller` inside a macro invoked by {% call %}: renders the call block body.
class Caller : public Callable {
 public:
  Caller(const Node* node, std::weak_ptr<Frame> scope) : node_(node), scope_(std::move(scope)) {}
  absl::StatusOr<Value> Call(Interpreter& interp, CallArgs args) const override {
    std::shared_ptr<Frame> scope = scope_.lock();
    return interp.CallCaller(*node_, scope ? scope : interp.root(), std::move(args));
  }
  std::string Name() const override { return "caller"; }

 private:
  const Node* node_;
  std::weak_ptr<Frame> scope_;
};

Value LoopInfo(const std::vector<Value>& items, size_t i) {
  const int64_t n = static_cast<int64_t>(items.size());
  const int64_t k = static_cast<int64_t>(i);
  std::vector<std::pair<Value, Value>> entries = {
      {Value::String("index"), Value::Int(k + 1)},
      {Value::String("index0"), Value::Int(k)},
      {Value::String("revindex"), Value::Int(n - k)},
      {Value::String("revindex0"), Value::Int(n - k - 1)},
      {Value::String("first"), Value::Bool(k == 0)},
      {Value::String("last"), Value::Bool(k == n - 1)},
      {Value::String("length"), Value::Int(n)},
      {Value::String("depth"), Value::Int(1)},
      {Value::String("depth0"), Value::Int(0)},
  };
  if (i > 0) entries.emplace_back(Value::String("previtem"), items[i - 1]);
  if (i + 1 < items.size()) entries.emplace_back(Value::String("nextitem"), items[i + 1]);
  return Value::Dict(std::move(entries));
}

}  // namespace

const Value* Frame::Find(const std::string& name) const {
  for (const Frame* f = this; f != nullptr; f = f->parent.get()) {
    for (const auto& var : f->vars) {
      if (var.first == name) return &var.second;
    }
  }
  return nullptr;
}

void Frame::Set(const std::string& name, Value value) {
  for (auto& var : vars) {
    if (var.first == name) {
      var.second = std::move(value);
      return;
    }
  }
  vars.emplace_back(name, std::move(value));
}

Interpreter::~Interpreter() {
  // Namespaces may hold themselves (ns.x = ns); clear them to break cycles.
  for (auto& ns : namespaces_) ns->attrs.clear();
  if (root_) root_->vars.clear();
}

absl::StatusOr<std::string> Interpreter::Render(
    const Body& body, std::vector<std::pair<std::string, Value>> globals) {
  root_ = std::make_shared<Frame>();
  root_->vars = std::move(globals);
  std::string out;
  Flow flow = Flow::kNormal;
  RETURN_IF_ERROR(ExecBody(body, root_, &out, &flow));
  return out;
}

absl::Status Interpreter::Charge(int64_t steps) {
  steps_ += steps;
  if (steps_ > limits_.max_steps) {
    return absl::ResourceExhaustedError(
        absl::StrCat("chat template exceeded max_steps (", limits_.max_steps, ")"));
  }
  // Reading the clock costs ~20 ns; every 64 steps keeps it out of the profile.
  if ((steps_ & 63) < steps && std::chrono::steady_clock::now() > limits_.deadline) {
    return absl::DeadlineExceededError(
        absl::StrCat("chat template exceeded max_time (", limits_.max_time_ms, " ms)"));
  }
  return absl::OkStatus();
}

absl::Status Interpreter::ChargeSize(size_t size) {
  if (static_cast<int64_t>(size) > limits_.max_output_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "chat template exceeded max_output_bytes (", limits_.max_output_bytes, ") building a value"));
  }
  return Charge(1 + static_cast<int64_t>(size / 64));
}

std::shared_ptr<NamespaceData> Interpreter::NewNamespace() {
  namespaces_.push_back(std::make_shared<NamespaceData>());
  return namespaces_.back();
}

absl::Status Interpreter::Append(std::string* out, const std::string& text) {
  if (static_cast<int64_t>(out->size() + text.size()) > limits_.max_output_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("chat template exceeded max_output_bytes (", limits_.max_output_bytes, ")"));
  }
  out->append(text);
  return Charge(static_cast<int64_t>(text.size() / 256));
}

absl::Status Interpreter::ExecBody(const Body& body, const std::shared_ptr<Frame>& frame,
                                   std::string* out, Flow* flow) {
  for (const NodePtr& node : body) {
    RETURN_IF_ERROR(Exec(*node, frame, out, flow));
    if (*flow != Flow::kNormal) return absl::OkStatus();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Interpreter::RenderBody(const Body& body,
                                                    const std::shared_ptr<Frame>& frame) {
  std::string out;
  Flow flow = Flow::kNormal;
  RETURN_IF_ERROR(ExecBody(body, frame, &out, &flow));
  return out;
}

absl::Status Interpreter::Exec(const Node& node, const std::shared_ptr<Frame>& frame,
                               std::string* out, Flow* flow) {
  RETURN_IF_ERROR(Charge(1));
  switch (node.kind) {
    case Node::Kind::kText: return Append(out, node.text);
    case Node::Kind::kOutput: {
      ASSIGN_OR_RETURN(Value value, Eval(*node.expr, frame));
      return Append(out, value.Str());
    }
    case Node::Kind::kIf:
      for (size_t i = 0; i < node.conditions.size(); ++i) {
        ASSIGN_OR_RETURN(Value cond, Eval(*node.conditions[i], frame));
        if (cond.Truthy()) return ExecBody(node.bodies[i], frame, out, flow);
      }
      return ExecBody(node.else_body, frame, out, flow);
    case Node::Kind::kFor: return ExecFor(node, frame, out);
    case Node::Kind::kSet: {
      ASSIGN_OR_RETURN(Value value, Eval(*node.expr, frame));
      return ExecSet(node, frame, std::move(value));
    }
    case Node::Kind::kSetBlock: {
      ASSIGN_OR_RETURN(std::string text, RenderBody(node.bodies[0], frame));
      Value value = Value::String(std::move(text));
      if (node.filter) {
        ASSIGN_OR_RETURN(value, EvalFilter(*node.filter, frame, &value));
      }
      return ExecSet(node, frame, std::move(value));
    }
    case Node::Kind::kMacro:
      frame->Set(node.name, Value::Function(std::make_shared<Macro>(&node, frame)));
      return absl::OkStatus();
    case Node::Kind::kCallBlock: return ExecCallBlock(node, frame, out);
    case Node::Kind::kFilterBlock: {
      ASSIGN_OR_RETURN(std::string text, RenderBody(node.bodies[0], frame));
      Value input = Value::String(std::move(text));
      ASSIGN_OR_RETURN(Value value, EvalFilter(*node.filter, frame, &input));
      return Append(out, value.Str());
    }
    case Node::Kind::kWith: {
      auto scope = std::make_shared<Frame>();
      scope->parent = frame;
      for (const auto& [name, expr] : node.assignments) {
        ASSIGN_OR_RETURN(Value value, Eval(*expr, frame));
        scope->Set(name, std::move(value));
      }
      return ExecBody(node.bodies[0], scope, out, flow);
    }
    case Node::Kind::kBreak: *flow = Flow::kBreak; return absl::OkStatus();
    case Node::Kind::kContinue: *flow = Flow::kContinue; return absl::OkStatus();
    case Node::Kind::kScope: return ExecBody(node.bodies[0], frame, out, flow);
  }
  return absl::InternalError("unknown statement");
}

absl::Status Interpreter::Bind(const Target& target, const Value& value, Frame* frame) {
  if (!target.unpack) {
    frame->Set(target.names[0], value);
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(std::vector<Value> parts, Iterate(value));
  if (parts.size() != target.names.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        parts.size() < target.names.size() ? "not enough" : "too many",
        " values to unpack (expected ", target.names.size(), ", got ", parts.size(), ")"));
  }
  for (size_t i = 0; i < parts.size(); ++i) frame->Set(target.names[i], parts[i]);
  return absl::OkStatus();
}

absl::Status Interpreter::ExecSet(const Node& node, const std::shared_ptr<Frame>& frame,
                                  Value value) {
  if (value.Depth() > Value::kMaxDepth) {
    return absl::ResourceExhaustedError("chat template value nests too deeply");
  }
  if (node.target.ns_attr.empty()) return Bind(node.target, value, frame.get());
  const Value* ns = frame->Find(node.target.names[0]);
  if (ns == nullptr || !ns->is_namespace()) {
    return absl::InvalidArgumentError("cannot assign attribute on non-namespace object");
  }
  ns->AsNamespace().Set(node.target.ns_attr, std::move(value));
  return absl::OkStatus();
}

absl::Status Interpreter::ExecFor(const Node& node, const std::shared_ptr<Frame>& frame,
                                  std::string* out) {
  ASSIGN_OR_RETURN(Value iterable, Eval(*node.expr, frame));
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(iterable));
  RETURN_IF_ERROR(Charge(static_cast<int64_t>(items.size())));
  if (node.filter) {
    std::vector<Value> kept;
    for (Value& item : items) {
      auto scope = std::make_shared<Frame>();
      scope->parent = frame;
      RETURN_IF_ERROR(Bind(node.target, item, scope.get()));
      ASSIGN_OR_RETURN(Value keep, Eval(*node.filter, scope));
      if (keep.Truthy()) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    Flow flow = Flow::kNormal;
    return ExecBody(node.else_body, frame, out, &flow);
  }
  for (size_t i = 0; i < items.size(); ++i) {
    auto scope = std::make_shared<Frame>();
    scope->parent = frame;
    RETURN_IF_ERROR(Bind(node.target, items[i], scope.get()));
    scope->Set("loop", LoopInfo(items, i));
    Flow flow = Flow::kNormal;
    RETURN_IF_ERROR(ExecBody(node.bodies[0], scope, out, &flow));
    if (flow == Flow::kBreak) break;
  }
  return absl::OkStatus();
}

absl::Status Interpreter::ExecCallBlock(const Node& node, const std::shared_ptr<Frame>& frame,
                                        std::string* out) {
  const Expr& call = *node.expr;
  ASSIGN_OR_RETURN(Value callee, Eval(*call.children[0], frame));
  ASSIGN_OR_RETURN(CallArgs args, EvalArgs(call, frame));
  args.keyword.emplace_back("caller", Value::Function(std::make_shared<Caller>(&node, frame)));
  ASSIGN_OR_RETURN(Value result, CallValue(callee, std::move(args)));
  return Append(out, result.Str());
}

absl::StatusOr<Value> Interpreter::CallValue(const Value& fn, CallArgs args) {
  if (fn.is_undefined()) return UndefinedError(fn);
  if (!fn.is_callable()) {
    return absl::InvalidArgumentError(absl::StrCat("'", fn.TypeName(), "' object is not callable"));
  }
  if (++depth_ > limits_.max_depth) {
    --depth_;
    return absl::ResourceExhaustedError(
        absl::StrCat("chat template exceeded max_depth (", limits_.max_depth, ")"));
  }
  absl::StatusOr<Value> result = fn.AsCallable().Call(*this, std::move(args));
  --depth_;
  return result;
}

absl::StatusOr<Value> Interpreter::CallMacro(const Node& macro, std::shared_ptr<Frame> scope,
                                             CallArgs args) {
  auto frame = std::make_shared<Frame>();
  frame->parent = std::move(scope);
  const auto& params = macro.params;
  for (size_t i = 0; i < params.size(); ++i) {
    const Value* given = i < args.positional.size() ? &args.positional[i] : args.Keyword(params[i].name);
    if (given != nullptr) {
      frame->Set(params[i].name, *given);
    } else if (params[i].default_value) {
      ASSIGN_OR_RETURN(Value def, Eval(*params[i].default_value, frame));
      frame->Set(params[i].name, std::move(def));
    } else {
      frame->Set(params[i].name, Value::Undefined(params[i].name));
    }
  }
  std::vector<Value> varargs;
  for (size_t i = params.size(); i < args.positional.size(); ++i) varargs.push_back(args.positional[i]);
  std::vector<std::pair<Value, Value>> kwargs;
  for (auto& [key, value] : args.keyword) {
    if (key == "caller") {
      frame->Set("caller", value);
      continue;
    }
    bool is_param = false;
    for (const auto& p : params) is_param |= p.name == key;
    if (!is_param) kwargs.emplace_back(Value::String(key), value);
  }
  frame->Set("varargs", Value::List(std::move(varargs), true));
  frame->Set("kwargs", Value::Dict(std::move(kwargs)));
  ASSIGN_OR_RETURN(std::string text, RenderBody(macro.bodies[0], frame));
  return Value::String(std::move(text));
}

absl::StatusOr<Value> Interpreter::CallCaller(const Node& call_block, std::shared_ptr<Frame> scope,
                                              CallArgs args) {
  auto frame = std::make_shared<Frame>();
  frame->parent = std::move(scope);
  for (size_t i = 0; i < call_block.params.size(); ++i) {
    const MacroParam& param = call_block.params[i];
    const Value* given = i < args.positional.size() ? &args.positional[i] : args.Keyword(param.name);
    if (given != nullptr) {
      frame->Set(param.name, *given);
    } else if (param.default_value) {
      ASSIGN_OR_RETURN(Value def, Eval(*param.default_value, frame));
      frame->Set(param.name, std::move(def));
    } else {
      frame->Set(param.name, Value::Undefined(param.name));
    }
  }
  ASSIGN_OR_RETURN(std::string text, RenderBody(call_block.bodies[0], frame));
  return Value::String(std::move(text));
}

}  // namespace alignserve::jinja
