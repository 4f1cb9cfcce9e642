#include "models/llama_weights.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/dequantize.h"
#include "kernels/status_macros.h"

namespace alignserve {
namespace {

class WeightLoader {
 public:
  WeightLoader(const WeightSource& source, Backend& backend, LlamaWeights& out)
      : source_(source), backend_(backend), out_(out) {}

  // A matrix the backend multiplies, placed by the backend (in place, copied,
  // or converted to a dtype it multiplies).
  absl::StatusOr<Tensor> Matrix(const std::string& name, int64_t rows, int64_t cols) {
    ASSIGN_OR_RETURN(Tensor t, Require(name, {rows, cols}));
    absl::StatusOr<DeviceTensor> placed = backend_.UploadWeight(t);
    if (!placed.ok()) return Annotate(name, placed.status());
    out_.weight_bytes += placed->tensor.bytes();
    if (placed->buffer) out_.owned.push_back(std::move(placed->buffer));
    return placed->tensor;
  }

  // A norm weight or bias: converted to f32.
  absl::StatusOr<Tensor> Vector(const std::string& name, int64_t n) {
    ASSIGN_OR_RETURN(Tensor t, Require(name, {n}));
    std::vector<float> host(n);
    absl::Status s = DequantizeRow(t.dtype, t.data, n, host.data());
    if (!s.ok()) return Annotate(name, s);
    ASSIGN_OR_RETURN(std::unique_ptr<DeviceBuffer> buffer, backend_.Allocate(n * sizeof(float)));
    RETURN_IF_ERROR(backend_.CopyToDevice(buffer->data(), host.data(), n * sizeof(float)));
    Tensor f32(DType::kF32, {n}, buffer->data());
    out_.owned.push_back(std::move(buffer));
    return f32;
  }

  bool Has(const std::string& name) const { return source_.Find(name).has_value(); }

 private:
  absl::StatusOr<Tensor> Require(const std::string& name, std::initializer_list<int64_t> shape) {
    std::optional<Tensor> t = source_.Find(name);
    if (!t) {
      return absl::NotFoundError(absl::StrCat(source_.path(), ": missing tensor '", name, "'"));
    }
    Tensor want(t->dtype, shape, nullptr);
    bool same = t->rank == want.rank;
    for (int i = 0; same && i < want.rank; ++i) same = t->shape[i] == want.shape[i];
    if (!same) {
      return absl::InvalidArgumentError(absl::StrCat(source_.path(), ": tensor '", name,
                                                     "' has shape ", t->ShapeString(),
                                                     ", the config implies ", want.ShapeString()));
    }
    return *t;
  }

  absl::Status Annotate(const std::string& name, const absl::Status& s) {
    return absl::Status(s.code(),
                        absl::StrCat(source_.path(), ": tensor '", name, "': ", s.message()));
  }

  const WeightSource& source_;
  Backend& backend_;
  LlamaWeights& out_;
};

absl::Status LoadLayer(WeightLoader& load, const ModelConfig& c, int i, LayerWeights& w) {
  const std::string p = absl::StrCat("model.layers.", i, ".");
  const int64_t q_dim = static_cast<int64_t>(c.num_heads) * c.head_dim;
  const int64_t kv_dim = static_cast<int64_t>(c.num_kv_heads) * c.head_dim;
  ASSIGN_OR_RETURN(w.attn_norm, load.Vector(p + "input_layernorm.weight", c.hidden_size));
  ASSIGN_OR_RETURN(w.wq, load.Matrix(p + "self_attn.q_proj.weight", q_dim, c.hidden_size));
  ASSIGN_OR_RETURN(w.wk, load.Matrix(p + "self_attn.k_proj.weight", kv_dim, c.hidden_size));
  ASSIGN_OR_RETURN(w.wv, load.Matrix(p + "self_attn.v_proj.weight", kv_dim, c.hidden_size));
  if (c.attention_bias) {
    ASSIGN_OR_RETURN(w.bq, load.Vector(p + "self_attn.q_proj.bias", q_dim));
    ASSIGN_OR_RETURN(w.bk, load.Vector(p + "self_attn.k_proj.bias", kv_dim));
    ASSIGN_OR_RETURN(w.bv, load.Vector(p + "self_attn.v_proj.bias", kv_dim));
  }
  ASSIGN_OR_RETURN(w.wo, load.Matrix(p + "self_attn.o_proj.weight", c.hidden_size, q_dim));
  ASSIGN_OR_RETURN(w.ffn_norm, load.Vector(p + "post_attention_layernorm.weight", c.hidden_size));
  ASSIGN_OR_RETURN(w.w_gate,
                   load.Matrix(p + "mlp.gate_proj.weight", c.intermediate_size, c.hidden_size));
  ASSIGN_OR_RETURN(w.w_up,
                   load.Matrix(p + "mlp.up_proj.weight", c.intermediate_size, c.hidden_size));
  ASSIGN_OR_RETURN(w.w_down,
                   load.Matrix(p + "mlp.down_proj.weight", c.hidden_size, c.intermediate_size));
  return absl::OkStatus();
}

// The output projection. A sequence classifier's score head is required:
// falling back to the tied embedding would give vocabulary-wide rows.
absl::StatusOr<Tensor> LoadHead(WeightLoader& load, const ModelConfig& c, LlamaWeights& w) {
  if (c.num_labels > 0) {
    absl::StatusOr<Tensor> score = load.Matrix("score.weight", c.num_labels, c.hidden_size);
    if (!score.ok()) {
      return absl::Status(score.status().code(),
                          absl::StrCat(score.status().message(), " (the score head of a ",
                                       c.num_labels, "-label sequence classifier)"));
    }
    return score;
  }
  if (c.tie_word_embeddings || !load.Has("lm_head.weight")) {
    w.weight_bytes += w.token_embedding.bytes();
    return w.token_embedding;
  }
  return load.Matrix("lm_head.weight", c.vocab_size, c.hidden_size);
}

}  // namespace

absl::StatusOr<std::unique_ptr<LlamaWeights>> LoadLlamaWeights(const WeightSource& source,
                                                               const ModelConfig& c,
                                                               Backend& backend) {
  auto w = std::make_unique<LlamaWeights>();
  WeightLoader load(source, backend, *w);
  ASSIGN_OR_RETURN(w->token_embedding,
                   load.Matrix("model.embed_tokens.weight", c.vocab_size, c.hidden_size));
  w->layers.resize(c.num_layers);
  for (int i = 0; i < c.num_layers; ++i) RETURN_IF_ERROR(LoadLayer(load, c, i, w->layers[i]));
  ASSIGN_OR_RETURN(w->final_norm, load.Vector("model.norm.weight", c.hidden_size));
  ASSIGN_OR_RETURN(w->lm_head, LoadHead(load, c, *w));
  if (std::optional<Tensor> freqs = source.Find("rope_freqs.weight")) {
    if (freqs->dtype != DType::kF32 || freqs->elements() != c.rope.rotary_dim / 2) {
      return absl::InvalidArgumentError(
          absl::StrCat(source.path(), ": tensor 'rope_freqs.weight' must be F32 [",
                       c.rope.rotary_dim / 2, "], got ", freqs->ShapeString()));
    }
    const float* f = freqs->as<float>();
    w->rope_freq_divisors.assign(f, f + freqs->elements());
  }
  return w;
}

}  // namespace alignserve
