// AVX-512 F/BW/VL/DQ tile kernels (no VNNI, no BF16 instructions); see
// matmul_avx512_impl.h.
// GCC 12's own AVX-512 headers trip -Wuninitialized (the deliberate
// self-initialized value in _mm512_undefined_*); the warning is about them.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "kernels/cpu/matmul_avx512_impl.h"

namespace alignserve {

TileKernel Avx512TileKernel(DType w_type) {
  const ActivationFormat f32 = ActivationFormat::kF32;
  switch (w_type) {
    case DType::kF32:
      return {&TileByRows<Float512<FloatKind512::kF32>::K, kMaxProducts512>, f32};
    case DType::kF16:
      return {&TileByRows<Float512<FloatKind512::kF16>::K, kMaxProducts512>, f32};
    case DType::kBF16:
      return {&TileByRows<Float512<FloatKind512::kBf16>::K, kMaxProducts512>, f32};
    default:
      return IntegerTileKernel512</*kVnni=*/false>(w_type);
  }
}

}  // namespace alignserve
