// ByteReader: a bounds-checked little-endian cursor over a byte range, the
// only way the binary format parsers read their input. Every read either
// succeeds entirely or leaves the cursor where it was and returns an
// InvalidArgument status (a truncated file is a malformed file) that says
// what was wanted, where, and how many bytes were left; callers prefix the
// file and field names.
//
// Thread-safety: a plain value; one reader per thread.
#ifndef ALIGNSERVE_MODELS_FORMATS_BYTE_READER_H_
#define ALIGNSERVE_MODELS_FORMATS_BYTE_READER_H_

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace alignserve {

// The format readers memcpy little-endian fields straight into host integers.
static_assert(std::endian::native == std::endian::little,
              "model file readers assume a little-endian host");

// Debian 12's Abseil has its own absl::string_view, distinct from
// std::string_view; StrCat and Status take only that one.
inline absl::string_view ToAbsl(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

// The same error with "prefix: " in front of its message, so each layer of a
// parser can add the field it was reading ("key 'x': array element 3: ...").
inline absl::Status PrefixError(const absl::Status& status, std::string_view prefix) {
  return absl::Status(status.code(), absl::StrCat(ToAbsl(prefix), ": ", status.message()));
}

class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  size_t offset() const { return offset_; }
  size_t remaining() const { return size_ - offset_; }
  const uint8_t* cursor() const { return data_ + offset_; }

  // Reads a little-endian scalar (integer, float, or uint8 for bools).
  template <typename T>
  absl::StatusOr<T> Read(std::string_view what) {
    if (remaining() < sizeof(T)) return Short(what, sizeof(T));
    T value;
    std::memcpy(&value, data_ + offset_, sizeof(T));
    offset_ += sizeof(T);
    return value;
  }

  // Returns a pointer to the next `n` bytes and steps over them.
  absl::StatusOr<const uint8_t*> Take(uint64_t n, std::string_view what) {
    if (n > remaining()) return Short(what, n);
    const uint8_t* p = data_ + offset_;
    offset_ += static_cast<size_t>(n);
    return p;
  }

  // A GGUF-style string: u64 byte length, then the bytes (no terminator).
  absl::StatusOr<std::string_view> ReadString(std::string_view what) {
    size_t start = offset_;
    absl::StatusOr<uint64_t> length = Read<uint64_t>(what);
    if (!length.ok()) return length.status();
    if (*length > remaining()) {
      offset_ = start;
      return absl::InvalidArgumentError(absl::StrCat(ToAbsl(what), " at offset ", start,
                                                     " has length ", *length, " but only ",
                                                     remaining() - 8, " bytes remain after it"));
    }
    const uint8_t* bytes = data_ + offset_;
    offset_ += static_cast<size_t>(*length);
    return std::string_view(reinterpret_cast<const char*>(bytes), static_cast<size_t>(*length));
  }

 private:
  absl::Status Short(std::string_view what, uint64_t wanted) const {
    return absl::InvalidArgumentError(absl::StrCat(ToAbsl(what), " at offset ", offset_, " needs ",
                                                   wanted, " bytes but only ", remaining(),
                                                   " remain in the file"));
  }

  const uint8_t* data_;
  size_t size_;
  size_t offset_ = 0;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_MODELS_FORMATS_BYTE_READER_H_
