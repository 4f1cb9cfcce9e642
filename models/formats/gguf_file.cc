#include "models/formats/gguf_file.h"

#include <algorithm>
#include <limits>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "models/formats/byte_reader.h"

namespace alignserve {
namespace {

// The fewest bytes a metadata entry can take: key length, value type, a
// one-byte value. And a tensor info: name length, n_dims, one dim, type,
// offset. Counts above remaining / these are corrupt, caught before any
// allocation is sized from them.
constexpr uint64_t kMinKeyValueBytes = 8 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;
constexpr uint32_t kMaxDims = 4;
// Vectors are reserved up to this many entries; past it they grow only as
// entries are actually parsed.
constexpr uint64_t kMaxReserve = 4096;

// A name from the file, printable and bounded, for error messages.
std::string Quote(std::string_view name) {
  constexpr size_t kMaxShown = 80;
  std::string quoted = absl::StrCat("'", absl::CHexEscape(ToAbsl(name.substr(0, kMaxShown))));
  if (name.size() > kMaxShown) absl::StrAppend(&quoted, "...");
  absl::StrAppend(&quoted, "'");
  return quoted;
}

std::string DimsString(const std::vector<int64_t>& dims) {
  std::string s = "{";
  for (size_t i = 0; i < dims.size(); ++i) absl::StrAppend(&s, i ? ", " : "", dims[i]);
  return s + "}";
}

bool IsPowerOfTwo(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

}  // namespace

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
  return Parse(std::move(file));
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Parse(std::unique_ptr<MappedFile> file) {
  std::unique_ptr<GgufFile> gguf(new GgufFile(std::move(file)));
  ByteReader reader(gguf->file_->data(), gguf->file_->size());
  uint64_t tensor_count = 0;
  uint64_t kv_count = 0;
  RETURN_IF_ERROR(gguf->ParseHeader(reader, &tensor_count, &kv_count));
  RETURN_IF_ERROR(gguf->ParseMetadata(reader, kv_count));
  RETURN_IF_ERROR(gguf->ParseAlignment());
  RETURN_IF_ERROR(gguf->ParseTensorInfos(reader, tensor_count));
  RETURN_IF_ERROR(gguf->PlaceTensorData(reader.offset()));
  return gguf;
}

absl::Status GgufFile::Corrupt(std::string_view message) const {
  return absl::InvalidArgumentError(absl::StrCat(path(), ": ", ToAbsl(message)));
}

absl::Status GgufFile::ParseHeader(ByteReader& reader, uint64_t* tensor_count, uint64_t* kv_count) {
  absl::StatusOr<uint32_t> magic = reader.Read<uint32_t>("GGUF magic");
  if (!magic.ok()) return PrefixError(magic.status(), path());
  if (*magic != kMagic) {
    std::string_view bytes(reinterpret_cast<const char*>(file_->data()), 4);
    return Corrupt(absl::StrCat("bad magic \"", absl::CHexEscape(ToAbsl(bytes)),
                                "\": not a GGUF file (expected \"GGUF\")"));
  }
  absl::StatusOr<uint32_t> version = reader.Read<uint32_t>("GGUF version");
  if (!version.ok()) return PrefixError(version.status(), path());
  uint32_t swapped = __builtin_bswap32(*version);
  if ((*version & 0xFFFF) == 0 && swapped >= 1 && swapped <= 3) {
    return Corrupt(absl::StrCat("big-endian GGUF file (version ", swapped,
                                ") is not supported; convert it to little-endian"));
  }
  if (*version == 1) {
    return Corrupt("GGUF version 1 is not supported (only versions 2 and 3); re-convert the model");
  }
  if (*version != 2 && *version != 3) {
    return Corrupt(absl::StrCat("unsupported GGUF version ", *version, " (expected 2 or 3)"));
  }
  version_ = *version;
  absl::StatusOr<uint64_t> tensors = reader.Read<uint64_t>("tensor count");
  if (!tensors.ok()) return PrefixError(tensors.status(), path());
  absl::StatusOr<uint64_t> kvs = reader.Read<uint64_t>("metadata count");
  if (!kvs.ok()) return PrefixError(kvs.status(), path());
  if (*kvs > reader.remaining() / kMinKeyValueBytes) {
    return Corrupt(absl::StrCat("header claims ", *kvs, " metadata entries but only ",
                                reader.remaining(), " bytes follow the header"));
  }
  if (*tensors > reader.remaining() / kMinTensorInfoBytes) {
    return Corrupt(absl::StrCat("header claims ", *tensors, " tensors but only ",
                                reader.remaining(), " bytes follow the header"));
  }
  *tensor_count = *tensors;
  *kv_count = *kvs;
  return absl::OkStatus();
}

absl::Status GgufFile::ParseMetadata(ByteReader& reader, uint64_t kv_count) {
  metadata_.reserve(std::min(kv_count, kMaxReserve));
  for (uint64_t i = 0; i < kv_count; ++i) {
    std::string entry = absl::StrCat("metadata entry ", i, " of ", kv_count);
    absl::StatusOr<std::string_view> key = reader.ReadString("key");
    if (!key.ok()) return PrefixError(key.status(), absl::StrCat(path(), ": ", entry));
    std::string field = absl::StrCat("metadata key ", Quote(*key));
    absl::StatusOr<uint32_t> type = reader.Read<uint32_t>("value type");
    if (!type.ok()) return PrefixError(type.status(), absl::StrCat(path(), ": ", field));
    absl::StatusOr<GgufValue> value = GgufValue::Parse(reader, static_cast<GgufType>(*type));
    if (!value.ok()) return PrefixError(value.status(), absl::StrCat(path(), ": ", field));
    auto [it, inserted] = metadata_index_.emplace(*key, metadata_.size());
    if (!inserted) {
      return Corrupt(absl::StrCat("duplicate ", field, " (", entry, ", first seen as entry ",
                                  it->second, ")"));
    }
    metadata_.push_back(GgufKeyValue{*key, *std::move(value)});
  }
  return absl::OkStatus();
}

absl::Status GgufFile::ParseAlignment() {
  const GgufValue* value = Find("general.alignment");
  if (value == nullptr) return absl::OkStatus();
  std::optional<int64_t> alignment = value->AsInt();
  if (!alignment) return WrongType("general.alignment", *value, "an integer");
  if (*alignment <= 0 || !IsPowerOfTwo(static_cast<uint64_t>(*alignment)) ||
      static_cast<uint64_t>(*alignment) > kMaxAlignment) {
    return Corrupt(absl::StrCat("metadata key 'general.alignment' is ", *alignment,
                                ", not a power of two between 1 and ", kMaxAlignment));
  }
  alignment_ = static_cast<uint64_t>(*alignment);
  return absl::OkStatus();
}

absl::Status GgufFile::ParseTensorInfos(ByteReader& reader, uint64_t tensor_count) {
  tensors_.reserve(std::min(tensor_count, kMaxReserve));
  for (uint64_t i = 0; i < tensor_count; ++i) {
    std::string entry = absl::StrCat("tensor info ", i, " of ", tensor_count);
    size_t name_offset = reader.offset();
    absl::StatusOr<std::string_view> name = reader.ReadString("name");
    if (!name.ok()) return PrefixError(name.status(), absl::StrCat(path(), ": ", entry));
    absl::StatusOr<GgufTensor> tensor = ParseTensorInfo(reader);
    if (!tensor.ok()) {
      return PrefixError(tensor.status(), absl::StrCat(path(), ": tensor ", Quote(*name)));
    }
    tensor->name = std::string(*name);
    // Keys view the mapping, which never moves (tensors_ may reallocate).
    auto [it, inserted] = tensor_index_.emplace(*name, tensors_.size());
    if (!inserted) {
      return Corrupt(absl::StrCat("duplicate tensor name ", Quote(*name), " (", entry,
                                  " at offset ", name_offset, ", first seen as tensor info ",
                                  it->second, ")"));
    }
    tensors_.push_back(*std::move(tensor));
  }
  return absl::OkStatus();
}

// Reads n_dims, dims, type and offset (the name is already read) and checks
// each against the rules in the header comment. Errors lack the prefix.
absl::StatusOr<GgufTensor> GgufFile::ParseTensorInfo(ByteReader& reader) {
  GgufTensor tensor;
  ASSIGN_OR_RETURN(uint32_t n_dims, reader.Read<uint32_t>("n_dims"));
  if (n_dims < 1 || n_dims > kMaxDims) {
    return absl::InvalidArgumentError(
        absl::StrCat("n_dims is ", n_dims, ", expected 1 to ", kMaxDims));
  }
  tensor.elements = 1;
  for (uint32_t d = 0; d < n_dims; ++d) {
    ASSIGN_OR_RETURN(uint64_t dim, reader.Read<uint64_t>(absl::StrCat("dims[", d, "]")));
    if (dim < 1 || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(absl::StrCat("dims[", d, "] is ", dim, ", not >= 1"));
    }
    tensor.dims.push_back(static_cast<int64_t>(dim));
    if (__builtin_mul_overflow(tensor.elements, tensor.dims.back(), &tensor.elements)) {
      return absl::InvalidArgumentError(
          absl::StrCat("element count of dims ", DimsString(tensor.dims), " overflows"));
    }
  }
  ASSIGN_OR_RETURN(uint32_t type_id, reader.Read<uint32_t>("type"));
  std::optional<DTypeInfo> info = LookupDType(type_id);
  if (!info) return absl::InvalidArgumentError(absl::StrCat("unknown ggml type id ", type_id));
  tensor.type = static_cast<DType>(type_id);
  if (tensor.dims[0] % info->block_elems != 0) {
    return absl::InvalidArgumentError(absl::StrCat("dims[0] = ", tensor.dims[0],
                                                   " is not a multiple of ", ToAbsl(info->name),
                                                   "'s block of ", info->block_elems, " elements"));
  }
  uint64_t bytes = static_cast<uint64_t>(tensor.dims[0] / info->block_elems) *
                   static_cast<uint64_t>(info->block_bytes);
  for (size_t d = 1; d < tensor.dims.size(); ++d) {
    if (__builtin_mul_overflow(bytes, static_cast<uint64_t>(tensor.dims[d]), &bytes)) {
      return absl::InvalidArgumentError(absl::StrCat("byte size of ", ToAbsl(info->name), " dims ",
                                                     DimsString(tensor.dims), " overflows"));
    }
  }
  tensor.bytes = static_cast<size_t>(bytes);
  ASSIGN_OR_RETURN(tensor.offset, reader.Read<uint64_t>("data offset"));
  if (tensor.offset % alignment_ != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data offset ", tensor.offset, " is not a multiple of the alignment ", alignment_));
  }
  return tensor;
}

// Fixes the data section after the (padded) tensor infos and points every
// tensor into it, rejecting data out of the file or overlapping another's.
absl::Status GgufFile::PlaceTensorData(size_t header_end) {
  uint64_t padding = (alignment_ - header_end % alignment_) % alignment_;
  uint64_t data_offset = static_cast<uint64_t>(header_end) + padding;
  uint64_t file_size = file_->size();
  if (data_offset > file_size) {
    if (!tensors_.empty()) {
      return Corrupt(absl::StrCat("the data section would start at offset ", data_offset,
                                  " (tensor infos end at ", header_end, ", alignment ", alignment_,
                                  "), past the end of the ", file_size, "-byte file"));
    }
    data_offset = file_size;  // no tensors: a file may stop without padding
  }
  data_offset_ = static_cast<size_t>(data_offset);
  uint64_t data_size = file_size - data_offset;
  for (GgufTensor& t : tensors_) {
    if (t.offset > data_size || t.bytes > data_size - t.offset) {
      return Corrupt(absl::StrCat("tensor ", Quote(t.name), ": data [offset ", t.offset, ", size ",
                                  t.bytes, ") exceeds the file's data section of ", data_size,
                                  " bytes"));
    }
    t.data = file_->data() + data_offset_ + t.offset;
  }
  std::vector<size_t> order(tensors_.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return tensors_[a].offset < tensors_[b].offset; });
  for (size_t i = 1; i < order.size(); ++i) {
    const GgufTensor& prev = tensors_[order[i - 1]];
    const GgufTensor& cur = tensors_[order[i]];
    if (prev.offset + prev.bytes > cur.offset) {
      return Corrupt(absl::StrCat("tensor ", Quote(cur.name), ": data at offset ", cur.offset,
                                  " overlaps tensor ", Quote(prev.name), " at [", prev.offset, ", ",
                                  prev.offset + prev.bytes, ")"));
    }
  }
  return absl::OkStatus();
}

const GgufTensor* GgufFile::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufValue* GgufFile::Find(std::string_view key) const {
  auto it = metadata_index_.find(key);
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].value;
}

