#include <string>
#include <utility>

#include "models/formats/gguf_file.h"
#include "models/weight_source.h"

namespace alignserve {
namespace {

// HF name suffixes inside a decoder layer and their llama.cpp names.
constexpr std::pair<std::string_view, std::string_view> kLayerNames[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};

constexpr std::pair<std::string_view, std::string_view> kGlobalNames[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
    {"rope_freqs.weight", "rope_freqs.weight"},
};

std::optional<std::string> GgufName(std::string_view hf) {
  for (const auto& [from, to] : kGlobalNames) {
    if (hf == from) return std::string(to);
  }
  constexpr std::string_view kPrefix = "model.layers.";
  if (!hf.starts_with(kPrefix)) return std::nullopt;
  hf.remove_prefix(kPrefix.size());
  const size_t dot = hf.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  const std::string_view layer = hf.substr(0, dot);
  const std::string_view rest = hf.substr(dot + 1);
  for (const auto& [from, to] : kLayerNames) {
    if (rest == from) return "blk." + std::string(layer) + "." + std::string(to);
  }
  return std::nullopt;
}

class GgufSource final : public WeightSource {
 public:
  explicit GgufSource(const GgufFile& gguf) : gguf_(gguf) {}
  const std::string& path() const override { return gguf_.path(); }

  std::optional<Tensor> Find(std::string_view hf_name) const override {
    std::optional<std::string> name = GgufName(hf_name);
    if (!name) return std::nullopt;
    const GgufTensor* t = gguf_.FindTensor(*name);
    if (t == nullptr) return std::nullopt;
    Tensor view;
    view.dtype = t->type;
    view.rank = static_cast<int>(t->dims.size());
    for (int i = 0; i < view.rank; ++i) view.shape[i] = t->dims[view.rank - 1 - i];
    view.data = const_cast<uint8_t*>(t->data);  // read-only mapping; never written
    return view;
  }

 private:
  const GgufFile& gguf_;
};

}  // namespace

std::unique_ptr<WeightSource> GgufWeightSource(const GgufFile& gguf) {
  return std::make_unique<GgufSource>(gguf);
}

}  // namespace alignserve
