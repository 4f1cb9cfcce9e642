#include "models/model_config.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "models/formats/gguf_file.h"

namespace alignserve {
namespace {

absl::Status Invalid(const std::string& source, const std::string& message) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", message));
}

absl::Status ParseGgufRopeScaling(const GgufFile& gguf, const std::string& arch, RopeConfig& rope) {
  ASSIGN_OR_RETURN(std::string_view type, gguf.GetStringOr(arch + ".rope.scaling.type", "none"));
  if (type == "none" || type == "yarn") {
    // llama.cpp stores Llama-3 scaling as the rope_freqs.weight tensor,
    // applied by the rope table builder; "yarn" is not supported.
    if (type == "yarn") return Invalid(gguf.path(), "rope scaling 'yarn' is not supported");
    return absl::OkStatus();
  }
  if (type != "linear") {
    return Invalid(gguf.path(),
                   absl::StrCat("unknown rope scaling type '", std::string(type), "'"));
  }
  rope.scaling = RopeConfig::Scaling::kLinear;
  ASSIGN_OR_RETURN(rope.factor, gguf.GetFloat(arch + ".rope.scaling.factor"));
  return absl::OkStatus();
}

}  // namespace

absl::Status ModelConfig::Validate(const std::string& source) const {
  if (vocab_size <= 0 || hidden_size <= 0 || intermediate_size <= 0 || num_layers <= 0 ||
      num_heads <= 0 || num_kv_heads <= 0 || head_dim <= 0) {
    return Invalid(source, "model dimensions must all be positive");
  }
  if (num_heads % num_kv_heads != 0) {
    return Invalid(source, absl::StrCat("attention heads (", num_heads,
                                        ") are not a multiple of KV heads (", num_kv_heads, ")"));
  }
  if (rope.rotary_dim <= 0 || rope.rotary_dim > head_dim || rope.rotary_dim % 2 != 0) {
    return Invalid(source, absl::StrCat("rotary dimension ", rope.rotary_dim,
                                        " must be even and at most head_dim ", head_dim));
  }
  if (!(rms_norm_eps > 0) || !(rope.theta > 0) || !(rope.factor > 0)) {
    return Invalid(source, "rms_norm_eps, rope theta and rope factor must be positive");
  }
  if (max_position_embeddings <= 0) return Invalid(source, "context length must be positive");
  if (num_labels < 0) return Invalid(source, "num_labels must not be negative");
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> ConfigFromGguf(const GgufFile& gguf) {
  ModelConfig c;
  ASSIGN_OR_RETURN(std::string_view arch, gguf.GetString("general.architecture"));
  if (arch != "llama" && arch != "qwen2" && arch != "mistral") {
    return Invalid(gguf.path(), absl::StrCat("architecture '", std::string(arch),
                                             "' is not supported (llama, mistral, qwen2)"));
  }
  c.architecture = std::string(arch);
  const std::string a(arch);
  ASSIGN_OR_RETURN(int64_t layers, gguf.GetInt(a + ".block_count"));
  ASSIGN_OR_RETURN(int64_t hidden, gguf.GetInt(a + ".embedding_length"));
  ASSIGN_OR_RETURN(int64_t ffn, gguf.GetInt(a + ".feed_forward_length"));
  ASSIGN_OR_RETURN(int64_t heads, gguf.GetInt(a + ".attention.head_count"));
  ASSIGN_OR_RETURN(int64_t kv_heads, gguf.GetIntOr(a + ".attention.head_count_kv", heads));
  ASSIGN_OR_RETURN(int64_t context, gguf.GetIntOr(a + ".context_length", 2048));
  ASSIGN_OR_RETURN(double eps, gguf.GetFloatOr(a + ".attention.layer_norm_rms_epsilon", 1e-5));
  ASSIGN_OR_RETURN(double theta, gguf.GetFloatOr(a + ".rope.freq_base", 10000.0));
  const int64_t default_head_dim = heads > 0 ? hidden / heads : 0;
  ASSIGN_OR_RETURN(int64_t head_dim, gguf.GetIntOr(a + ".attention.key_length", default_head_dim));
  ASSIGN_OR_RETURN(int64_t rot_dim, gguf.GetIntOr(a + ".rope.dimension_count", head_dim));
  int64_t vocab = 0;
  if (gguf.Has(a + ".vocab_size")) {
    ASSIGN_OR_RETURN(vocab, gguf.GetInt(a + ".vocab_size"));
  } else if (const GgufTensor* embd = gguf.FindTensor("token_embd.weight")) {
    vocab = embd->dims.size() == 2 ? embd->dims[1] : 0;
  }
  auto in_range = [](int64_t v) { return v > 0 && v <= (int64_t{1} << 24); };
  for (int64_t v : {layers, hidden, ffn, heads, kv_heads, context, head_dim, rot_dim, vocab}) {
    if (!in_range(v))
      return Invalid(gguf.path(), absl::StrCat("model dimension ", v, " is out of range"));
  }
  c.num_layers = static_cast<int>(layers);
  c.hidden_size = static_cast<int>(hidden);
  c.intermediate_size = static_cast<int>(ffn);
  c.num_heads = static_cast<int>(heads);
  c.num_kv_heads = static_cast<int>(kv_heads);
  c.max_position_embeddings = static_cast<int>(context);
  c.head_dim = static_cast<int>(head_dim);
  c.vocab_size = static_cast<int>(vocab);
  c.rms_norm_eps = eps;
  c.rope.theta = theta;
  c.rope.rotary_dim = static_cast<int>(rot_dim);
  // llama.cpp's converter permutes llama/mistral Q and K rows for its
  // adjacent-pair rope; qwen2 keeps HF's layout (rotate halves).
  c.rope.interleaved = (arch != "qwen2");
  c.attention_bias = gguf.FindTensor("blk.0.attn_q.bias") != nullptr;
  c.tie_word_embeddings = gguf.FindTensor("output.weight") == nullptr;
  RETURN_IF_ERROR(ParseGgufRopeScaling(gguf, a, c.rope));
  RETURN_IF_ERROR(c.Validate(gguf.path()));
  return c;
}

namespace {

// Reads an integer field; absent fields take `fallback` (-1: required).
absl::StatusOr<int> JsonInt(const nlohmann::json& j, const char* key, int fallback,
                            const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (fallback >= 0) return fallback;
    return Invalid(source, absl::StrCat("missing field '", key, "'"));
  }
  if (!it->is_number_integer() || it->get<int64_t>() <= 0 || it->get<int64_t>() > (1 << 24)) {
    return Invalid(source, absl::StrCat("field '", key, "' must be a positive integer"));
  }
  return static_cast<int>(it->get<int64_t>());
}

absl::StatusOr<bool> JsonBool(const nlohmann::json& j, const char* key, bool fallback,
                              const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean())
    return Invalid(source, absl::StrCat("field '", key, "' must be a boolean"));
  return it->get<bool>();
}

