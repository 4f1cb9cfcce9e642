// ModelRunner: executes one scheduler StepPlan on a Model. It applies the
// plan's copy-on-write block copies to the KV cache first (a sequence may be
// about to write into a block it just stopped sharing), then flattens the
// plan into a BatchLayout and runs one forward pass over it.
//
// The logits rows it returns follow the plan's sequences: every token of an
// all_logits chunk (prompt logprobs), else the last token of each chunk
// with sample == true (StepPlan::ToBatchLayout).
// The model and the cache must outlive the runner.
// Thread-safety: driven by the engine thread only; not thread-safe.
#ifndef ALIGNSERVE_ENGINE_MODEL_RUNNER_H_
#define ALIGNSERVE_ENGINE_MODEL_RUNNER_H_

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "engine/step_plan.h"
#include "kernels/backend.h"
#include "models/model.h"

namespace alignserve {

class ModelRunner {
 public:
  ModelRunner(Model& model, KvCache& cache) : model_(model), cache_(cache) {}

  ModelRunner(const ModelRunner&) = delete;
  ModelRunner& operator=(const ModelRunner&) = delete;

  // Runs `plan` (block copies, then the forward pass). On success out holds
  // plan.num_logits_rows() rows of vocab_size logits (and hidden states when
  // want_hidden). An empty plan gives zero rows without touching the model.
  // InvalidArgument when a plan's block id lies outside the cache; errors of
  // the backend pass through.
  absl::Status Execute(const StepPlan& plan, ForwardOutput& out, bool want_hidden = false) {
    ForwardOptions options;
    options.want_hidden = want_hidden;
    return Execute(plan, options, out);
  }
  // options.host_logits_rows follows the plan's sampled entries.
  absl::Status Execute(const StepPlan& plan, const ForwardOptions& options, ForwardOutput& out);

  // The logits row of the i-th sampled sequence of the last Execute.
  static std::span<const float> Row(const ForwardOutput& out, int i, int vocab_size);

  int vocab_size() const { return model_.config().vocab_size; }
  Model& model() { return model_; }
  KvCache& cache() { return cache_; }

 private:
  // Defends the cache against a malformed plan: every block id the plan
  // names must be a block of the cache.
  absl::Status CheckBlocks(const StepPlan& plan) const;

  Model& model_;
  KvCache& cache_;
  BatchLayout layout_;  // the last step's; reused so its buffers are kept
};

}  // namespace alignserve

#endif  // ALIGNSERVE_ENGINE_MODEL_RUNNER_H_
