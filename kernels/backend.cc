#include "kernels/backend.h"

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"

namespace alignserve {

absl::StatusOr<DeviceMemoryInfo> Backend::MemoryInfo() const {
  return absl::UnimplementedError(
      absl::StrCat("the ", std::string(name()), " backend has no device memory of its own"));
}

absl::StatusOr<DeviceTensor> Backend::UploadWeight(const Tensor& host) {
  if (!SupportsWeightType(host.dtype)) {
    return absl::UnimplementedError(absl::StrCat("the ", std::string(name()),
                                                 " backend cannot multiply ",
                                                 std::string(DTypeName(host.dtype)), " weights"));
  }
  DeviceTensor out;
  out.tensor = host;
  if (shares_host_memory()) return out;
  ASSIGN_OR_RETURN(out.buffer, Allocate(host.bytes()));
  RETURN_IF_ERROR(CopyToDevice(out.buffer->data(), host.data, host.bytes()));
  out.tensor.data = out.buffer->data();
  return out;
}

absl::Status Backend::BeginCapture() {
  return absl::UnimplementedError(absl::StrCat(std::string(name()), " backend: no graph capture"));
}

absl::StatusOr<std::unique_ptr<DeviceGraph>> Backend::EndCapture() {
  return absl::UnimplementedError(absl::StrCat(std::string(name()), " backend: no graph capture"));
}

}  // namespace alignserve
