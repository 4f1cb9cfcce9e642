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

absl::Status Backend::MatMulShared(const Tensor& x, std::span<const MatMulTarget> targets) {
  for (const MatMulTarget& t : targets) RETURN_IF_ERROR(MatMul(x, *t.w, t.bias, *t.y));
  return absl::OkStatus();
}

absl::Status Backend::SetKvCacheDtype(DType dtype) {
  if (!SupportsKvCacheDtype(dtype)) {
    std::string supported;
    for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
      if (SupportsKvCacheDtype(t)) {
        absl::StrAppend(&supported, supported.empty() ? "" : ", ", std::string(DTypeName(t)));
      }
    }
    return absl::InvalidArgumentError(
        absl::StrCat("the ", std::string(name()), " backend cannot keep its KV cache in ",
                     std::string(DTypeName(dtype)), "; it takes ", supported));
  }
  kv_cache_dtype_ = dtype;
  return absl::OkStatus();
}

absl::Status Backend::RopeAndWriteKv(const DeviceBatch& batch, const RopeTable& rope, int head_dim,
                                     Tensor& q, Tensor& k, const Tensor& v, KvCache& cache,
                                     int layer) {
  if (absl::Status s = Rope(batch, rope, head_dim, q, k); !s.ok()) return s;
  return WriteKv(batch, k, v, cache, layer);
}

absl::Status Backend::SampleRows(const Tensor&, std::span<const DeviceSamplingRow>,
                                 std::span<const LogitAdjustment>, std::span<DeviceSampleResult>) {
  return absl::UnimplementedError(
      absl::StrCat(std::string(name()), " backend: no device sampling (sample on the host)"));
}

absl::Status Backend::BeginCapture() {
  return absl::UnimplementedError(absl::StrCat(std::string(name()), " backend: no graph capture"));
}

absl::StatusOr<std::unique_ptr<DeviceGraph>> Backend::EndCapture() {
  return absl::UnimplementedError(absl::StrCat(std::string(name()), " backend: no graph capture"));
}

}  // namespace alignserve
