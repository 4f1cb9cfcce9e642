// One weight of a shared-input matrix product (MatMulExactShared,
// MatMulI16Shared): n rows of RowBytes(w_type, k) bytes and the output
// y [m, n] (row stride n). A layer's Q/K/V projections, or its gate/up
// projections, are parts of one product: their columns are split over the
// pool together and the input is prepared once.
// Thread-safety: plain data.
#ifndef ALIGNSERVE_KERNELS_CPU_MATMUL_PART_H_
#define ALIGNSERVE_KERNELS_CPU_MATMUL_PART_H_

#include <cstdint>

#include "kernels/dtype.h"

namespace alignserve {

struct MatMulPart {
  const void* w;
  DType w_type;
  int64_t n;
  float* y;
};

// The most weights one shared product takes.
inline constexpr int kMaxSharedParts = 4;

}  // namespace alignserve

#endif  // ALIGNSERVE_KERNELS_CPU_MATMUL_PART_H_
