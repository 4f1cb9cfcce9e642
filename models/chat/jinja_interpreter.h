// Interpreter: evaluates a parsed template (jinja_ast.h) for one render,
// with jinja2's scoping (for-loop bodies, macros and {% with %} get their own
// scope; {% if %} does not), undefined-value rules, and hard limits on steps,
// output size, call depth and wall-clock time so hostile templates end with
// an error instead of hanging or exhausting memory.
//
// Thread safety: one Interpreter per render, used by one thread. The tree it
// walks is shared and only read.
#ifndef ALIGNSERVE_MODELS_CHAT_JINJA_INTERPRETER_H_
#define ALIGNSERVE_MODELS_CHAT_JINJA_INTERPRETER_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "models/chat/jinja_ast.h"
#include "models/chat/jinja_value.h"

namespace alignserve::jinja {

struct InterpreterLimits {
  int64_t max_steps = 1'000'000;          // statements + expressions + items built
  int64_t max_output_bytes = 4 << 20;     // also bounds any one string
  int max_depth = 64;                     // macro / caller call depth
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  int64_t max_time_ms = 0;                // only for the error message
};

// A variable scope. Frames are shared so that macros can outlive the loop
// iteration that defined them; a macro holds its defining frame weakly.
struct Frame {
  std::shared_ptr<Frame> parent;
  std::vector<std::pair<std::string, Value>> vars;

  const Value* Find(const std::string& name) const;
  void Set(const std::string& name, Value value);
};

class Interpreter {
 public:
  explicit Interpreter(InterpreterLimits limits) : limits_(limits) {}
  ~Interpreter();

  // Renders `body` with `globals` bound in the root scope.
  absl::StatusOr<std::string> Render(const Body& body,
                                     std::vector<std::pair<std::string, Value>> globals);

  // Counts `steps` against max_steps and checks the deadline.
  absl::Status Charge(int64_t steps);
  // Fails when a string or list of `size` bytes/items would pass the output
  // limit; also charges steps in proportion, since building it costs time.
  absl::Status ChargeSize(size_t size);
  // A namespace that lives until this render ends.
  std::shared_ptr<NamespaceData> NewNamespace();
  // Calls a macro, caller, global or bound method.
  absl::StatusOr<Value> CallValue(const Value& fn, CallArgs args);
  // Used by Macro::Call.
  absl::StatusOr<Value> CallMacro(const Node& macro, std::shared_ptr<Frame> scope, CallArgs args);
  // Used by the `caller` of a {% call %} block.
  absl::StatusOr<Value> CallCaller(const Node& call_block, std::shared_ptr<Frame> scope,
                                   CallArgs args);
  std::shared_ptr<Frame> root() const { return root_; }

 private:
  enum class Flow { kNormal, kBreak, kContinue };

  absl::Status ExecBody(const Body& body, const std::shared_ptr<Frame>& frame, std::string* out,
                        Flow* flow);
  absl::Status Exec(const Node& node, const std::shared_ptr<Frame>& frame, std::string* out,
                    Flow* flow);
  absl::Status ExecFor(const Node& node, const std::shared_ptr<Frame>& frame, std::string* out);
  absl::Status ExecSet(const Node& node, const std::shared_ptr<Frame>& frame, Value value);
  absl::Status ExecCallBlock(const Node& node, const std::shared_ptr<Frame>& frame,
                             std::string* out);
  absl::Status Bind(const Target& target, const Value& value, Frame* frame);
  absl::Status Append(std::string* out, const std::string& text);
  absl::StatusOr<std::string> RenderBody(const Body& body, const std::shared_ptr<Frame>& frame);

  absl::StatusOr<Value> Eval(const Expr& expr, const std::shared_ptr<Frame>& frame);
  absl::StatusOr<Value> EvalCompound(const Expr& expr, const std::shared_ptr<Frame>& frame);
  absl::StatusOr<Value> EvalCall(const Expr& expr, const std::shared_ptr<Frame>& frame);
  absl::StatusOr<Value> EvalFilter(const Expr& expr, const std::shared_ptr<Frame>& frame,
                                   const Value* block_input);
  absl::StatusOr<Value> EvalCompare(const Expr& expr, const std::shared_ptr<Frame>& frame);
  absl::StatusOr<Value> EvalSubscript(const Expr& expr, const std::shared_ptr<Frame>& frame);
  absl::StatusOr<CallArgs> EvalArgs(const Expr& expr, const std::shared_ptr<Frame>& frame);
  absl::Status ErrorAt(const Expr& expr, const absl::Status& status) const;

  InterpreterLimits limits_;
  int64_t steps_ = 0;
  int depth_ = 0;
  std::shared_ptr<Frame> root_;
  std::vector<std::shared_ptr<NamespaceData>> namespaces_;
};

}  // namespace alignserve::jinja

#endif  // ALIGNSERVE_MODELS_CHAT_JINJA_INTERPRETER_H_
