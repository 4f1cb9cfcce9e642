#include "models/chat/chat_template.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "models/chat/jinja_ast.h"
#include "models/chat/jinja_builtins.h"
#include "models/chat/jinja_interpreter.h"
#include "models/chat/jinja_lexer.h"
#include "models/chat/jinja_methods.h"
#include "models/chat/jinja_parser.h"
#include "models/chat/jinja_value.h"

namespace alignserve {
namespace {

using jinja::Expr;
using jinja::Node;
using jinja::Value;

// jinja2 resolves filter and test names when it compiles a template and
// fails on unknown ones, except inside an {% if %} or an inline if (a "soft"
// frame), where it defers the error to the moment the filter runs. Loop,
// macro, call, filter and with bodies start a hard frame again.
absl::Status CheckNames(const Expr* expr, bool soft) {
  if (expr == nullptr) return absl::OkStatus();
  const bool is_filter = expr->kind == Expr::Kind::kFilter;
  if (!soft && ((is_filter && !jinja::IsKnownFilter(expr->name)) ||
                (expr->kind == Expr::Kind::kTest && !jinja::IsKnownTest(expr->name)))) {
    return absl::InvalidArgumentError(absl::StrCat("template error at line ", expr->line,
                                                   ", column ", expr->column, ": no ",
                                                   is_filter ? "filter" : "test", " named '",
                                                   expr->name, "'"));
  }
  soft = soft || expr->kind == Expr::Kind::kCondExpr;
  for (const auto& kid : expr->children) RETURN_IF_ERROR(CheckNames(kid.get(), soft));
  for (const auto& arg : expr->args) RETURN_IF_ERROR(CheckNames(arg.get(), soft));
  for (const auto& kwarg : expr->kwargs) RETURN_IF_ERROR(CheckNames(kwarg.second.get(), soft));
  return absl::OkStatus();
}

absl::Status CheckNames(const jinja::Body& body, bool soft) {
  for (const auto& node : body) {
    const bool is_if = node->kind == Node::Kind::kIf;
    const bool inner_soft = is_if ? true : node->kind == Node::Kind::kSetBlock ? soft : false;
    RETURN_IF_ERROR(CheckNames(node->expr.get(), soft));
    RETURN_IF_ERROR(CheckNames(node->filter.get(), inner_soft));
    for (const auto& cond : node->conditions) RETURN_IF_ERROR(CheckNames(cond.get(), true));
    for (const auto& param : node->params) RETURN_IF_ERROR(CheckNames(param.default_value.get(), false));
    for (const auto& assignment : node->assignments) RETURN_IF_ERROR(CheckNames(assignment.second.get(), soft));
    for (const auto& inner : node->bodies) RETURN_IF_ERROR(CheckNames(inner, inner_soft));
    RETURN_IF_ERROR(CheckNames(node->else_body, inner_soft));
  }
  return absl::OkStatus();
}

// transformers' _alias_reasoning_fields: a message's reasoning, under any of
// its names, is also offered as `thinking` (first) and `reasoning_content`.
Value AliasReasoningFields(const Value& message) {
  if (!message.is_dict()) return message;
  const jinja::DictData& dict = message.AsDict();
  const Value* reasoning = nullptr;
  for (const char* key : {"reasoning_content", "thinking", "reasoning"}) {
    const Value* v = dict.Find(std::string(key));
    if (v != nullptr && !v->is_none()) {
      reasoning = v;
      break;
    }
  }
  if (reasoning == nullptr) return message;
  std::vector<std::pair<Value, Value>> entries;
  if (dict.Find(std::string("thinking")) == nullptr) {
    entries.emplace_back(Value::String("thinking"), *reasoning);
  }
  bool has_reasoning_content = false;
  for (const auto& [key, value] : dict.entries) {
    bool is_rc = key.is_string() && key.AsString() == "reasoning_content";
    has_reasoning_content |= is_rc;
    entries.emplace_back(key, is_rc ? *reasoning : value);
  }
  if (!has_reasoning_content) entries.emplace_back(Value::String("reasoning_content"), *reasoning);
  return Value::Dict(std::move(entries));
}

absl::StatusOr<Value> ConvertMessages(const nlohmann::ordered_json& messages) {
  if (!messages.is_array()) return absl::InvalidArgumentError("messages must be a JSON array");
  ASSIGN_OR_RETURN(Value list, Value::FromJson(messages));
  std::vector<Value> out;
  for (const Value& message : list.AsList().items) {
    if (!message.is_dict()) return absl::InvalidArgumentError("each message must be a JSON object");
    out.push_back(AliasReasoningFields(message));
  }
  return Value::List(std::move(out));
}

}  // namespace

absl::StatusOr<ChatTemplate> ChatTemplate::Create(std::string source, ChatTemplateLimits limits) {
  if (limits.max_depth < 1 || limits.max_steps < 1 || limits.max_output_bytes < 1) {
    return absl::InvalidArgumentError("chat template limits must be positive");
  }
  ASSIGN_OR_RETURN(std::vector<jinja::Token> tokens, jinja::Tokenize(source));
  ASSIGN_OR_RETURN(jinja::Body body, jinja::Parse(tokens, 4 * limits.max_depth));
  RETURN_IF_ERROR(CheckNames(body, /*soft=*/false));
  ChatTemplate tmpl;
  tmpl.source_ = std::move(source);
  tmpl.limits_ = limits;
  tmpl.body_ = std::make_shared<const jinja::Body>(std::move(body));
  return tmpl;
}

absl::StatusOr<std::string> ChatTemplate::Render(const ChatTemplateInputs& inputs) const {
  if (!inputs.extra_context.is_object()) {
    return absl::InvalidArgumentError("extra_context must be a JSON object");
  }
  std::vector<std::pair<std::string, Value>> vars = jinja::BuiltinGlobals();
  auto set = [&vars](const std::string& name, Value value) {
    for (auto& var : vars) {
      if (var.first == name) {
        var.second = std::move(value);
        return;
      }
    }
    vars.emplace_back(name, std::move(value));
  };
  ASSIGN_OR_RETURN(Value messages, ConvertMessages(inputs.messages));
  set("messages", std::move(messages));
  set("tools", Value::None());
  set("documents", Value::None());
  set("add_generation_prompt", Value::Bool(inputs.add_generation_prompt));
  if (!inputs.bos_token.empty()) set("bos_token", Value::String(inputs.bos_token));
  if (!inputs.eos_token.empty()) set("eos_token", Value::String(inputs.eos_token));
  for (const auto& [key, json] : inputs.extra_context.items()) {
    if (key == "messages" || key == "add_generation_prompt") {
      return absl::InvalidArgumentError("extra_context may not set '" + key + "'");
    }
    ASSIGN_OR_RETURN(Value value, Value::FromJson(json));
    set(key, std::move(value));
  }
  jinja::InterpreterLimits limits;
  limits.max_steps = limits_.max_steps;
  limits.max_output_bytes = limits_.max_output_bytes;
  limits.max_depth = limits_.max_depth;
  limits.max_time_ms = limits_.max_time.count();
  limits.deadline = std::chrono::steady_clock::now() + limits_.max_time;
  jinja::Interpreter interpreter(limits);
  return interpreter.Render(*body_, std::move(vars));
}

}  // namespace alignserve