absl::StatusOr<const GgufValue*> GgufFile::Require(std::string_view key) const {
  const GgufValue* value = Find(key);
  if (value == nullptr) {
    return absl::NotFoundError(absl::StrCat(path(), ": metadata key ", Quote(key), " is missing"));
  }
  return value;
}

absl::Status GgufFile::WrongType(std::string_view key, const GgufValue& value,
                                 std::string_view wanted) const {
  return absl::InvalidArgumentError(absl::StrCat(path(), ": metadata key ", Quote(key), " is ",
                                                 value.DebugString(), ", expected ",
                                                 ToAbsl(wanted)));
}

absl::StatusOr<int64_t> GgufFile::GetInt(std::string_view key) const {
  ASSIGN_OR_RETURN(const GgufValue* value, Require(key));
  std::optional<int64_t> i = value->AsInt();
  if (!i) {
    return WrongType(key, *value,
                     IsGgufInteger(value->type()) ? "a value that fits in int64" : "an integer");
  }
  return *i;
}

absl::StatusOr<double> GgufFile::GetFloat(std::string_view key) const {
  ASSIGN_OR_RETURN(const GgufValue* value, Require(key));
  std::optional<double> f = value->AsFloat();
  if (!f) return WrongType(key, *value, "a number");
  return *f;
}

