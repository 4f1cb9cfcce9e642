// GgufValue: one metadata value of a GGUF file: a scalar (u8..i64, f32, f64,
// bool), a string, or an array of any of these, arrays nesting arrays.
//
// Values are views: strings and the packed elements of numeric arrays point
// into the file's mapping, so the 49152-entry vocabulary of a tokenizer
// costs one vector of string_views and no string copies. A GgufValue must
// not outlive the MappedFile it was parsed from.
//
// Thread-safety: immutable after parsing; freely shared for reading.
#ifndef ALIGNSERVE_MODELS_FORMATS_GGUF_VALUE_H_
#define ALIGNSERVE_MODELS_FORMATS_GGUF_VALUE_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "models/formats/byte_reader.h"

namespace alignserve {

// Value type ids as written in GGUF files.
enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

// "u8", "string", "array", ...; "unknown" for ids outside the enum.
std::string_view GgufTypeName(GgufType type);
bool IsGgufInteger(GgufType type);
// Integers and floats (not bool).
bool IsGgufNumeric(GgufType type);

class GgufValue {
 public:
  // Arrays nest at most this deep (an array of arrays is depth 2), so a
  // hostile file cannot recurse the parser off the stack.
  static constexpr int kMaxArrayDepth = 8;

  // Parses one value of `type` at the reader's cursor. Every length and count
  // is checked against the bytes left before anything is allocated. Errors
  // describe the offset and the bad field; the caller names file and key.
  static absl::StatusOr<GgufValue> Parse(ByteReader& reader, GgufType type, int depth = 0);

  GgufValue() = default;

  GgufType type() const { return type_; }
  bool is_array() const { return type_ == GgufType::kArray; }

  // Scalars. AsInt accepts every integer type; a u64 above INT64_MAX gives
  // nullopt. AsFloat accepts every integer and float type.
  std::optional<int64_t> AsInt() const;
  std::optional<double> AsFloat() const;
  std::optional<bool> AsBool() const;
  std::optional<std::string_view> AsString() const;

  // Arrays (all of these are empty / nullopt for a non-array value).
  GgufType element_type() const { return element_type_; }
  size_t size() const { return count_; }
  std::optional<int64_t> IntAt(size_t i) const;
  std::optional<double> FloatAt(size_t i) const;
  std::optional<bool> BoolAt(size_t i) const;
  // Elements of a string array; views into the mapping.
  const std::vector<std::string_view>& strings() const { return strings_; }
  // Elements of an array of arrays.
  const std::vector<GgufValue>& arrays() const { return arrays_; }

  // A short human-readable rendering for error messages and tools:
  // "u32 30", "string \"llama\"", "array<string>[49152]".
  std::string DebugString() const;

 private:
  static absl::StatusOr<GgufValue> ParseArray(ByteReader& reader, int depth);
  static absl::StatusOr<GgufValue> ParseStringArray(ByteReader& reader, uint64_t count);
  static absl::StatusOr<GgufValue> ParseNestedArray(ByteReader& reader, uint64_t count, int depth);

  GgufType type_ = GgufType::kUint8;
  uint64_t bits_ = 0;        // a scalar's little-endian bytes, zero-extended
  std::string_view string_;  // kString
  // kArray: element type and count; numeric and bool elements stay packed in
  // the mapping at raw_, decoded on access (they may be unaligned).
  GgufType element_type_ = GgufType::kUint8;
  size_t count_ = 0;
  const uint8_t* raw_ = nullptr;
  std::vector<std::string_view> strings_;
  std::vector<GgufValue> arrays_;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_MODELS_FORMATS_GGUF_VALUE_H_
