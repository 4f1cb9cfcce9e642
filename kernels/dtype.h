// Element types of tensors: plain floats, and the block-quantized weight
// formats of GGUF (ggml). A quantized row of `n` elements is stored as
// n / BlockElems() blocks of BlockBytes() bytes each; the layouts are ggml's
// (kernels/cpu/quant_blocks.h spells them out).
// Thread-safety: plain values, freely shared.
#ifndef ALIGNSERVE_KERNELS_DTYPE_H_
#define ALIGNSERVE_KERNELS_DTYPE_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace alignserve {

// Values are ggml's type ids, so GGUF tensor infos map one to one.
enum class DType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kBF16 = 30,
};

struct DTypeInfo {
  std::string_view name;
  int block_elems;   // elements per block (1 for plain types)
  int block_bytes;   // bytes per block
  bool quantized;
};

// Describes a supported type; nullopt for ids this build does not know.
std::optional<DTypeInfo> LookupDType(uint32_t ggml_type);
DTypeInfo Info(DType t);  // CHECKs that t is known.

inline std::string_view DTypeName(DType t) { return Info(t).name; }

// Bytes of a row of `elems` elements; elems must be a multiple of the block.
inline size_t RowBytes(DType t, int64_t elems) {
  DTypeInfo info = Info(t);
  return static_cast<size_t>(elems / info.block_elems) * info.block_bytes;
}

}  // namespace alignserve

#endif  // ALIGNSERVE_KERNELS_DTYPE_H_
