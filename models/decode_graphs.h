// DecodeGraphs: replaying decode steps as captured device graphs (CUDA
// graphs), as vLLM does: a decode step of an 8B model is ~400 small kernel
// launches whose host-side cost and inter-kernel gaps are a large share of
// the step at small batches. A graph is captured once per step shape and
// then replayed with one launch.
//
// A shape is (batch bucket, block-table width bucket). A decode step of n
// sequences whose block tables are w blocks wide is padded to the next
// bucket sizes B >= n and W >= w (Pad): every pointer and launch size the
// forward pass uses then depends only on (B, W), never on the step's
// contents, which all travel through the uploaded batch. Padding rows are
// one-token sequences at position 0 with context 1 reading block 0, whose
// K/V is never stored (kPaddingSlot); their logits are computed and
// dropped.
//
// Graphs point at the model's scratch, the backend's upload buffer and
// workspaces and the KV cache: Find drops every graph when any of these
// moved (Epoch).
// Thread-safety: owned by a model's driving thread.
#ifndef ALIGNSERVE_MODELS_DECODE_GRAPHS_H_
#define ALIGNSERVE_MODELS_DECODE_GRAPHS_H_

#include <cstdint>
#include <memory>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "kernels/backend.h"
#include "kernels/batch_layout.h"
#include "models/model.h"

namespace alignserve {

class DecodeGraphs {
 public:
  struct Shape {
    int batch = 0;  // sequences (= tokens = logits rows), padded
    int width = 0;  // block-table entries per sequence, padded
  };
  // What a graph's pointers depend on beyond its shape.
  struct Epoch {
    uint64_t backend = 0;  // Backend::memory_epoch
    uint64_t scratch = 0;  // the model's scratch reallocations
    const void* kv = nullptr;
    int kv_blocks = 0;
    bool operator==(const Epoch&) const = default;
  };

  // Graphs for decode steps of up to max_batch sequences; 0: none.
  explicit DecodeGraphs(int max_batch) : max_batch_(max_batch) {}

  int max_batch() const { return max_batch_; }
  // True if the step can replay a graph: every sequence brings one token
  // and samples it (rows in sequence order), no hidden states, at most
  // max_batch sequences.
  bool Eligible(const BatchLayout& layout, const ForwardOptions& options) const;
  // The bucket sizes: 1, 2, 4, 8, then multiples of 8 up to 64, of 16 up
  // to 256, of 32 beyond; widths are powers of two from 16.
  static Shape ShapeFor(const BatchLayout& layout);
  // `layout` padded to `shape` (see the header comment) into `out`, reusing
  // its capacity. Requires an eligible layout that fits the shape.
  static void Pad(const BatchLayout& layout, const Shape& shape, BatchLayout& out);

  // The graph of `shape` captured under `epoch`, or null. A different epoch
  // than the graphs were captured under drops them all.
  DeviceGraph* Find(const Shape& shape, const Epoch& epoch);
  void Add(const Shape& shape, std::unique_ptr<DeviceGraph> graph);
  size_t size() const { return graphs_.size(); }

 private:
  int max_batch_;
  Epoch epoch_;
  absl::flat_hash_map<std::pair<int, int>, std::unique_ptr<DeviceGraph>> graphs_;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_MODELS_DECODE_GRAPHS_H_
