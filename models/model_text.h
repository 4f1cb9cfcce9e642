// ModelText: the text side of a model: its tokenizer, its own chat template
// and the special tokens that end a turn. Read from GGUF metadata
// (tokenizer.ggml.*, tokenizer.chat_template) or from a Hugging Face folder
// (tokenizer.json or tokenizer.model, tokenizer_config.json,
// generation_config.json).
// Thread-safety: immutable after loading; Tokenizer and ChatTemplate are
// safe for concurrent const use (front-end threads tokenize and render).
#ifndef ALIGNSERVE_MODELS_MODEL_TEXT_H_
#define ALIGNSERVE_MODELS_MODEL_TEXT_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "models/chat/chat_template.h"
#include "models/tokenizer/tokenizer.h"

namespace alignserve {

class GgufFile;

struct ModelText {
  std::unique_ptr<Tokenizer> tokenizer;
  std::optional<ChatTemplate> chat_template;  // none: the model has no template
  std::string bos_token;                      // spelling, for the template ("" if none)
  std::string eos_token;
  std::vector<int32_t> stop_token_ids;  // EOS and end-of-turn tokens

  // The prompt of a chat: the template rendered with add_generation_prompt,
  // as transformers' apply_chat_template(tokenize=False) gives it.
  absl::StatusOr<std::string> RenderChat(const nlohmann::ordered_json& messages,
                                         bool add_generation_prompt = true) const;
  bool IsStopToken(int32_t id) const;
};

absl::StatusOr<ModelText> LoadModelTextFromGguf(const GgufFile& gguf);
absl::StatusOr<ModelText> LoadModelTextFromFolder(const std::string& dir);

}  // namespace alignserve

#endif  // ALIGNSERVE_MODELS_MODEL_TEXT_H_
