// WeightSource: named host tensors of a checkpoint, whatever its format.
// Names are Hugging Face's ("model.layers.3.self_attn.q_proj.weight");
// shapes are outermost first ([out_features, in_features] for a linear
// layer). The GGUF source translates names and reverses ggml's dimension
// order, so the model loader reads every format alike.
// Thread-safety: immutable; views stay valid while the source lives.
#ifndef ALIGNSERVE_MODELS_WEIGHT_SOURCE_H_
#define ALIGNSERVE_MODELS_WEIGHT_SOURCE_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "kernels/tensor.h"

namespace alignserve {

class GgufFile;
class SafetensorsCheckpoint;

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  // The file or folder, for error messages.
  virtual const std::string& path() const = 0;
  // The tensor's host view, or nullopt when the checkpoint lacks it.
  virtual std::optional<Tensor> Find(std::string_view hf_name) const = 0;
};

// Borrows `gguf`, which must outlive the source.
std::unique_ptr<WeightSource> GgufWeightSource(const GgufFile& gguf);
// Borrows `checkpoint`, which must outlive the source.
std::unique_ptr<WeightSource> SafetensorsWeightSource(const SafetensorsCheckpoint& checkpoint);

}  // namespace alignserve

#endif  // ALIGNSERVE_MODELS_WEIGHT_SOURCE_H_
