#include "models/model_text.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "models/formats/bounded_json.h"
#include "models/formats/gguf_file.h"

namespace alignserve {
namespace {

absl::StatusOr<BpeVocab> BpeVocabFromGguf(const GgufFile& gguf) {
  BpeVocab v;
  ASSIGN_OR_RETURN(std::vector<std::string_view> tokens,
                   gguf.GetStringArray("tokenizer.ggml.tokens"));
  v.tokens.assign(tokens.begin(), tokens.end());
  if (gguf.Has("tokenizer.ggml.token_type")) {
    ASSIGN_OR_RETURN(std::vector<int64_t> types, gguf.GetIntArray("tokenizer.ggml.token_type"));
    v.token_types.assign(types.begin(), types.end());
  }
  ASSIGN_OR_RETURN(std::vector<std::string_view> merges,
                   gguf.GetStringArray("tokenizer.ggml.merges"));
  v.merges.assign(merges.begin(), merges.end());
  ASSIGN_OR_RETURN(std::string_view pre, gguf.GetStringOr("tokenizer.ggml.pre", "default"));
  v.pre = std::string(pre);
  ASSIGN_OR_RETURN(int64_t bos, gguf.GetIntOr("tokenizer.ggml.bos_token_id", -1));
  ASSIGN_OR_RETURN(int64_t eos, gguf.GetIntOr("tokenizer.ggml.eos_token_id", -1));
  ASSIGN_OR_RETURN(int64_t unk, gguf.GetIntOr("tokenizer.ggml.unknown_token_id", -1));
  ASSIGN_OR_RETURN(v.add_bos, gguf.GetBoolOr("tokenizer.ggml.add_bos_token", false));
  const int64_t n = static_cast<int64_t>(v.tokens.size());
  for (int64_t id : {bos, eos, unk}) {
    if (id < -1 || id >= n) {
      return absl::InvalidArgumentError(absl::StrCat(gguf.path(), ": special token id ", id,
                                                     " is outside the vocabulary of ", n));
    }
  }
  v.bos_id = static_cast<int32_t>(bos);
  v.eos_id = static_cast<int32_t>(eos);
  v.unk_id = static_cast<int32_t>(unk);
  return v;
}

// tokenizer_config.json spells special tokens as strings or {"content": ...}.
std::string TokenSpelling(const nlohmann::json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    auto content = it->find("content");
    if (content != it->end() && content->is_string()) return content->get<std::string>();
  }
  return "";
}

// End-of-turn tokens that instruct models emit besides EOS.
void AddTurnEndTokens(ModelText& text) {
  for (const char* piece : {"<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>",
                            "<｜end▁of▁sentence｜>", "</s>"}) {
    if (std::optional<int32_t> id = text.tokenizer->TokenId(piece)) {
      if (text.tokenizer->IsSpecial(*id)) text.stop_token_ids.push_back(*id);
    }
  }
  if (text.tokenizer->eos_id() >= 0) text.stop_token_ids.push_back(text.tokenizer->eos_id());
  std::sort(text.stop_token_ids.begin(), text.stop_token_ids.end());
  text.stop_token_ids.erase(std::unique(text.stop_token_ids.begin(), text.stop_token_ids.end()),
                            text.stop_token_ids.end());
}

absl::Status SetTemplate(ModelText& text, std::string source, const std::string& origin) {
  absl::StatusOr<ChatTemplate> t = ChatTemplate::Create(std::move(source));
  if (!t.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": chat template: ", t.status().message()));
  }
  text.chat_template = *std::move(t);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> ModelText::RenderChat(const nlohmann::ordered_json& messages,
                                                  bool add_generation_prompt) const {
  if (!chat_template) {
    return absl::FailedPreconditionError("this model has no chat template");
  }
  ChatTemplateInputs inputs;
  inputs.messages = messages;
  inputs.add_generation_prompt = add_generation_prompt;
  inputs.bos_token = bos_token;
  inputs.eos_token = eos_token;
  return chat_template->Render(inputs);
}

bool ModelText::IsStopToken(int32_t id) const {
  return std::binary_search(stop_token_ids.begin(), stop_token_ids.end(), id);
}

absl::StatusOr<ModelText> LoadModelTextFromGguf(const GgufFile& gguf) {
  ASSIGN_OR_RETURN(std::string_view model, gguf.GetString("tokenizer.ggml.model"));
  if (model != "gpt2") {
    return absl::UnimplementedError(
        absl::StrCat(gguf.path(), ": tokenizer.ggml.model '", std::string(model),
                     "' is not supported in GGUF yet (gpt2 byte-level BPE is); use the HF folder"));
  }
  ModelText text;
  ASSIGN_OR_RETURN(BpeVocab vocab, BpeVocabFromGguf(gguf));
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = CreateBpeTokenizer(vocab);
  if (!tokenizer.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(gguf.path(), ": tokenizer: ", tokenizer.status().message()));
  }
  text.tokenizer = *std::move(tokenizer);
  if (vocab.bos_id >= 0) text.bos_token = vocab.tokens[vocab.bos_id];
  if (vocab.eos_id >= 0) text.eos_token = vocab.tokens[vocab.eos_id];
  if (gguf.Has("tokenizer.chat_template")) {
    ASSIGN_OR_RETURN(std::string_view source, gguf.GetString("tokenizer.chat_template"));
    RETURN_IF_ERROR(SetTemplate(text, std::string(source), gguf.path()));
  }
  AddTurnEndTokens(text);
  return text;
}

absl::StatusOr<ModelText> LoadModelTextFromFolder(const std::string& dir) {
  ModelText text;
  std::error_code ec;
  if (std::filesystem::exists(dir + "/tokenizer.json", ec)) {
    ASSIGN_OR_RETURN(text.tokenizer, LoadTokenizerJson(dir + "/tokenizer.json"));
  } else if (std::filesystem::exists(dir + "/tokenizer.model", ec)) {
    ASSIGN_OR_RETURN(text.tokenizer, LoadSentencePiece(dir + "/tokenizer.model"));
  } else {
    return absl::NotFoundError(
        absl::StrCat(dir, ": no tokenizer.json or tokenizer.model in the model folder"));
  }
  const std::string config_path = dir + "/tokenizer_config.json";
  if (std::filesystem::exists(config_path, ec)) {
    ASSIGN_OR_RETURN(nlohmann::json config, ReadJsonObjectFile(config_path));
    text.bos_token = TokenSpelling(config, "bos_token");
    text.eos_token = TokenSpelling(config, "eos_token");
    if (auto it = config.find("chat_template"); it != config.end() && it->is_string()) {
      RETURN_IF_ERROR(SetTemplate(text, it->get<std::string>(), config_path));
    }
    if (!text.eos_token.empty()) {
      if (std::optional<int32_t> id = text.tokenizer->TokenId(text.eos_token)) {
        text.stop_token_ids.push_back(*id);
      }
    }
  }
  AddTurnEndTokens(text);
  return text;
}

}  // namespace alignserve