absl::StatusOr<double> JsonNumber(const nlohmann::json& j, const char* key, double fallback,
                                  const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number()) return Invalid(source, absl::StrCat("field '", key, "' must be a number"));
  return it->get<double>();
}

// Transformers 5 writes rope settings as `rope_parameters`; earlier
// versions as `rope_theta` plus `rope_scaling`. Both are read.
absl::Status ParseHfRope(const nlohmann::json& j, const std::string& source, RopeConfig& rope) {
  const nlohmann::json* params = nullptr;
  if (auto it = j.find("rope_parameters"); it != j.end() && it->is_object()) params = &*it;
  if (auto it = j.find("rope_scaling"); it != j.end() && it->is_object()) params = &*it;
  ASSIGN_OR_RETURN(rope.theta, JsonNumber(j, "rope_theta", 10000.0, source));
  if (params == nullptr) return absl::OkStatus();
  ASSIGN_OR_RETURN(rope.theta, JsonNumber(*params, "rope_theta", rope.theta, source));
  std::string type = "default";
  for (const char* key : {"rope_type", "type"}) {
    if (auto it = params->find(key); it != params->end() && it->is_string()) type = *it;
  }
  if (type == "default") return absl::OkStatus();
  ASSIGN_OR_RETURN(rope.factor, JsonNumber(*params, "factor", 1.0, source));
  if (type == "linear") {
    rope.scaling = RopeConfig::Scaling::kLinear;
    return absl::OkStatus();
  }
  if (type != "llama3") {
    return Invalid(source, absl::StrCat("rope scaling type '", type,
                                        "' is not supported (default, linear, llama3)"));
  }
  rope.scaling = RopeConfig::Scaling::kLlama3;
  ASSIGN_OR_RETURN(rope.low_freq_factor, JsonNumber(*params, "low_freq_factor", 1.0, source));
  ASSIGN_OR_RETURN(rope.high_freq_factor, JsonNumber(*params, "high_freq_factor", 4.0, source));
  ASSIGN_OR_RETURN(rope.original_max_positions,
                   JsonInt(*params, "original_max_position_embeddings", 8192, source));
  if (!(rope.high_freq_factor > rope.low_freq_factor)) {
    return Invalid(source, "llama3 rope scaling needs high_freq_factor > low_freq_factor");
  }
  return absl::OkStatus();
}

