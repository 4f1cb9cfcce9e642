// FaultInjectingModel: TEST ONLY. A Model decorator that makes forward
// passes fail or stall on command, so the server's answers to faults
// (ROBUSTNESS.md 21 and 22) can be proven against the real binary without a
// broken model file or GPU. It is switched on by the environment variable
// ALIGNSERVE_FAULT_INJECT (read by BuildEngine, server/engine_setup.h);
// without it nothing here is used and the model is not wrapped.
//
// ALIGNSERVE_FAULT_INJECT is a comma-separated list of key:value:
//   forward_error_every:N      forward passes N, 2N, 3N... fail (Internal)
//   forward_error_on_token:ID  a forward pass whose batch holds token ID fails
//   forward_stall_on_token:ID  a forward pass whose batch holds token ID first
//                              sleeps forward_stall_ms (default 5000), then runs
//   forward_stall_ms:MS
//   load_delay_ms:MS           model loading takes MS longer (BuildEngine)
// A failing pass fails before touching the KV cache, as a device error
// would; the engine then fails that step's requests.
// Thread-safety: like any Model, driven by one thread (the engine thread).
#ifndef ALIGNSERVE_SERVER_FAULT_INJECTING_MODEL_H_
#define ALIGNSERVE_SERVER_FAULT_INJECTING_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "models/model.h"

namespace alignserve {

inline constexpr char kFaultInjectEnv[] = "ALIGNSERVE_FAULT_INJECT";

struct FaultSpec {
  int64_t forward_error_every = 0;      // 0: off
  int32_t forward_error_on_token = -1;  // -1: off
  int32_t forward_stall_on_token = -1;  // -1: off
  int64_t forward_stall_ms = 5000;
  int64_t load_delay_ms = 0;

  bool any_forward_fault() const {
    return forward_error_every > 0 || forward_error_on_token >= 0 || forward_stall_on_token >= 0;
  }
  std::string Describe() const;
};

// Parses the variable's value; InvalidArgument naming the bad entry.
absl::StatusOr<FaultSpec> ParseFaultSpec(const std::string& text);
// The spec from ALIGNSERVE_FAULT_INJECT; an empty (all off) spec when unset.
absl::StatusOr<FaultSpec> FaultSpecFromEnv();

class FaultInjectingModel final : public Model {
 public:
  FaultInjectingModel(std::unique_ptr<Model> inner, FaultSpec spec);

  const ModelConfig& config() const override { return inner_->config(); }
  Backend& backend() override { return inner_->backend(); }
  int max_model_len() const override { return inner_->max_model_len(); }
  void SetDecodeGraphs(int max_batch) override { inner_->SetDecodeGraphs(max_batch); }
  bool SupportsDeviceSampling() override { return inner_->SupportsDeviceSampling(); }
  KvCacheSpec KvSpec(int num_blocks, int block_size) override {
    return inner_->KvSpec(num_blocks, block_size);
  }
  absl::StatusOr<std::unique_ptr<KvCache>> AllocateKvCache(int num_blocks,
                                                           int block_size) override {
    return inner_->AllocateKvCache(num_blocks, block_size);
  }
  absl::Status Forward(const BatchLayout& layout, KvCache& cache, const ForwardOptions& options,
                       ForwardOutput& out) override;

 private:
  std::unique_ptr<Model> inner_;
  FaultSpec spec_;
  int64_t num_forwards_ = 0;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_SERVER_FAULT_INJECTING_MODEL_H_
