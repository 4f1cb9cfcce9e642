// ModelConfig: the hyper-parameters of a Llama-family model (Llama 2/3,
// Mistral, Qwen2, SmolLM2, DeepSeek-R1 distills), read from GGUF metadata or
// from a Hugging Face config.json. One forward pass serves them all; the
// differences are data: GQA head counts, QKV bias (Qwen2), tied embeddings,
// RMSNorm epsilon, rope theta and scaling, and the rope pairing convention.
// The output head is data too: a causal LM projects to the vocabulary, a
// sequence classifier (HF *ForSequenceClassification: reward models such as
// Skywork-Reward) to num_labels scores.
// Thread-safety: a plain value.
#ifndef ALIGNSERVE_MODELS_MODEL_CONFIG_H_
#define ALIGNSERVE_MODELS_MODEL_CONFIG_H_

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace alignserve {

class GgufFile;

struct RopeConfig {
  enum class Scaling { kNone, kLinear, kLlama3 };
  double theta = 10000.0;
  int rotary_dim = 0;  // rotated dimensions of each head (== head_dim here)
  // Rotate adjacent pairs (GGUF "llama" weights, whose Q/K rows llama.cpp's
  // converter permuted) rather than the two halves of a head (HF layout).
  bool interleaved = false;
  Scaling scaling = Scaling::kNone;
  double factor = 1.0;
  double low_freq_factor = 1.0;       // llama3
  double high_freq_factor = 4.0;      // llama3
  int original_max_positions = 8192;  // llama3
};

struct ModelConfig {
  std::string architecture;  // "llama", "mistral", "qwen2"
  int vocab_size = 0;        // rows of the token embedding; token ids are below it
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  bool attention_bias = false;  // QKV projections carry a bias (Qwen2)
  bool tie_word_embeddings = false;
  RopeConfig rope;
  // Scores of a sequence classifier's head (score.weight [num_labels,
  // hidden]); 0: a causal LM whose head projects to the vocabulary.
  int num_labels = 0;

  // The width of every logits row Model::Forward returns: the vocabulary of
  // a causal LM, the labels of a sequence classifier.
  int logits_size() const { return num_labels > 0 ? num_labels : vocab_size; }

  // Checks the shapes fit together (heads divide, dims positive, ...).
  absl::Status Validate(const std::string& source) const;
};

absl::StatusOr<ModelConfig> ConfigFromGguf(const GgufFile& gguf);
// `source` names the file in errors.
absl::StatusOr<ModelConfig> ConfigFromHfJson(const nlohmann::json& config,
                                             const std::string& source);

}  // namespace alignserve

#endif  // ALIGNSERVE_MODELS_MODEL_CONFIG_H_
