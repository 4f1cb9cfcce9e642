#include "kernels/dtype.h"

#include <cstdlib>
#include <cstdio>

namespace alignserve {
namespace {

struct Entry {
  DType type;
  DTypeInfo info;
};

// Block sizes and byte counts follow ggml's block_* structs.
constexpr Entry kTable[] = {
    {DType::kF32, {"F32", 1, 4, false}},
    {DType::kF16, {"F16", 1, 2, false}},
    {DType::kBF16, {"BF16", 1, 2, false}},
    {DType::kF64, {"F64", 1, 8, false}},
    {DType::kI8, {"I8", 1, 1, false}},
    {DType::kI16, {"I16", 1, 2, false}},
    {DType::kI32, {"I32", 1, 4, false}},
    {DType::kI64, {"I64", 1, 8, false}},
    {DType::kQ4_0, {"Q4_0", 32, 18, true}},
    {DType::kQ4_1, {"Q4_1", 32, 20, true}},
    {DType::kQ5_0, {"Q5_0", 32, 22, true}},
    {DType::kQ5_1, {"Q5_1", 32, 24, true}},
    {DType::kQ8_0, {"Q8_0", 32, 34, true}},
    {DType::kQ8_1, {"Q8_1", 32, 36, true}},
    {DType::kQ2_K, {"Q2_K", 256, 84, true}},
    {DType::kQ3_K, {"Q3_K", 256, 110, true}},
    {DType::kQ4_K, {"Q4_K", 256, 144, true}},
    {DType::kQ5_K, {"Q5_K", 256, 176, true}},
    {DType::kQ6_K, {"Q6_K", 256, 210, true}},
    {DType::kQ8_K, {"Q8_K", 256, 292, true}},
};

}  // namespace

std::optional<DTypeInfo> LookupDType(uint32_t ggml_type) {
  for (const Entry& e : kTable) {
    if (static_cast<uint32_t>(e.type) == ggml_type) return e.info;
  }
  return std::nullopt;
}

DTypeInfo Info(DType t) {
  std::optional<DTypeInfo> info = LookupDType(static_cast<uint32_t>(t));
  if (!info) {
    std::fprintf(stderr, "alignserve: unknown dtype id %u\n", static_cast<unsigned>(t));
    std::abort();
  }
  return *info;
}

}  // namespace alignserve
