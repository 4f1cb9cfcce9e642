#include "models/formats/safetensors_file.h"

#include <algorithm>
#include <limits>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "models/formats/bounded_json.h"
#include "models/formats/byte_reader.h"

namespace alignserve {
namespace {

using nlohmann::json;

constexpr std::string_view kMetadataKey = "__metadata__";

// The safetensors dtype names that have a DType of the same meaning.
std::optional<DType> DTypeFromName(std::string_view name) {
  struct Entry {
    std::string_view name;
    DType type;
  };
  static constexpr Entry kTable[] = {
      {"F32", DType::kF32}, {"F16", DType::kF16}, {"BF16", DType::kBF16}, {"F64", DType::kF64},
      {"I8", DType::kI8},   {"I16", DType::kI16}, {"I32", DType::kI32},   {"I64", DType::kI64},
  };
  for (const Entry& e : kTable) {
    if (e.name == name) return e.type;
  }
  return std::nullopt;
}

std::string Quote(std::string_view name) {
  constexpr size_t kMaxShown = 80;
  std::string quoted = absl::StrCat("'", absl::CHexEscape(ToAbsl(name.substr(0, kMaxShown))));
  if (name.size() > kMaxShown) absl::StrAppend(&quoted, "...");
  return quoted + "'";
}

// A JSON number that is a non-negative integer, as produced by every
// safetensors writer; floats, negatives and other types are nullopt.
std::optional<uint64_t> NonNegativeInteger(const json& j) {
  if (j.is_number_unsigned()) return j.get<uint64_t>();
  if (j.is_number_integer() && j.get<int64_t>() >= 0) return j.get<uint64_t>();
  return std::nullopt;
}

// A JSON value rendered for an error message: bounded, and never throwing.
std::string Brief(const json& j) {
  constexpr size_t kMaxShown = 80;
  std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > kMaxShown) s = s.substr(0, kMaxShown) + "...";
  return s;
}

absl::Status EntryError(std::string_view message) {
  return absl::InvalidArgumentError(ToAbsl(message));
}

absl::Status ParseShape(const json& j, SafetensorsTensor* tensor) {
  if (!j.is_array()) return EntryError("'shape' is not an array");
  tensor->elements = 1;
  for (size_t d = 0; d < j.size(); ++d) {
    std::optional<uint64_t> dim = NonNegativeInteger(j[d]);
    if (!dim || *dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return EntryError(
          absl::StrCat("shape[", d, "] is ", Brief(j[d]), ", not a non-negative integer"));
    }
    tensor->shape.push_back(static_cast<int64_t>(*dim));
    if (__builtin_mul_overflow(tensor->elements, tensor->shape.back(), &tensor->elements)) {
      return EntryError(absl::StrCat("element count of shape ", Brief(j), " overflows"));
    }
  }
  return absl::OkStatus();
}

// Fills a tensor from its header entry; the data pointer is set by the
// caller. `buffer_size` is the size of the data buffer after the header.
absl::Status ParseEntry(const json& entry, uint64_t buffer_size, SafetensorsTensor* tensor) {
  if (!entry.is_object()) {
    return EntryError(absl::StrCat("entry is ", entry.type_name(), ", not an object"));
  }
  auto dtype = entry.find("dtype");
  if (dtype == entry.end() || !dtype->is_string()) return EntryError("missing string 'dtype'");
  const std::string& dtype_name = dtype->get_ref<const std::string&>();
  std::optional<DType> type = DTypeFromName(dtype_name);
  if (!type) {
    return EntryError(absl::StrCat("dtype ", Quote(dtype_name),
                                   " is not supported (F32, F16, BF16, F64, I8, I16, I32, I64)"));
  }
  tensor->type = *type;
  auto shape = entry.find("shape");
  if (shape == entry.end()) return EntryError("missing 'shape'");
  RETURN_IF_ERROR(ParseShape(*shape, tensor));
  auto offsets = entry.find("data_offsets");
  if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2) {
    return EntryError("'data_offsets' is not an array of two offsets");
  }
  std::optional<uint64_t> begin = NonNegativeInteger((*offsets)[0]);
  std::optional<uint64_t> end = NonNegativeInteger((*offsets)[1]);
  if (!begin || !end) {
    return EntryError(
        absl::StrCat("data_offsets ", Brief(*offsets), " are not non-negative integers"));
  }
  if (*begin > *end || *end > buffer_size) {
    return EntryError(absl::StrCat("data_offsets [", *begin, ", ", *end,
                                   ") are not a range inside the data buffer of ", buffer_size,
                                   " bytes"));
  }
  uint64_t bytes = 0;
  uint64_t element_bytes = static_cast<uint64_t>(Info(*type).block_bytes);
  if (__builtin_mul_overflow(static_cast<uint64_t>(tensor->elements), element_bytes, &bytes) ||
      bytes != *end - *begin) {
    return EntryError(absl::StrCat("data_offsets [", *begin, ", ", *end, ") hold ", *end - *begin,
                                   " bytes but shape ", Brief(*shape), " of ", dtype_name,
                                   " needs ", tensor->elements, " x ", element_bytes));
  }
  tensor->begin = *begin;
  tensor->bytes = static_cast<size_t>(bytes);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
  return Parse(std::move(file));
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Parse(
    std::unique_ptr<MappedFile> file) {
  std::unique_ptr<SafetensorsFile> st(new SafetensorsFile(std::move(file)));
  ASSIGN_OR_RETURN(std::string_view header, st->ReadHeader());
  RETURN_IF_ERROR(st->ParseHeaderJson(header));
  RETURN_IF_ERROR(st->CheckOverlaps());
  for (size_t i = 0; i < st->tensors_.size(); ++i) st->index_.emplace(st->tensors_[i].name, i);
  return st;
}

absl::Status SafetensorsFile::Corrupt(std::string_view message) const {
  return absl::InvalidArgumentError(absl::StrCat(path(), ": ", ToAbsl(message)));
}

absl::StatusOr<std::string_view> SafetensorsFile::ReadHeader() {
  ByteReader reader(file_->data(), file_->size());
  absl::StatusOr<uint64_t> length = reader.Read<uint64_t>("header length");
  if (!length.ok()) return PrefixError(length.status(), path());
  if (*length > kMaxHeaderBytes) {
    return Corrupt(absl::StrCat("header length ", *length, " exceeds the limit of ",
                                kMaxHeaderBytes, " bytes"));
  }
  if (*length > reader.remaining()) {
    return Corrupt(absl::StrCat("header length ", *length, " exceeds the ", reader.remaining(),
                                " bytes after the length field"));
  }
  ASSIGN_OR_RETURN(const uint8_t* bytes, reader.Take(*length, "header"));
  data_offset_ = reader.offset();
  return std::string_view(reinterpret_cast<const char*>(bytes), static_cast<size_t>(*length));
}

absl::Status SafetensorsFile::ParseHeaderJson(std::string_view header) {
  ASSIGN_OR_RETURN(json root, ParseBoundedJson(header, absl::StrCat(path(), ": header"),
                                               kMaxJsonDepth, /*require_object=*/true));
  uint64_t buffer_size = file_->size() - data_offset_;
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string& name = it.key();
    if (name == kMetadataKey) {
      if (!it->is_object()) return Corrupt("'__metadata__' is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) {
          return Corrupt(absl::StrCat("'__metadata__' value ", Quote(m.key()), " is ",
                                      m->type_name(), ", not a string"));
        }
        metadata_.emplace(m.key(), m->get<std::string>());
      }
      continue;
    }
    SafetensorsTensor tensor;
    absl::Status status = ParseEntry(*it, buffer_size, &tensor);
    if (!status.ok()) return PrefixError(status, absl::StrCat(path(), ": tensor ", Quote(name)));
    tensor.name = name;
    tensor.data = file_->data() + data_offset_ + tensor.begin;
    tensors_.push_back(std::move(tensor));
  }
  return absl::OkStatus();
}

absl::Status SafetensorsFile::CheckOverlaps() const {
  std::vector<const SafetensorsTensor*> order;
  for (const SafetensorsTensor& t : tensors_) {
    if (t.bytes > 0) order.push_back(&t);  // an empty tensor overlaps nothing
  }
  std::sort(order.begin(), order.end(), [](const SafetensorsTensor* a, const SafetensorsTensor* b) {
    return a->begin < b->begin;
  });
  for (size_t i = 1; i < order.size(); ++i) {
    const SafetensorsTensor& prev = *order[i - 1];
    const SafetensorsTensor& cur = *order[i];
    if (prev.begin + prev.bytes > cur.begin) {
      return Corrupt(absl::StrCat("tensor ", Quote(cur.name), ": data_offsets [", cur.begin, ", ",
                                  cur.begin + cur.bytes, ") overlap tensor ", Quote(prev.name),
                                  " at [", prev.begin, ", ", prev.begin + prev.bytes, ")"));
    }
  }
  return absl::OkStatus();
}

const SafetensorsTensor* SafetensorsFile::FindTensor(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace alignserve
