#include "models/formats/gguf_value.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/status_macros.h"

namespace alignserve {
namespace {

// Bytes of one scalar of `type`; 0 for string, array and unknown ids.
size_t ScalarBytes(GgufType type) {
  switch (type) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool:
      return 1;
    case GgufType::kUint16:
    case GgufType::kInt16:
      return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32:
      return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64:
      return 8;
    default:
      return 0;
  }
}

bool IsKnownType(uint32_t id) { return id <= static_cast<uint32_t>(GgufType::kFloat64); }

uint64_t LoadBits(const uint8_t* p, size_t bytes) {
  uint64_t bits = 0;
  std::memcpy(&bits, p, bytes);  // little-endian host: low bytes first
  return bits;
}

std::optional<int64_t> BitsToInt(GgufType type, uint64_t bits) {
  switch (type) {
    case GgufType::kUint8:
      return static_cast<int64_t>(static_cast<uint8_t>(bits));
    case GgufType::kInt8:
      return static_cast<int64_t>(static_cast<int8_t>(static_cast<uint8_t>(bits)));
    case GgufType::kUint16:
      return static_cast<int64_t>(static_cast<uint16_t>(bits));
    case GgufType::kInt16:
      return static_cast<int64_t>(static_cast<int16_t>(static_cast<uint16_t>(bits)));
    case GgufType::kUint32:
      return static_cast<int64_t>(static_cast<uint32_t>(bits));
    case GgufType::kInt32:
      return static_cast<int64_t>(static_cast<int32_t>(static_cast<uint32_t>(bits)));
    case GgufType::kUint64:
      if (bits > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
      return static_cast<int64_t>(bits);
    case GgufType::kInt64:
      return static_cast<int64_t>(bits);
    default:
      return std::nullopt;
  }
}

std::optional<double> BitsToFloat(GgufType type, uint64_t bits) {
  if (type == GgufType::kFloat32) {
    float f;
    uint32_t low = static_cast<uint32_t>(bits);
    std::memcpy(&f, &low, sizeof(f));
    return f;
  }
  if (type == GgufType::kFloat64) {
    double d;
    std::memcpy(&d, &bits, sizeof(d));
    return d;
  }
  if (type == GgufType::kUint64) return static_cast<double>(bits);
  std::optional<int64_t> i = BitsToInt(type, bits);
  if (!i) return std::nullopt;
  return static_cast<double>(*i);
}

absl::Status BadBool(uint64_t bits, size_t offset) {
  return absl::InvalidArgumentError(
      absl::StrCat("bool at offset ", offset, " has byte value ", bits, ", not 0 or 1"));
}

}  // namespace

std::string_view GgufTypeName(GgufType type) {
  static constexpr std::string_view kNames[] = {"u8",  "i8",  "u16",  "i16",    "u32",
                                                "i32", "f32", "bool", "string", "array",
                                                "u64", "i64", "f64"};
  uint32_t id = static_cast<uint32_t>(type);
  return IsKnownType(id) ? kNames[id] : "unknown";
}

bool IsGgufInteger(GgufType type) {
  return ScalarBytes(type) != 0 && type != GgufType::kBool && type != GgufType::kFloat32 &&
         type != GgufType::kFloat64;
}

bool IsGgufNumeric(GgufType type) {
  return IsGgufInteger(type) || type == GgufType::kFloat32 || type == GgufType::kFloat64;
}

absl::StatusOr<GgufValue> GgufValue::Parse(ByteReader& reader, GgufType type, int depth) {
  GgufValue value;
  value.type_ = type;
  if (type == GgufType::kString) {
    ASSIGN_OR_RETURN(value.string_, reader.ReadString("string"));
    return value;
  }
  if (type == GgufType::kArray) return ParseArray(reader, depth + 1);
  size_t bytes = ScalarBytes(type);
  if (bytes == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown value type id ", static_cast<uint32_t>(type), " at offset ", reader.offset()));
  }
  size_t offset = reader.offset();
  ASSIGN_OR_RETURN(const uint8_t* p, reader.Take(bytes, GgufTypeName(type)));
  value.bits_ = LoadBits(p, bytes);
  if (type == GgufType::kBool && value.bits_ > 1) return BadBool(value.bits_, offset);
  return value;
}

absl::StatusOr<GgufValue> GgufValue::ParseArray(ByteReader& reader, int depth) {
  if (depth > kMaxArrayDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat("arrays nested deeper than ", kMaxArrayDepth, " at offset ", reader.offset()));
  }
  size_t type_offset = reader.offset();
  ASSIGN_OR_RETURN(uint32_t element_id, reader.Read<uint32_t>("array element type"));
  if (!IsKnownType(element_id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown array element type id ", element_id, " at offset ", type_offset));
  }
  ASSIGN_OR_RETURN(uint64_t count, reader.Read<uint64_t>("array length"));
  GgufType element = static_cast<GgufType>(element_id);
  if (element == GgufType::kString) return ParseStringArray(reader, count);
  if (element == GgufType::kArray) return ParseNestedArray(reader, count, depth);

  size_t bytes = ScalarBytes(element);
  if (count > reader.remaining() / bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "array of ", count, " ", ToAbsl(GgufTypeName(element)), " at offset ", reader.offset(),
        " needs more than the ", reader.remaining(), " bytes left in the file"));
  }
  GgufValue value;
  value.type_ = GgufType::kArray;
  value.element_type_ = element;
  value.count_ = static_cast<size_t>(count);
  size_t offset = reader.offset();
  ASSIGN_OR_RETURN(value.raw_, reader.Take(count * bytes, "array elements"));
  if (element == GgufType::kBool) {
    for (size_t i = 0; i < value.count_; ++i) {
      if (value.raw_[i] > 1) {
        return PrefixError(BadBool(value.raw_[i], offset + i), absl::StrCat("array element ", i));
      }
    }
  }
  return value;
}

