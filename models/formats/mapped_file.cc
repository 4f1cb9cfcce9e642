#include "models/formats/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace alignserve {
namespace {

absl::Status ErrnoError(const std::string& path, const char* action, int err) {
  std::string message = absl::StrCat(path, ": cannot ", action, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    case EISDIR:
      return absl::InvalidArgumentError(message);
    default:
      return absl::InternalError(message);
  }
}

// Closes a descriptor on every return path.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() { ::close(fd_); }

 private:
  int fd_;
};

}  // namespace

MappedFile::MappedFile(std::string path, const uint8_t* data, size_t size, bool is_mmap,
                       std::unique_ptr<uint8_t[]> heap)
    : path_(std::move(path)), data_(data), size_(size), is_mmap_(is_mmap), heap_(std::move(heap)) {}

MappedFile::~MappedFile() {
  if (is_mmap_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

absl::StatusOr<std::unique_ptr<MappedFile>> MappedFile::Open(const std::string& path) {
  // O_NONBLOCK: opening a FIFO must not hang waiting for a writer; it is
  // then rejected as not a regular file. Regular files ignore the flag.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return ErrnoError(path, "open", errno);
  FdCloser closer(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoError(path, "stat", errno);
  if (S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": is a directory, not a model file"));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": is not a regular file"));
  }
  if (st.st_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": file is empty"));
  }
  size_t size = static_cast<size_t>(st.st_size);
  void* addr = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (addr == MAP_FAILED) return ErrnoError(path, "mmap", errno);
  return std::unique_ptr<MappedFile>(
      new MappedFile(path, static_cast<const uint8_t*>(addr), size, /*is_mmap=*/true, nullptr));
}

absl::StatusOr<std::unique_ptr<MappedFile>> MappedFile::FromBytes(std::string name,
                                                                  std::string_view bytes) {
  if (bytes.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": file is empty"));
  }
  // Exactly bytes.size(): no terminating NUL or spare capacity to hide an
  // over-read from AddressSanitizer.
  std::unique_ptr<uint8_t[]> heap(new uint8_t[bytes.size()]);
  std::memcpy(heap.get(), bytes.data(), bytes.size());
  const uint8_t* data = heap.get();
  return std::unique_ptr<MappedFile>(
      new MappedFile(std::move(name), data, bytes.size(), /*is_mmap=*/false, std::move(heap)));
}

bool MappedFile::Contains(const uint8_t* ptr, size_t bytes) const {
  auto begin = reinterpret_cast<uintptr_t>(data_);
  auto p = reinterpret_cast<uintptr_t>(ptr);
  if (p < begin) return false;
  uintptr_t offset = p - begin;
  return offset <= size_ && bytes <= size_ - offset;
}

}  // namespace alignserve
