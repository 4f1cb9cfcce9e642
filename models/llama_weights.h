// LlamaWeights: the tensors of a Llama-family decoder, placed on a Backend.
// Matrices keep their checkpoint dtype when the backend multiplies it
// directly (quantized GGUF types on the CPU) and, on a backend that shares
// host memory, stay in the memory-mapped file with no copy. Norm weights and
// biases are converted to f32.
// Thread-safety: immutable after loading.
#ifndef ALIGNSERVE_MODELS_LLAMA_WEIGHTS_H_
#define ALIGNSERVE_MODELS_LLAMA_WEIGHTS_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/tensor.h"
#include "models/model_config.h"
#include "models/weight_source.h"

namespace alignserve {

struct LayerWeights {
  Tensor attn_norm;   // f32 [hidden]
  Tensor wq;          // [heads * head_dim, hidden]
  Tensor wk;          // [kv_heads * head_dim, hidden]
  Tensor wv;          // [kv_heads * head_dim, hidden]
  Tensor bq, bk, bv;  // f32 [out]; data null without attention_bias
  Tensor wo;          // [hidden, heads * head_dim]
  Tensor ffn_norm;    // f32 [hidden]
  Tensor w_gate;      // [intermediate, hidden]
  Tensor w_up;        // [intermediate, hidden]
  Tensor w_down;      // [hidden, intermediate]
};

struct LlamaWeights {
  Tensor token_embedding;  // [vocab, hidden]
  std::vector<LayerWeights> layers;
  Tensor final_norm;  // f32 [hidden]
  // [config.logits_size(), hidden]: lm_head.weight, the embedding when tied,
  // or a sequence classifier's score.weight [num_labels, hidden].
  Tensor lm_head;
  std::vector<float> rope_freq_divisors;  // GGUF rope_freqs.weight, or empty
  size_t weight_bytes = 0;                // bytes of every matrix the forward pass reads

  std::vector<std::unique_ptr<DeviceBuffer>> owned;  // converted / uploaded copies
};

// Reads and checks every tensor's presence, shape and type against config.
// The weights may view the memory behind the source (a mapped file), which
// must outlive them; the WeightSource object itself need not.
absl::StatusOr<std::unique_ptr<LlamaWeights>> LoadLlamaWeights(const WeightSource& source,
                                                               const ModelConfig& config,
                                                               Backend& backend);

}  // namespace alignserve

#endif  // ALIGNSERVE_MODELS_LLAMA_WEIGHTS_H_
