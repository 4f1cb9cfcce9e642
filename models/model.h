// Model: a causal language model that runs one flattened batch step on a
// Backend, reading and extending a paged KV cache.
//
// Forward computes the logits of the rows named by layout.logits_indices
// (the last token of each sequence that samples this step), copied to the
// host; optionally the final hidden states of the same rows (reward heads,
// policies that read them).
// Thread-safety: one thread drives a model (the engine thread).
#ifndef ALIGNSERVE_MODELS_MODEL_H_
#define ALIGNSERVE_MODELS_MODEL_H_

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/batch_layout.h"
#include "models/model_config.h"

namespace alignserve {

struct ForwardOutput {
  int num_rows = 0;
  std::vector<float> logits;  // [num_rows, vocab_size]
  std::vector<float> hidden;  // [num_rows, hidden_size] when asked for, else empty

  const float* row(int i, int vocab_size) const {
    return logits.data() + static_cast<size_t>(i) * vocab_size;
  }
};

class Model {
 public:
  virtual ~Model() = default;
  virtual const ModelConfig& config() const = 0;
  virtual Backend& backend() = 0;
  // The longest sequence the model's rope table covers.
  virtual int max_model_len() const = 0;
  virtual absl::StatusOr<std::unique_ptr<KvCache>> AllocateKvCache(int num_blocks,
                                                                   int block_size) = 0;
  virtual absl::Status Forward(const BatchLayout& layout, KvCache& cache, bool want_hidden,
                               ForwardOutput& out) = 0;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_MODELS_MODEL_H_
