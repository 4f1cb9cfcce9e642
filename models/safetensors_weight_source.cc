#include "models/formats/safetensors_file.h"
#include "models/weight_source.h"

namespace alignserve {
namespace {

class SafetensorsSource final : public WeightSource {
 public:
  explicit SafetensorsSource(const SafetensorsCheckpoint& checkpoint) : checkpoint_(checkpoint) {}
  const std::string& path() const override { return checkpoint_.dir(); }

  std::optional<Tensor> Find(std::string_view hf_name) const override {
    const SafetensorsTensor* t = checkpoint_.FindTensor(hf_name);
    if (t == nullptr || t->shape.size() > Tensor::kMaxRank) return std::nullopt;
    Tensor view;
    view.dtype = t->type;
    view.rank = static_cast<int>(t->shape.size());
    for (int i = 0; i < view.rank; ++i) view.shape[i] = t->shape[i];
    view.data = const_cast<uint8_t*>(t->data);  // read-only mapping; never written
    return view;
  }

 private:
  const SafetensorsCheckpoint& checkpoint_;
};

}  // namespace

std::unique_ptr<WeightSource> SafetensorsWeightSource(const SafetensorsCheckpoint& checkpoint) {
  return std::make_unique<SafetensorsSource>(checkpoint);
}

}  // namespace alignserve
