#include "kernels/cuda/weight_conversion.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/dequantize.h"
#include "kernels/cpu/fp16.h"
#include "kernels/status_macros.h"

namespace alignserve::cuda {

bool ConvertsToBf16(DType type) { return type == DType::kBF16 || DequantizeSupports(type); }

absl::Status ConvertRowsToBf16(const Tensor& host, int64_t row_begin, int64_t row_count,
                               std::span<uint16_t> dst) {
  const int64_t cols = host.cols();
  if (!ConvertsToBf16(host.dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot convert ", std::string(DTypeName(host.dtype)), " weights to bf16"));
  }
  if (row_begin < 0 || row_count < 0 || row_begin + row_count > host.rows() ||
      dst.size() != static_cast<size_t>(row_count * cols)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bf16 conversion of rows [", row_begin, ", ", row_begin + row_count, ") of ",
                     host.ShapeString(), " into ", dst.size(), " values"));
  }
  const char* src = static_cast<const char*>(host.data) + row_begin * host.row_bytes();
  if (host.dtype == DType::kBF16) {
    const auto* bits = reinterpret_cast<const uint16_t*>(src);
    std::copy(bits, bits + dst.size(), dst.begin());
    return absl::OkStatus();
  }
  std::vector<float> row(cols);
  for (int64_t r = 0; r < row_count; ++r) {
    RETURN_IF_ERROR(DequantizeRow(host.dtype, src + r * host.row_bytes(), cols, row.data()));
    uint16_t* out = dst.data() + r * cols;
    for (int64_t i = 0; i < cols; ++i) out[i] = F32ToBf16(row[i]);
  }
  return absl::OkStatus();
}

}  // namespace alignserve::cuda
