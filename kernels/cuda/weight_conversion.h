// Host-side conversion of weight tensors to bf16 for upload to the GPU.
// The CUDA backend multiplies bf16 weights only (fast path), so f32, f16 and
// GGUF block-quantized tensors (Q4_0 ... Q6_K) are dequantized on the host
// with the CPU reference (DequantizeRow, bitwise gguf-py) and rounded to
// bf16 to nearest even (F32ToBf16) once, at load time.
// Plain C++ (no CUDA headers): testable on any machine.
// Thread-safety: pure functions.
#ifndef ALIGNSERVE_KERNELS_CUDA_WEIGHT_CONVERSION_H_
#define ALIGNSERVE_KERNELS_CUDA_WEIGHT_CONVERSION_H_

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "kernels/tensor.h"

namespace alignserve::cuda {

// Whether ConvertRowsToBf16 accepts `type`.
bool ConvertsToBf16(DType type);

// Writes rows [row_begin, row_begin + row_count) of the host tensor `host`
// (seen as [rows, cols]) to dst as bf16 bits, row-major, dst.size() ==
// row_count * cols. InvalidArgument for unsupported types or bad ranges.
absl::Status ConvertRowsToBf16(const Tensor& host, int64_t row_begin, int64_t row_count,
                               std::span<uint16_t> dst);

}  // namespace alignserve::cuda

#endif  // ALIGNSERVE_KERNELS_CUDA_WEIGHT_CONVERSION_H_
