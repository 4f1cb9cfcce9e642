#include "kernels/dtype.h"

#include <catch2/catch.hpp>

namespace alignserve {
namespace {

TEST_CASE("ggml type ids map to block layouts of the right size") {
  CHECK(RowBytes(DType::kQ4_1, 64) == 40);
  CHECK(RowBytes(DType::kQ8_0, 32) == 34);
  CHECK(RowBytes(DType::kQ6_K, 512) == 420);
  CHECK(RowBytes(DType::kF16, 7) == 14);
  CHECK_FALSE(LookupDType(99).has_value());
  CHECK(LookupDType(30)->name == "BF16");
}

}  // namespace
}  // namespace alignserve
