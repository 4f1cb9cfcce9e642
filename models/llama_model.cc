#include "models/llama_model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <span>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"

namespace alignserve {
namespace {

// Decode steps of up to this many sequences replay graphs by default.
constexpr int kDefaultGraphBatch = 256;

// The first `rows` rows of a scratch tensor.
Tensor Rows(const Tensor& t, int64_t rows) { return t.View2d(rows, t.cols()); }

}  // namespace

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Create(
    const ModelConfig& config, std::unique_ptr<LlamaWeights> weights, Backend& backend,
    int max_model_len) {
  auto model = std::unique_ptr<LlamaModel>(new LlamaModel(config, std::move(weights), backend));
  model->max_model_len_ = max_model_len > 0 ? max_model_len : config.max_position_embeddings;
  ASSIGN_OR_RETURN(model->rope_,
                   RopeTableStorage::Build(backend, config.rope, model->max_model_len_,
                                           model->weights_->rope_freq_divisors));
  model->SetDecodeGraphs(kDefaultGraphBatch);
  return model;
}

KvCacheSpec LlamaModel::KvSpec(int num_blocks, int block_size) {
  KvCacheSpec spec;
  spec.num_layers = config_.num_layers;
  spec.num_blocks = num_blocks;
  spec.block_size = block_size;
  spec.num_kv_heads = config_.num_kv_heads;
  spec.head_dim = config_.head_dim;
  spec.dtype = backend_.kv_cache_dtype();
  return spec;
}

absl::StatusOr<std::unique_ptr<KvCache>> LlamaModel::AllocateKvCache(int num_blocks,
                                                                     int block_size) {
  return backend_.AllocateKvCache(KvSpec(num_blocks, block_size));
}

absl::Status LlamaModel::EnsureScratch(int64_t tokens, int64_t logits_rows) {
  Scratch& s = scratch_;
  tokens = std::max<int64_t>(tokens, 1);
  logits_rows = std::max<int64_t>(logits_rows, 1);
  if (tokens <= s.capacity_tokens && logits_rows <= s.capacity_rows) return absl::OkStatus();
  tokens = std::max(tokens, s.capacity_tokens);
  logits_rows = std::max(logits_rows, s.capacity_rows);
  const ModelConfig& c = config_;
  const int64_t q_dim = static_cast<int64_t>(c.num_heads) * c.head_dim;
  const int64_t kv_dim = static_cast<int64_t>(c.num_kv_heads) * c.head_dim;
  const DType act = backend_.activation_dtype();
  // Per-token activations have `tokens` rows; the sampled rows' tensors
  // (final norm, logits, argmax, hidden) only `logits_rows`: a long prefill
  // chunk samples one row, so its logits stay one row of logits_size() wide
  // (the vocabulary, or a classifier's labels).
  struct Slot {
    Tensor* tensor;
    int64_t rows;
    int64_t width;
    DType dtype;
  };
  const Slot slots[] = {
      {&s.residual, tokens, c.hidden_size, act},
      {&s.x, tokens, c.hidden_size, act},
      {&s.q, tokens, q_dim, act},
      {&s.k, tokens, kv_dim, act},
      {&s.v, tokens, kv_dim, act},
      {&s.attn, tokens, q_dim, act},
      {&s.proj, tokens, c.hidden_size, act},
      {&s.gate, tokens, c.intermediate_size, act},
      {&s.up, tokens, c.intermediate_size, act},
      {&s.act, tokens, c.intermediate_size, act},
      {&s.last, logits_rows, c.hidden_size, act},
      {&s.logits, logits_rows, c.logits_size(), DType::kF32},
      {&s.argmax, logits_rows, 1, DType::kI32},
      {&s.hidden, logits_rows, c.hidden_size, DType::kF32},
  };
  auto padded_bytes = [](const Slot& slot) {
    return (RowBytes(slot.dtype, slot.rows * slot.width) + 63) / 64 * 64;
  };
  size_t total = 0;
  for (const Slot& slot : slots) total += padded_bytes(slot);
  s.buffer.reset();
  ++scratch_generation_;
  ASSIGN_OR_RETURN(s.buffer, backend_.Allocate(total));
  char* p = static_cast<char*>(s.buffer->data());
  for (const Slot& slot : slots) {
    *slot.tensor = Tensor(slot.dtype, {slot.rows, slot.width}, p);
    p += padded_bytes(slot);
  }
  s.capacity_tokens = tokens;
  s.capacity_rows = logits_rows;
  return absl::OkStatus();
}

absl::Status LlamaModel::CheckLayout(const BatchLayout& layout, const KvCache& cache) const {
  const KvCacheSpec& spec = cache.spec();
  for (int s = 0; s < layout.num_seqs(); ++s) {
    const int32_t ctx = layout.context_lens[s];
    if (ctx > max_model_len_) {
      return absl::OutOfRangeError(
          absl::StrCat("sequence of ", ctx, " tokens exceeds the model length ", max_model_len_));
    }
    const int32_t needed = (ctx + spec.block_size - 1) / spec.block_size;
    if (needed > layout.max_blocks_per_seq) {
      return absl::InvalidArgumentError("block table shorter than the sequence");
    }
    for (int b = 0; b < needed; ++b) {
      const int32_t id =
          layout.block_tables[static_cast<size_t>(s) * layout.max_blocks_per_seq + b];
      if (id < 0 || id >= spec.num_blocks) {
        return absl::OutOfRangeError(absl::StrCat("block id ", id, " outside the KV cache"));
      }
    }
    for (int t = layout.query_start[s]; t < layout.query_start[s + 1]; ++t) {
      if (layout.positions[t] < 0 || layout.positions[t] >= ctx) {
        return absl::InvalidArgumentError("token position outside its sequence's context");
      }
    }
  }
  for (int32_t row : layout.logits_indices) {
    if (row < 0 || row >= layout.num_tokens()) {
      return absl::InvalidArgumentError("logits index outside the batch");
    }
  }
  return absl::OkStatus();
}

absl::Status LlamaModel::Layer(const DeviceBatch& batch, KvCache& cache, int layer,
                               const Tensor& x) {
  const ModelConfig& c = config_;
  const LayerWeights& w = weights_->layers[layer];
  Scratch& s = scratch_;
  const int64_t n = batch.num_tokens;
  Tensor q = Rows(s.q, n), k = Rows(s.k, n), v = Rows(s.v, n), attn = Rows(s.attn, n);
  Tensor proj = Rows(s.proj, n), residual = Rows(s.residual, n), h = Rows(s.x, n);
  const Backend::MatMulTarget qkv[] = {{&w.wq, w.bq.data ? &w.bq : nullptr, &q},
                                       {&w.wk, w.bk.data ? &w.bk : nullptr, &k},
                                       {&w.wv, w.bv.data ? &w.bv : nullptr, &v}};
  RETURN_IF_ERROR(backend_.MatMulShared(x, qkv));
  RETURN_IF_ERROR(
      backend_.RopeAndWriteKv(batch, rope_->table(), c.head_dim, q, k, v, cache, layer));
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  RETURN_IF_ERROR(backend_.PagedAttention(batch, q, cache, layer, c.num_heads, scale, attn));
  RETURN_IF_ERROR(backend_.MatMul(attn, w.wo, nullptr, proj));
  RETURN_IF_ERROR(backend_.AddRmsNorm(residual, proj, w.ffn_norm, c.rms_norm_eps, h));
  Tensor gate = Rows(s.gate, n), up = Rows(s.up, n), act = Rows(s.act, n);
  const Backend::MatMulTarget gate_up[] = {{&w.w_gate, nullptr, &gate}, {&w.w_up, nullptr, &up}};
  RETURN_IF_ERROR(backend_.MatMulShared(h, gate_up));
  RETURN_IF_ERROR(backend_.SiluMul(gate, up, act));
  return backend_.MatMul(act, w.w_down, nullptr, proj);
}

absl::Status LlamaModel::RunDevice(const DeviceBatch& batch, KvCache& cache, int64_t n,
                                   int64_t rows, bool want_hidden) {
  const ModelConfig& c = config_;
  Scratch& s = scratch_;
  Tensor residual = Rows(s.residual, n), x = Rows(s.x, n), proj = Rows(s.proj, n);
  RETURN_IF_ERROR(backend_.Embedding(batch, weights_->token_embedding, residual));
  for (int layer = 0; layer < c.num_layers; ++layer) {
    const Tensor& norm = weights_->layers[layer].attn_norm;
    if (layer == 0) {
      RETURN_IF_ERROR(backend_.RmsNorm(residual, norm, c.rms_norm_eps, x));
    } else {
      RETURN_IF_ERROR(backend_.AddRmsNorm(residual, proj, norm, c.rms_norm_eps, x));
    }
    RETURN_IF_ERROR(Layer(batch, cache, layer, x));
  }
  RETURN_IF_ERROR(backend_.Add(residual, proj));
  // Only the sampled rows go through the final norm and the output head (the
  // vocabulary, or a classifier's scores).
  // Logits and hidden states are f32 whatever the activation dtype.
  Tensor last = Rows(s.last, rows), logits = Rows(s.logits, rows);
  Tensor hidden = Rows(s.hidden, rows), argmax = Rows(s.argmax, rows);
  RETURN_IF_ERROR(backend_.GatherRows(batch, residual, last));
  if (want_hidden) {
    RETURN_IF_ERROR(backend_.RmsNorm(last, weights_->final_norm, c.rms_norm_eps, hidden));
  }
  RETURN_IF_ERROR(backend_.RmsNorm(last, weights_->final_norm, c.rms_norm_eps, last));
  RETURN_IF_ERROR(backend_.MatMul(last, weights_->lm_head, nullptr, logits));
  return backend_.ArgMax(logits, argmax);
}

absl::Status LlamaModel::CopyOut(int64_t rows, const ForwardOptions& options, ForwardOutput& out) {
  Scratch& s = scratch_;
  out.num_rows = static_cast<int>(rows);
  out.argmax.resize(rows);
  RETURN_IF_ERROR(backend_.CopyToHost(out.argmax.data(), s.argmax.data, rows * sizeof(int32_t)));
  RETURN_IF_ERROR(CopyLogitsRows(Rows(s.logits, rows), options.host_logits_rows, out));
  out.sampled.resize(options.device_rows.size());
  if (!options.device_rows.empty()) {
    RETURN_IF_ERROR(backend_.SampleRows(Rows(s.logits, rows), options.device_rows,
                                        options.device_adjustments, out.sampled));
  }
  out.hidden.clear();
  if (options.want_hidden) {
    out.hidden.resize(static_cast<size_t>(rows) * config_.hidden_size);
    RETURN_IF_ERROR(
        backend_.CopyToHost(out.hidden.data(), s.hidden.data, out.hidden.size() * sizeof(float)));
  }
  return backend_.Synchronize();
}

absl::Status LlamaModel::Forward(const BatchLayout& layout, KvCache& cache,
                                 const ForwardOptions& options, ForwardOutput& out) {
  RETURN_IF_ERROR(CheckLayout(layout, cache));
  const int64_t n = layout.num_tokens();
  const int64_t rows = static_cast<int64_t>(layout.logits_indices.size());
  if (!options.host_logits_rows.empty() &&
      static_cast<int64_t>(options.host_logits_rows.size()) != rows) {
    return absl::InvalidArgumentError(absl::StrCat("host_logits_rows has ",
                                                   options.host_logits_rows.size(), " entries for ",
                                                   rows, " logits rows"));
  }
  if (graphs_ != nullptr && graphs_->Eligible(layout, options)) {
    return ForwardGraph(layout, cache, options, out);
  }
  RETURN_IF_ERROR(EnsureScratch(n, rows));
  ASSIGN_OR_RETURN(DeviceBatch batch, backend_.UploadBatch(layout));
  RETURN_IF_ERROR(RunDevice(batch, cache, n, rows, options.want_hidden));
  return CopyOut(rows, options, out);
}

void LlamaModel::SetDecodeGraphs(int max_batch) {
  graphs_.reset();
  if (max_batch > 0 && backend_.SupportsGraphs()) {
    graphs_ = std::make_unique<DecodeGraphs>(max_batch);
  }
}

DecodeGraphs::Epoch LlamaModel::GraphEpoch(KvCache& cache) const {
  DecodeGraphs::Epoch epoch;
  epoch.backend = backend_.memory_epoch();
  epoch.scratch = scratch_generation_;
  epoch.kv = cache.k(0);
  epoch.kv_blocks = cache.spec().num_blocks;
  return epoch;
}

// The first step of a shape runs op by op (that also grows any workspace
// to the shape's needs), then captures the same ops for the next steps; a
// capture that fails turns graphs off and this step's results stand.
absl::Status LlamaModel::ForwardGraph(const BatchLayout& layout, KvCache& cache,
                                      const ForwardOptions& options, ForwardOutput& out) {
  const DecodeGraphs::Shape shape = DecodeGraphs::ShapeFor(layout);
  DecodeGraphs::Pad(layout, shape, padded_);
  RETURN_IF_ERROR(EnsureScratch(shape.batch, shape.batch));
  ASSIGN_OR_RETURN(DeviceBatch batch, backend_.UploadBatch(padded_));
  const int64_t rows = layout.num_seqs();
  if (DeviceGraph* graph = graphs_->Find(shape, GraphEpoch(cache)); graph != nullptr) {
    RETURN_IF_ERROR(graph->Replay());
    ++graph_replays_;
    return CopyOut(rows, options, out);
  }
  RETURN_IF_ERROR(RunDevice(batch, cache, shape.batch, shape.batch, /*want_hidden=*/false));
  RETURN_IF_ERROR(CopyOut(rows, options, out));
  graphs_->Find(shape, GraphEpoch(cache));  // drops graphs the warm-up outdated
  absl::Status captured = backend_.BeginCapture();
  if (captured.ok()) {
    const absl::Status ran = RunDevice(batch, cache, shape.batch, shape.batch, false);
    absl::StatusOr<std::unique_ptr<DeviceGraph>> graph = backend_.EndCapture();
    captured = !ran.ok() ? ran : graph.status();
    if (captured.ok()) graphs_->Add(shape, *std::move(graph));
  }
  if (!captured.ok()) {
    std::fprintf(stderr,
                 "alignserve: CUDA graph capture failed (%s); running decode steps "
                 "op by op from now on\n",
                 std::string(captured.message()).c_str());
    graphs_.reset();
  }
  return absl::OkStatus();
}

absl::Status LlamaModel::CopyLogitsRows(const Tensor& logits, std::span<const uint8_t> wanted,
                                        ForwardOutput& out) {
  const int64_t rows = logits.rows(), width = logits.cols();
  out.has_logits.assign(rows, 1);
  if (!wanted.empty()) {
    for (int64_t r = 0; r < rows; ++r) out.has_logits[r] = wanted[r] != 0;
  }
  out.logits.resize(static_cast<size_t>(rows) * width);
  // One copy per run of consecutive wanted rows.
  for (int64_t r = 0; r < rows;) {
    if (!out.has_logits[r]) {
      ++r;
      continue;
    }
    int64_t end = r + 1;
    while (end < rows && out.has_logits[end]) ++end;
    RETURN_IF_ERROR(backend_.CopyToHost(out.logits.data() + r * width,
                                        logits.as<float>() + r * width,
                                        static_cast<size_t>(end - r) * width * sizeof(float)));
    r = end;
  }
  return absl::OkStatus();
}

}  // namespace alignserve
