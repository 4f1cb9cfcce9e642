// ChatTemplate: renders a model's own Jinja chat template the way Hugging
// Face transformers' apply_chat_template does (jinja2 ImmutableSandboxed
// environment, trim_blocks, lstrip_blocks, loop controls, raise_exception,
// strftime_now, transformers' tojson), with a Jinja-subset interpreter and
// hard limits so that hostile templates fail fast instead of hanging.
//
// Thread safety: immutable after Create; Render is const and may run on many
// threads at once (each render has its own interpreter state).
#ifndef ALIGNSERVE_MODELS_CHAT_CHAT_TEMPLATE_H_
#define ALIGNSERVE_MODELS_CHAT_CHAT_TEMPLATE_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace alignserve {

namespace jinja {
struct Node;
}  // namespace jinja

struct ChatTemplateLimits {
  int64_t max_steps = 1'000'000;      // statements + expressions + items built
  int64_t max_output_bytes = 4 << 20;  // the output, and any one value built
  int max_depth = 64;                  // macro call depth; 4x bounds parse nesting
  std::chrono::milliseconds max_time{1000};
};

// JSON inputs are ordered_json so that dict key order survives into the
// template (tojson of a tool schema prints keys in the caller's order, as
// Python dicts do). A nlohmann::json converts implicitly, with its keys
// sorted.
struct ChatTemplateInputs {
  // [{role, content, ...}], content a string or [{"type": "text", "text": ...}].
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  bool add_generation_prompt = true;
  // Empty means the tokenizer has no such token: the variable is undefined.
  std::string bos_token, eos_token;
  // More template variables: tools, documents, date_string, enable_thinking...
  // `tools` and `documents` are none when absent, as in transformers.
  nlohmann::ordered_json extra_context = nlohmann::ordered_json::object();
};

class ChatTemplate {
 public:
  // Parse errors are InvalidArgument naming line and column; unknown filters
  // and tests are rejected here where jinja2's compiler rejects them (outside
  // {% if %} blocks and inline ifs).
  static absl::StatusOr<ChatTemplate> Create(std::string source, ChatTemplateLimits limits = {});

  // raise_exception(msg) gives InvalidArgument with exactly msg; other
  // template errors are InvalidArgument naming line and column; exceeding a
  // limit gives ResourceExhausted (steps, output, depth) or DeadlineExceeded
  // (time), naming the limit.
  absl::StatusOr<std::string> Render(const ChatTemplateInputs& inputs) const;

  const std::string& source() const { return source_; }

 private:
  ChatTemplate() = default;

  std::string source_;
  ChatTemplateLimits limits_;
  // The parsed template; shared by copies, read-only.
  std::shared_ptr<const std::vector<std::unique_ptr<jinja::Node>>> body_;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_MODELS_CHAT_CHAT_TEMPLATE_H_
