// AVX512_VNNI integer kernels: the AVX-512 kernels of matmul_avx512_impl.h
// and matmul_kquant_avx512_impl.h with vpdpbusd / vpdpwssd summing the
// integer products. The whole file is compiled for VNNI; matmul.cc calls in
// only when the CPU has it. There is deliberately no AVX512_BF16 kernel:
// vdpbf16ps would round activations to bfloat16, and this backend is the
// exact reference other backends are checked against.
#pragma GCC target("avx512vnni")

// GCC 12's own AVX-512 headers trip -Wuninitialized (the deliberate
// self-initialized value in _mm512_undefined_*); the warning is about them.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "kernels/cpu/matmul_avx512_impl.h"

namespace alignserve {

TileKernel Avx512VnniTileKernel(DType w_type) {
  return IntegerTileKernel512</*kVnni=*/true>(w_type);
}

}  // namespace alignserve
