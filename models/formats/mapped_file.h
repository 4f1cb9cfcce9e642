// MappedFile: the read-only bytes of one whole model file, memory-mapped for
// the object's lifetime so that tensors and strings can point straight into
// it (a 100 MB checkpoint costs no copy and loads in milliseconds).
//
// FromBytes wraps an in-memory buffer in the same interface; loaders take a
// MappedFile either way, so tests and fuzzers can feed exact-size heap
// buffers, where AddressSanitizer catches any read one byte past the end.
//
// Thread-safety: immutable after construction; data() may be read from any
// number of threads at once.
#ifndef ALIGNSERVE_MODELS_FORMATS_MAPPED_FILE_H_
#define ALIGNSERVE_MODELS_FORMATS_MAPPED_FILE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace alignserve {

class MappedFile {
 public:
  // Maps `path` read-only. Errors (each naming the path): missing or
  // unreadable file (NotFound / PermissionDenied / Internal), a directory or
  // other non-regular file, an empty file (InvalidArgument).
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);

  // Takes a copy of `bytes` into an exactly sized heap buffer; `name` stands
  // in for the path in error messages. Empty input is an error, as for files.
  static absl::StatusOr<std::unique_ptr<MappedFile>> FromBytes(std::string name,
                                                               std::string_view bytes);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // True when [ptr, ptr + bytes) lies inside the mapping.
  bool Contains(const uint8_t* ptr, size_t bytes) const;

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size, bool is_mmap,
             std::unique_ptr<uint8_t[]> heap);

  std::string path_;
  const uint8_t* data_;
  size_t size_;
  bool is_mmap_;                     // munmap on destruction
  std::unique_ptr<uint8_t[]> heap_;  // owns data_ when !is_mmap_
};

}  // namespace alignserve

#endif  // ALIGNSERVE_MODELS_FORMATS_MAPPED_FILE_H_
