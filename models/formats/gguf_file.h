// GgufFile: a GGUF (v2 / v3) model file, memory-mapped and fully validated at
// Open: header, every metadata key/value, every tensor info, and that each
// tensor's data lies inside the file's data section. After a successful Open
// every accessor is safe: tensor data pointers address
// [data, data + bytes) inside the mapping, and metadata strings are views
// into it. A corrupt or truncated file is an InvalidArgument error naming
// the file and the field, never a crash.
//
// Layout (little-endian): "GGUF" u32 version, u64 tensor count, u64 kv count;
// kv pairs (string key, u32 value type, value); tensor infos (string name,
// u32 n_dims, u64 dims[n_dims], u32 ggml type, u64 offset); padding to
// general.alignment (default 32); the data section. Tensor offsets are
// relative to the data section and aligned.
//
// Thread-safety: immutable after Open; any number of threads may read.
#ifndef ALIGNSERVE_MODELS_FORMATS_GGUF_FILE_H_
#define ALIGNSERVE_MODELS_FORMATS_GGUF_FILE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "kernels/dtype.h"
#include "models/formats/gguf_value.h"
#include "models/formats/mapped_file.h"

namespace alignserve {

struct GgufTensor {
  std::string name;
  // ggml order: dims[0] is the contiguous (innermost) dimension, so a
  // PyTorch [rows, cols] weight reads here as {cols, rows}. 1 to 4 entries,
  // each >= 1; dims[0] is a multiple of the type's block size.
  std::vector<int64_t> dims;
  DType type = DType::kF32;
  uint64_t offset = 0;            // from the start of the data section
  const uint8_t* data = nullptr;  // into the mapping; `bytes` long
  size_t bytes = 0;
  int64_t elements = 0;  // product of dims
};

struct GgufKeyValue {
  std::string_view key;  // into the mapping
  GgufValue value;
};

class GgufFile {
 public:
  static constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read little-endian
  static constexpr uint64_t kDefaultAlignment = 32;
  // general.alignment above this is rejected as corrupt.
  static constexpr uint64_t kMaxAlignment = uint64_t{1} << 30;

  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);
  // Parses an already mapped (or in-memory) file; errors use file->path().
  static absl::StatusOr<std::unique_ptr<GgufFile>> Parse(std::unique_ptr<MappedFile> file);

  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return file_->path(); }
  const MappedFile& file() const { return *file_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  size_t data_section_offset() const { return data_offset_; }

  // ---- Metadata. Errors are NotFound (missing key) or InvalidArgument
  // (wrong type or out of range), each naming the file and the key.
  const std::vector<GgufKeyValue>& metadata() const { return metadata_; }
  const GgufValue* Find(std::string_view key) const;
  bool Has(std::string_view key) const { return Find(key) != nullptr; }

  absl::StatusOr<int64_t> GetInt(std::string_view key) const;   // any integer type
  absl::StatusOr<double> GetFloat(std::string_view key) const;  // any numeric type
  absl::StatusOr<bool> GetBool(std::string_view key) const;
  absl::StatusOr<std::string_view> GetString(std::string_view key) const;
  // Views into the mapping; valid while this GgufFile lives.
  absl::StatusOr<std::vector<std::string_view>> GetStringArray(std::string_view key) const;
  absl::StatusOr<std::vector<int64_t>> GetIntArray(std::string_view key) const;
  absl::StatusOr<std::vector<float>> GetFloatArray(std::string_view key) const;

  // The default when the key is absent; still an error when it is present
  // with the wrong type, so a corrupt value is never silently replaced.
  absl::StatusOr<int64_t> GetIntOr(std::string_view key, int64_t fallback) const;
  absl::StatusOr<double> GetFloatOr(std::string_view key, double fallback) const;
  absl::StatusOr<bool> GetBoolOr(std::string_view key, bool fallback) const;
  absl::StatusOr<std::string_view> GetStringOr(std::string_view key,
                                               std::string_view fallback) const;

  // ---- Tensors, in file order.
  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* FindTensor(std::string_view name) const;

 private:
  explicit GgufFile(std::unique_ptr<MappedFile> file) : file_(std::move(file)) {}

  absl::Status ParseHeader(ByteReader& reader, uint64_t* tensor_count, uint64_t* kv_count);
  absl::Status ParseMetadata(ByteReader& reader, uint64_t kv_count);
  absl::Status ParseAlignment();
  absl::Status ParseTensorInfos(ByteReader& reader, uint64_t tensor_count);
  absl::StatusOr<GgufTensor> ParseTensorInfo(ByteReader& reader);
  absl::Status PlaceTensorData(size_t header_end);

  // "<path>: <message>" as InvalidArgument.
  absl::Status Corrupt(std::string_view message) const;
  // Looks up a key or returns NotFound naming the file and key.
  absl::StatusOr<const GgufValue*> Require(std::string_view key) const;
  absl::Status WrongType(std::string_view key, const GgufValue& value,
                         std::string_view wanted) const;

  std::unique_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = kDefaultAlignment;
  size_t data_offset_ = 0;
  std::vector<GgufKeyValue> metadata_;
  absl::flat_hash_map<std::string_view, size_t> metadata_index_;  // key -> metadata_ index
  std::vector<GgufTensor> tensors_;
  absl::flat_hash_map<std::string_view, size_t> tensor_index_;  // name -> tensors_ index
};

}  // namespace alignserve

#endif  // ALIGNSERVE_MODELS_FORMATS_GGUF_FILE_H_
