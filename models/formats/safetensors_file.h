// Safetensors checkpoints, memory-mapped and validated at Open.
//
// SafetensorsFile is one .safetensors file: a u64 little-endian header
// length N, N bytes of JSON header, then the data buffer. The header maps
// each tensor name to {"dtype", "shape", "data_offsets": [begin, end)}
// (offsets relative to the data buffer) and may hold "__metadata__", an
// object of string values. Open checks: N <= file size - 8 and <= 100 MB; the
// header is a JSON object (nested at most 64 deep); each entry is well typed;
// begin <= end <= buffer size; end - begin == product(shape) * dtype size;
// no two tensors' bytes overlap. Empty tensors (a 0 in shape) are allowed.
//
// Dtypes: F32, F16, BF16 (the weight types) and F64, I8, I16, I32, I64 are
// read as the DType of the same name. U8, BOOL, U16/U32/U64 and the F8 types
// have no DType and are rejected with an error naming the tensor and dtype.
// JSON objects with a repeated name keep the last entry (nlohmann's rule).
//
// SafetensorsCheckpoint is a Hugging Face checkpoint folder: either one
// model.safetensors, or model.safetensors.index.json whose "weight_map" names
// the shard file of each tensor. Lookup is by name across shards; a tensor
// the index maps to a shard that lacks it is an error at Open. Tensors in a
// shard but absent from the weight map are not exposed.
//
// Every error names the file and the field. Tensor data pointers are into
// the mappings and valid while the owning object lives.
//
// Thread-safety: immutable after Open; any number of threads may read.
#ifndef ALIGNSERVE_MODELS_FORMATS_SAFETENSORS_FILE_H_
#define ALIGNSERVE_MODELS_FORMATS_SAFETENSORS_FILE_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "kernels/dtype.h"
#include "models/formats/mapped_file.h"

namespace alignserve {

struct SafetensorsTensor {
  std::string name;
  std::vector<int64_t> shape;  // outermost first (PyTorch order); {} is a scalar
  DType type = DType::kF32;
  const uint8_t* data = nullptr;  // into the mapping; `bytes` long
  size_t bytes = 0;
  int64_t elements = 0;  // product of shape (1 for a scalar)
  uint64_t begin = 0;    // data_offsets[0], from the start of the data buffer
};

class SafetensorsFile {
 public:
  static constexpr uint64_t kMaxHeaderBytes = 100'000'000;
  static constexpr int kMaxJsonDepth = 64;

  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  // Parses an already mapped (or in-memory) file; errors use file->path().
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Parse(std::unique_ptr<MappedFile> file);

  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return file_->path(); }
  const MappedFile& file() const { return *file_; }
  // File offset of the data buffer: 8 + header length.
  size_t data_offset() const { return data_offset_; }
  // "__metadata__", empty when absent.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Sorted by name.
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* FindTensor(std::string_view name) const;

 private:
  explicit SafetensorsFile(std::unique_ptr<MappedFile> file) : file_(std::move(file)) {}

  absl::StatusOr<std::string_view> ReadHeader();
  absl::Status ParseHeaderJson(std::string_view header);
  absl::Status CheckOverlaps() const;
  absl::Status Corrupt(std::string_view message) const;

  std::unique_ptr<MappedFile> file_;
  size_t data_offset_ = 0;
  std::map<std::string, std::string> metadata_;
  std::vector<SafetensorsTensor> tensors_;
  // Keys view tensors_[i].name; built once tensors_ is final.
  absl::flat_hash_map<std::string_view, size_t> index_;
};

class SafetensorsCheckpoint {
 public:
  static constexpr std::string_view kSingleFile = "model.safetensors";
  static constexpr std::string_view kIndexFile = "model.safetensors.index.json";

  // `dir` holds model.safetensors.index.json (preferred) or model.safetensors.
  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> Open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const SafetensorsTensor* FindTensor(std::string_view name) const;
  size_t num_tensors() const { return by_name_.size(); }
  std::vector<std::string_view> TensorNames() const;  // sorted
  // One entry per shard (one for a single-file checkpoint), in name order.
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  explicit SafetensorsCheckpoint(std::string dir) : dir_(std::move(dir)) {}

  absl::Status OpenSingle(const std::string& path);
  absl::Status OpenSharded(const std::string& index_path);

  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  // Keys view names owned by files_.
  absl::flat_hash_map<std::string_view, const SafetensorsTensor*> by_name_;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_MODELS_FORMATS_SAFETENSORS_FILE_H_
