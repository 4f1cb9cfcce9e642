// Scalar reference dequantization of one row of a GGUF tensor to float.
// The arithmetic follows gguf-py's numpy dequantizers operation for operation
// (same products, same order, no fused multiply-add), so results are bitwise
// equal to theirs; tests/kernels/dequantize_test.cc checks that on fixtures.
// It is the oracle for the matmul kernels and the path for loading tensors
// that a kernel cannot consume directly (e.g. embeddings).
// Thread-safety: pure function.
#ifndef ALIGNSERVE_KERNELS_CPU_DEQUANTIZE_H_
#define ALIGNSERVE_KERNELS_CPU_DEQUANTIZE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/dtype.h"

namespace alignserve {

// Whether DequantizeRow handles `type`.
bool DequantizeSupports(DType type);

// Writes n floats to dst from a row of n elements of `type` at src
// (RowBytes(type, n) bytes). Supports F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1,
// Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K. InvalidArgument for other types or n
// not a multiple of the block size.
absl::Status DequantizeRow(DType type, const void* src, int64_t n, float* dst);

}  // namespace alignserve

#endif  // ALIGNSERVE_KERNELS_CPU_DEQUANTIZE_H_