// The output head, from the first entry of `architectures`: *ForCausalLM
// (or no architecture named) is the vocabulary head; *ForSequenceClassification
// is a score head of `num_labels` outputs (else the length of `id2label`,
// else HF's default of 2). Other heads would load as a causal LM that
// silently ties the embedding, so they are refused.
absl::Status ParseHfHead(const nlohmann::json& j, const std::string& source, ModelConfig& c) {
  std::string arch;
  if (auto it = j.find("architectures");
      it != j.end() && it->is_array() && !it->empty() && it->front().is_string()) {
    arch = it->front().get<std::string>();
  }
  if (arch.ends_with("ForSequenceClassification")) {
    int labels = 2;
    if (auto it = j.find("id2label"); it != j.end() && it->is_object() && !it->empty()) {
      labels = static_cast<int>(it->size());
    }
    ASSIGN_OR_RETURN(c.num_labels, JsonInt(j, "num_labels", labels, source));
    return absl::OkStatus();
  }
  if (arch.find("For") != std::string::npos && !arch.ends_with("ForCausalLM")) {
    return Invalid(source, absl::StrCat("architecture '", arch,
                                        "' is not supported (*ForCausalLM, "
                                        "*ForSequenceClassification)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> ConfigFromHfJson(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) return Invalid(source, "config.json is not a JSON object");
  ModelConfig c;
  auto type = j.find("model_type");
  if (type == j.end() || !type->is_string()) return Invalid(source, "missing 'model_type'");
  c.architecture = *type;
  if (c.architecture != "llama" && c.architecture != "mistral" && c.architecture != "qwen2") {
    return Invalid(source, absl::StrCat("model_type '", c.architecture,
                                        "' is not supported (llama, mistral, qwen2)"));
  }
  ASSIGN_OR_RETURN(c.vocab_size, JsonInt(j, "vocab_size", -1, source));
  ASSIGN_OR_RETURN(c.hidden_size, JsonInt(j, "hidden_size", -1, source));
  ASSIGN_OR_RETURN(c.intermediate_size, JsonInt(j, "intermediate_size", -1, source));
  ASSIGN_OR_RETURN(c.num_layers, JsonInt(j, "num_hidden_layers", -1, source));
  ASSIGN_OR_RETURN(c.num_heads, JsonInt(j, "num_attention_heads", -1, source));
  ASSIGN_OR_RETURN(c.num_kv_heads, JsonInt(j, "num_key_value_heads", c.num_heads, source));
  ASSIGN_OR_RETURN(c.head_dim, JsonInt(j, "head_dim", c.hidden_size / c.num_heads, source));
  ASSIGN_OR_RETURN(c.max_position_embeddings, JsonInt(j, "max_position_embeddings", 2048, source));
  ASSIGN_OR_RETURN(c.rms_norm_eps, JsonNumber(j, "rms_norm_eps", 1e-6, source));
  ASSIGN_OR_RETURN(c.tie_word_embeddings, JsonBool(j, "tie_word_embeddings", false, source));
  ASSIGN_OR_RETURN(c.attention_bias,
                   JsonBool(j, "attention_bias", c.architecture == "qwen2", source));
  c.rope.rotary_dim = c.head_dim;
  c.rope.interleaved = false;
  RETURN_IF_ERROR(ParseHfRope(j, source, c.rope));
  RETURN_IF_ERROR(ParseHfHead(j, source, c));
  RETURN_IF_ERROR(c.Validate(source));
  return c;
}

}  // namespace alignserve
