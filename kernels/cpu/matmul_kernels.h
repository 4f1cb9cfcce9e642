// Internal to the CPU matmul: the per-ISA tile kernels and how matmul.cc
// finds them. A tile kernel computes a small block of the output,
//   y[r * ldy + c] = dot(activation row row0 + r, weight row c)
// for r < rows <= kMaxTileRows and c < cols <= kMaxTileCols, reading each
// weight block once for all `rows` activation rows (the prefill reuse).
// Weight row c starts at w + c * w_stride. Kernels for one weight type at
// different ISA levels compute the same integer block sums; only the order
// of the float accumulation differs.
// Thread-safety: kernels are pure functions of their arguments.
#ifndef ALIGNSERVE_KERNELS_CPU_MATMUL_KERNELS_H_
#define ALIGNSERVE_KERNELS_CPU_MATMUL_KERNELS_H_

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/quantize_activations.h"
#include "kernels/dtype.h"

namespace alignserve {

inline constexpr int kMaxTileRows = 4;
inline constexpr int kMaxTileCols = 4;

using TileFn = void (*)(const PreparedActivations& a, int64_t row0, int rows, const uint8_t* w,
                        size_t w_stride, int cols, float* y, int64_t ldy);

struct TileKernel {
  TileFn fn = nullptr;  // null: no kernel for this type at this level
  ActivationFormat format = ActivationFormat::kF32;
};

// The activation format a weight type's integer kernels expect (kF32 for the
// float types).
ActivationFormat QuantizedActivationFormat(DType w_type);

// Portable C++; handles every type DequantizeRow handles.
TileKernel ScalarTileKernel(DType w_type);
// AVX2 + FMA + F16C (matmul_avx2.cc; Q4_K/Q5_K/Q6_K in matmul_kquant_avx2.cc).
TileKernel Avx2TileKernel(DType w_type);
TileKernel Avx2KQuantTileKernel(DType w_type);
// AVX-512 F/BW/VL/DQ (matmul_avx512.cc).
TileKernel Avx512TileKernel(DType w_type);
// AVX512_VNNI integer kernels (matmul_ext_avx512.cc); null for float types,
// which use the Avx512TileKernel ones. Call only when the CPU has VNNI.
TileKernel Avx512VnniTileKernel(DType w_type);

}  // namespace alignserve

#endif  // ALIGNSERVE_KERNELS_CPU_MATMUL_KERNELS_H_