absl::StatusOr<bool> GgufFile::GetBool(std::string_view key) const {
  ASSIGN_OR_RETURN(const GgufValue* value, Require(key));
  std::optional<bool> b = value->AsBool();
  if (!b) return WrongType(key, *value, "a bool");
  return *b;
}

absl::StatusOr<std::string_view> GgufFile::GetString(std::string_view key) const {
  ASSIGN_OR_RETURN(const GgufValue* value, Require(key));
  std::optional<std::string_view> s = value->AsString();
  if (!s) return WrongType(key, *value, "a string");
  return *s;
}

absl::StatusOr<std::vector<std::string_view>> GgufFile::GetStringArray(std::string_view key) const {
  ASSIGN_OR_RETURN(const GgufValue* value, Require(key));
  if (!value->is_array() || value->element_type() != GgufType::kString) {
    return WrongType(key, *value, "an array of strings");
  }
  return value->strings();
}

absl::StatusOr<std::vector<int64_t>> GgufFile::GetIntArray(std::string_view key) const {
  ASSIGN_OR_RETURN(const GgufValue* value, Require(key));
  if (!value->is_array() || !IsGgufInteger(value->element_type())) {
    return WrongType(key, *value, "an array of integers");
  }
  std::vector<int64_t> out(value->size());
  for (size_t i = 0; i < out.size(); ++i) {
    std::optional<int64_t> v = value->IntAt(i);
    if (!v) {
      return absl::InvalidArgumentError(absl::StrCat(path(), ": metadata key ", Quote(key),
                                                     ": element ", i, " does not fit in int64"));
    }
    out[i] = *v;
  }
  return out;
}

absl::StatusOr<std::vector<float>> GgufFile::GetFloatArray(std::string_view key) const {
  ASSIGN_OR_RETURN(const GgufValue* value, Require(key));
  if (!value->is_array() || !IsGgufNumeric(value->element_type())) {
    return WrongType(key, *value, "an array of numbers");
  }
  std::vector<float> out(value->size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(*value->FloatAt(i));
  return out;
}

absl::StatusOr<int64_t> GgufFile::GetIntOr(std::string_view key, int64_t fallback) const {
  return Has(key) ? GetInt(key) : fallback;
}

absl::StatusOr<double> GgufFile::GetFloatOr(std::string_view key, double fallback) const {
  return Has(key) ? GetFloat(key) : fallback;
}

absl::StatusOr<bool> GgufFile::GetBoolOr(std::string_view key, bool fallback) const {
  return Has(key) ? GetBool(key) : fallback;
}

absl::StatusOr<std::string_view> GgufFile::GetStringOr(std::string_view key,
                                                       std::string_view fallback) const {
  return Has(key) ? GetString(key) : fallback;
}

}  // namespace alignserve
