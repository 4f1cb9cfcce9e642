// Model: a causal language model (or a sequence classifier on the same
// decoder, such as a reward model) that runs one flattened batch step on a
// Backend, reading and extending a paged KV cache.
//
// Forward computes the logits of the rows named by layout.logits_indices
// (the last token of each sequence that samples this step) and their argmax
// on the device. Each row is config().logits_size() wide: next-token logits
// over the vocabulary, or a classifier's num_labels scores. Only the rows
// the caller asks for (ForwardOptions) travel to the host whole: a greedy
// row needs just its argmax, a row drawn on the device (ForwardOptions::
// device_rows) just its token and logprobs. Optionally the final hidden
// states of the same rows (reward heads, policies that read them).
// Thread-safety: one thread drives a model (the engine thread).
#ifndef ALIGNSERVE_MODELS_MODEL_H_
#define ALIGNSERVE_MODELS_MODEL_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/batch_layout.h"
#include "kernels/device_sampling.h"
#include "models/model_config.h"

namespace alignserve {

struct ForwardOptions {
  bool want_hidden = false;
  // Per logits row: 1 if the host needs the whole row. Empty: every row.
  std::span<const uint8_t> host_logits_rows;
  // Draws to make on the device (Backend::SampleRows), only where the
  // model SupportsDeviceSampling; their results land in ForwardOutput::sampled.
  std::span<const DeviceSamplingRow> device_rows;
  std::span<const LogitAdjustment> device_adjustments;
};

struct ForwardOutput {
  int num_rows = 0;
  // [num_rows, config().logits_size()]; only the rows asked for are written
  // (the others hold stale values and must not be read).
  std::vector<float> logits;
  std::vector<uint8_t> has_logits;          // [num_rows] 1 where logits holds the row
  std::vector<int32_t> argmax;              // [num_rows] lowest id of each row's maximum
  std::vector<float> hidden;                // [num_rows, hidden_size] when asked for, else empty
  std::vector<DeviceSampleResult> sampled;  // one per ForwardOptions::device_rows

  // `width`: config().logits_size().
  const float* row(int i, int width) const {
    return logits.data() + static_cast<size_t>(i) * width;
  }
};

class Model {
 public:
  virtual ~Model() = default;
  virtual const ModelConfig& config() const = 0;
  virtual Backend& backend() = 0;
  // The longest sequence the model's rope table covers.
  virtual int max_model_len() const = 0;
  // The geometry of a KV cache of num_blocks blocks for this model.
  virtual KvCacheSpec KvSpec(int num_blocks, int block_size) = 0;
  virtual absl::StatusOr<std::unique_ptr<KvCache>> AllocateKvCache(int num_blocks,
                                                                   int block_size) = 0;
  virtual absl::Status Forward(const BatchLayout& layout, KvCache& cache,
                               const ForwardOptions& options, ForwardOutput& out) = 0;
  // Decode steps of up to max_batch sequences replay captured device graphs
  // where the backend has them (CUDA); 0 runs every step op by op. Models
  // without graphs ignore it.
  virtual void SetDecodeGraphs(int max_batch) {}
  // Whether Forward honours ForwardOptions::device_rows (the backend's
  // Backend::SupportsDeviceSampling for rows of config().logits_size()).
  virtual bool SupportsDeviceSampling() {
    return backend().SupportsDeviceSampling(config().logits_size());
  }
  // Every row's logits on the host.
  absl::Status Forward(const BatchLayout& layout, KvCache& cache, bool want_hidden,
                       ForwardOutput& out) {
    ForwardOptions options;
    options.want_hidden = want_hidden;
    return Forward(layout, cache, options, out);
  }
};

}  // namespace alignserve

#endif  // ALIGNSERVE_MODELS_MODEL_H_