absl::StatusOr<GgufValue> GgufValue::ParseStringArray(ByteReader& reader, uint64_t count) {
  // Each string takes at least its 8-byte length.
  if (count > reader.remaining() / 8) {
    return absl::InvalidArgumentError(absl::StrCat("array of ", count, " strings at offset ",
                                                   reader.offset(), " needs more than the ",
                                                   reader.remaining(), " bytes left in the file"));
  }
  GgufValue value;
  value.type_ = GgufType::kArray;
  value.element_type_ = GgufType::kString;
  value.count_ = static_cast<size_t>(count);
  // Memory grows only with strings actually parsed, never from the count.
  value.strings_.reserve(std::min<size_t>(value.count_, size_t{1} << 20));
  for (size_t i = 0; i < value.count_; ++i) {
    absl::StatusOr<std::string_view> s = reader.ReadString("string");
    if (!s.ok()) {
      return PrefixError(s.status(), absl::StrCat("string array element ", i, " of ", count));
    }
    value.strings_.push_back(*s);
  }
  return value;
}

absl::StatusOr<GgufValue> GgufValue::ParseNestedArray(ByteReader& reader, uint64_t count,
                                                      int depth) {
  // Each inner array takes at least its 4-byte type and 8-byte length.
  if (count > reader.remaining() / 12) {
    return absl::InvalidArgumentError(absl::StrCat("array of ", count, " arrays at offset ",
                                                   reader.offset(), " needs more than the ",
                                                   reader.remaining(), " bytes left in the file"));
  }
  GgufValue value;
  value.type_ = GgufType::kArray;
  value.element_type_ = GgufType::kArray;
  value.count_ = static_cast<size_t>(count);
  value.arrays_.reserve(std::min<size_t>(value.count_, size_t{1} << 16));
  for (size_t i = 0; i < value.count_; ++i) {
    absl::StatusOr<GgufValue> inner = ParseArray(reader, depth + 1);
    if (!inner.ok()) {
      return PrefixError(inner.status(), absl::StrCat("array element ", i, " of ", count));
    }
    value.arrays_.push_back(*std::move(inner));
  }
  return value;
}

std::optional<int64_t> GgufValue::AsInt() const { return BitsToInt(type_, bits_); }

std::optional<double> GgufValue::AsFloat() const {
  if (!IsGgufNumeric(type_)) return std::nullopt;
  return BitsToFloat(type_, bits_);
}

std::optional<bool> GgufValue::AsBool() const {
  if (type_ != GgufType::kBool) return std::nullopt;
  return bits_ != 0;
}

std::optional<std::string_view> GgufValue::AsString() const {
  if (type_ != GgufType::kString) return std::nullopt;
  return string_;
}

std::optional<int64_t> GgufValue::IntAt(size_t i) const {
  if (raw_ == nullptr || i >= count_ || !IsGgufInteger(element_type_)) return std::nullopt;
  size_t bytes = ScalarBytes(element_type_);
  return BitsToInt(element_type_, LoadBits(raw_ + i * bytes, bytes));
}

std::optional<double> GgufValue::FloatAt(size_t i) const {
  if (raw_ == nullptr || i >= count_ || !IsGgufNumeric(element_type_)) return std::nullopt;
  size_t bytes = ScalarBytes(element_type_);
  return BitsToFloat(element_type_, LoadBits(raw_ + i * bytes, bytes));
}

std::optional<bool> GgufValue::BoolAt(size_t i) const {
  if (raw_ == nullptr || i >= count_ || element_type_ != GgufType::kBool) return std::nullopt;
  return raw_[i] != 0;
}

std::string GgufValue::DebugString() const {
  if (type_ == GgufType::kArray) {
    return absl::StrCat("array<", ToAbsl(GgufTypeName(element_type_)), ">[", count_, "]");
  }
  if (type_ == GgufType::kString) {
    constexpr size_t kMaxShown = 40;
    std::string_view shown = string_.substr(0, kMaxShown);
    return absl::StrCat("string \"", absl::CHexEscape(ToAbsl(shown)),
                        string_.size() > kMaxShown ? "...\"" : "\"");
  }
  if (type_ == GgufType::kBool) return bits_ ? "bool true" : "bool false";
  if (type_ == GgufType::kFloat32 || type_ == GgufType::kFloat64) {
    return absl::StrFormat("%s %g", ToAbsl(GgufTypeName(type_)), *AsFloat());
  }
  if (type_ == GgufType::kUint64) return absl::StrCat("u64 ", bits_);
  std::optional<int64_t> i = AsInt();
  return absl::StrCat(ToAbsl(GgufTypeName(type_)), " ", i ? *i : 0);
}

}  // namespace alignserve
