// LlamaModel: the Llama-family decoder forward pass over any Backend.
//
// Per layer: RMSNorm -> Q/K/V projections (+ bias for Qwen2) -> rope ->
// write K/V to the paged cache -> paged attention (GQA) -> output
// projection -> residual add fused with the next RMSNorm -> SiLU-gated MLP.
// The sampled rows then go through the final norm and the output head:
// lm_head (vocabulary logits) or, for a sequence classifier, score.weight
// (config().num_labels scores per row).
// Activations live in per-model scratch buffers that grow to the largest
// step seen and are then reused (no allocation in steady-state decode).
// On backends with graphs, decode steps replay a CUDA graph captured per
// step shape (decode_graphs.h; on by default for up to 256 sequences).
// Thread-safety: one driving thread.
#ifndef ALIGNSERVE_MODELS_LLAMA_MODEL_H_
#define ALIGNSERVE_MODELS_LLAMA_MODEL_H_

#include <cstdint>
#include <memory>
#include <span>

#include "models/decode_graphs.h"
#include "models/llama_weights.h"
#include "models/model.h"
#include "models/rope_table.h"

namespace alignserve {

class LlamaModel final : public Model {
 public:
  // max_model_len: positions the rope table covers (<= 0: the config's
  // context length).
  static absl::StatusOr<std::unique_ptr<LlamaModel>> Create(const ModelConfig& config,
                                                            std::unique_ptr<LlamaWeights> weights,
                                                            Backend& backend, int max_model_len);

  const ModelConfig& config() const override { return config_; }
  Backend& backend() override { return backend_; }
  int max_model_len() const override { return max_model_len_; }
  const LlamaWeights& weights() const { return *weights_; }
  KvCacheSpec KvSpec(int num_blocks, int block_size) override;
  absl::StatusOr<std::unique_ptr<KvCache>> AllocateKvCache(int num_blocks, int block_size) override;
  using Model::Forward;
  absl::Status Forward(const BatchLayout& layout, KvCache& cache, const ForwardOptions& options,
                       ForwardOutput& out) override;
  void SetDecodeGraphs(int max_batch) override;
  // Graphs held now, and decode steps run by replaying one (tests and
  // benchmarks).
  size_t num_decode_graphs() const { return graphs_ ? graphs_->size() : 0; }
  int64_t num_graph_replays() const { return graph_replays_; }

 private:
  // Activation buffers for `tokens` rows, each [tokens, width].
  struct Scratch {
    std::unique_ptr<DeviceBuffer> buffer;
    int64_t capacity_tokens = 0;  // rows of the per-token tensors
    int64_t capacity_rows = 0;    // rows of the per-sampled-row tensors
    Tensor residual, x, q, k, v, attn, proj, gate, up, act, last;
    Tensor logits, hidden;  // f32 whatever the activation dtype: they go to the host
    Tensor argmax;          // I32 [rows, 1]
  };

  LlamaModel(const ModelConfig& config, std::unique_ptr<LlamaWeights> weights, Backend& backend)
      : config_(config), weights_(std::move(weights)), backend_(backend) {}

  absl::Status EnsureScratch(int64_t tokens, int64_t logits_rows);
  // The device work of a step of `tokens` rows and `rows` logits rows on
  // an uploaded batch: logits and argmax land in the scratch.
  absl::Status RunDevice(const DeviceBatch& batch, KvCache& cache, int64_t tokens, int64_t rows,
                         bool want_hidden);
  // Argmax, the wanted logits rows and hidden states of the first `rows`
  // rows to the host.
  absl::Status CopyOut(int64_t rows, const ForwardOptions& options, ForwardOutput& out);
  // A decode step through a captured graph (capturing it on first use).
  absl::Status ForwardGraph(const BatchLayout& layout, KvCache& cache,
                            const ForwardOptions& options, ForwardOutput& out);
  DecodeGraphs::Epoch GraphEpoch(KvCache& cache) const;
  absl::Status Layer(const DeviceBatch& batch, KvCache& cache, int layer, const Tensor& rows_x);
  absl::Status CheckLayout(const BatchLayout& layout, const KvCache& cache) const;
  // Copies the wanted rows of the device logits into out.logits (all when
  // `wanted` is empty) and sets out.has_logits.
  absl::Status CopyLogitsRows(const Tensor& logits, std::span<const uint8_t> wanted,
                              ForwardOutput& out);

  ModelConfig config_;
  std::unique_ptr<LlamaWeights> weights_;
  Backend& backend_;
  std::unique_ptr<RopeTableStorage> rope_;
  int max_model_len_ = 0;
  Scratch scratch_;
  uint64_t scratch_generation_ = 0;  // reallocations of scratch_
  std::unique_ptr<DecodeGraphs> graphs_;
  int64_t graph_replays_ = 0;
  BatchLayout padded_;  // the graph step's padded layout, reused
};

}  // namespace alignserve

#endif  // ALIGNSERVE_MODELS_LLAMA_MODEL_H_
