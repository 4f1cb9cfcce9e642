// DequantizeRow and the fp16/bf16 conversions against gguf-py / numpy, on the
// fixtures written by tests/reference/make_quant_fixtures.py. Every value must
// be bitwise equal (NaNs: equal as "NaN with the same sign", because F16C and
// numpy may quiet a signalling NaN that the scalar code passes through).
#include "kernels/cpu/dequantize.h"

#include <bit>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "kernels/cpu/fp16.h"
#include "kernels/cpu/quant_blocks.h"
#include "tests/test_paths.h"

namespace alignserve {
namespace {

struct Record {
  uint32_t kind;
  uint32_t count;
  std::vector<uint8_t> in;
  std::vector<uint8_t> out;
};

constexpr uint32_t kF32ToF16 = 1000;
constexpr uint32_t kF32ToBf16 = 1001;

uint32_t ReadU32(const std::vector<uint8_t>& data, size_t* pos) {
  uint32_t v = 0;
  REQUIRE(*pos + 4 <= data.size());
  std::memcpy(&v, data.data() + *pos, 4);
  *pos += 4;
  return v;
}

std::vector<Record> LoadFixtures() {
  std::ifstream file(testing::SourcePath("tests/data/kernels/quant_fixtures.bin"),
                     std::ios::binary);
  REQUIRE(file.good());
  std::vector<uint8_t> data((std::istreambuf_iterator<char>(file)), {});
  REQUIRE(data.size() > 12);
  REQUIRE(std::memcmp(data.data(), "ASQF", 4) == 0);
  size_t pos = 4;
  REQUIRE(ReadU32(data, &pos) == 1);
  const uint32_t records = ReadU32(data, &pos);
  std::vector<Record> out;
  for (uint32_t i = 0; i < records; ++i) {
    Record r;
    r.kind = ReadU32(data, &pos);
    r.count = ReadU32(data, &pos);
    const uint32_t in_bytes = ReadU32(data, &pos);
    const uint32_t out_bytes = ReadU32(data, &pos);
    REQUIRE(pos + in_bytes + out_bytes <= data.size());
    r.in.assign(data.begin() + pos, data.begin() + pos + in_bytes);
    pos += in_bytes;
    r.out.assign(data.begin() + pos, data.begin() + pos + out_bytes);
    pos += out_bytes;
    out.push_back(std::move(r));
  }
  return out;
}

const std::vector<Record>& Fixtures() {
  static const std::vector<Record> records = LoadFixtures();
  return records;
}

const Record& FindRecord(uint32_t kind) {
  for (const Record& r : Fixtures()) {
    if (r.kind == kind) return r;
  }
  FAIL("no fixture record of kind " << kind);
  return Fixtures().front();
}

bool SameFloat(float a, float b) {
  if (std::isnan(a) || std::isnan(b))
    return std::isnan(a) && std::isnan(b) && std::signbit(a) == std::signbit(b);
  return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b);
}

TEST_CASE("DequantizeRow is bitwise equal to gguf-py for every supported type") {
  const DType types[] = {DType::kF32,  DType::kF16,  DType::kBF16, DType::kQ4_0, DType::kQ4_1,
                         DType::kQ5_0, DType::kQ5_1, DType::kQ8_0, DType::kQ2_K, DType::kQ3_K,
                         DType::kQ4_K, DType::kQ5_K, DType::kQ6_K};
  for (DType type : types) {
    INFO("type " << DTypeName(type));
    const Record& r = FindRecord(static_cast<uint32_t>(type));
    REQUIRE(r.in.size() == RowBytes(type, r.count));
    REQUIRE(r.out.size() == r.count * sizeof(float));
    std::vector<float> got(r.count, std::nanf(""));
    REQUIRE(DequantizeRow(type, r.in.data(), r.count, got.data()).ok());
    int mismatches = 0;
    for (uint32_t i = 0; i < r.count; ++i) {
      float want;
      std::memcpy(&want, r.out.data() + 4 * i, 4);
      if (!SameFloat(got[i], want)) {
        if (++mismatches <= 3) UNSCOPED_INFO("element " << i << ": " << got[i] << " vs " << want);
      }
    }
    CHECK(mismatches == 0);
  }
}

TEST_CASE("fp16 to f32 is exact for all 65536 bit patterns") {
  const Record& r = FindRecord(static_cast<uint32_t>(DType::kF16));
  REQUIRE(r.count == 65536);
  for (uint32_t h = 0; h < 65536; ++h) {
    float want;
    std::memcpy(&want, r.out.data() + 4 * h, 4);
    if (!SameFloat(Fp16ToF32(static_cast<uint16_t>(h)), want)) FAIL("fp16 bits " << h);
  }
}

TEST_CASE("f32 to fp16 rounds to nearest even like numpy, overflow to infinity") {
  const Record& r = FindRecord(kF32ToF16);
  for (uint32_t i = 0; i < r.count; ++i) {
    float x;
    uint16_t want;
    std::memcpy(&x, r.in.data() + 4 * i, 4);
    std::memcpy(&want, r.out.data() + 2 * i, 2);
    if (F32ToFp16(x) != want) FAIL("x = " << x << " got " << F32ToFp16(x) << " want " << want);
  }
  // Every finite and infinite binary16 value survives the round trip.
  for (uint32_t h = 0; h < 65536; ++h) {
    if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0) {
      CHECK(std::isnan(Fp16ToF32(F32ToFp16(Fp16ToF32(static_cast<uint16_t>(h))))));
      continue;
    }
    if (F32ToFp16(Fp16ToF32(static_cast<uint16_t>(h))) != h) FAIL("round trip of " << h);
  }
}

TEST_CASE("f32 to bf16 rounds to nearest even and quiets NaN like gguf-py") {
  const Record& r = FindRecord(kF32ToBf16);
  for (uint32_t i = 0; i < r.count; ++i) {
    float x;
    uint16_t want;
    std::memcpy(&x, r.in.data() + 4 * i, 4);
    std::memcpy(&want, r.out.data() + 2 * i, 2);
    if (F32ToBf16(x) != want) FAIL("x bits " << std::bit_cast<uint32_t>(x));
  }
}

TEST_CASE("block structs match the dtype table") {
  CHECK(sizeof(BlockQ4_0) == static_cast<size_t>(Info(DType::kQ4_0).block_bytes));
  CHECK(sizeof(BlockQ4_1) == static_cast<size_t>(Info(DType::kQ4_1).block_bytes));
  CHECK(sizeof(BlockQ5_0) == static_cast<size_t>(Info(DType::kQ5_0).block_bytes));
  CHECK(sizeof(BlockQ5_1) == static_cast<size_t>(Info(DType::kQ5_1).block_bytes));
  CHECK(sizeof(BlockQ8_0) == static_cast<size_t>(Info(DType::kQ8_0).block_bytes));
  CHECK(sizeof(BlockQ8_1) == static_cast<size_t>(Info(DType::kQ8_1).block_bytes));
  CHECK(sizeof(BlockQ2_K) == static_cast<size_t>(Info(DType::kQ2_K).block_bytes));
  CHECK(sizeof(BlockQ3_K) == static_cast<size_t>(Info(DType::kQ3_K).block_bytes));
  CHECK(sizeof(BlockQ4_K) == static_cast<size_t>(Info(DType::kQ4_K).block_bytes));
  CHECK(sizeof(BlockQ5_K) == static_cast<size_t>(Info(DType::kQ5_K).block_bytes));
  CHECK(sizeof(BlockQ6_K) == static_cast<size_t>(Info(DType::kQ6_K).block_bytes));
  CHECK(sizeof(BlockQ8_K) == static_cast<size_t>(Info(DType::kQ8_K).block_bytes));
}

TEST_CASE("DequantizeRow rejects unsupported types and partial blocks") {
  std::vector<uint8_t> src(1024);
  std::vector<float> dst(512);
  CHECK(DequantizeRow(DType::kQ8_K, src.data(), 256, dst.data()).code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(DequantizeRow(DType::kI8, src.data(), 16, dst.data()).code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(DequantizeRow(DType::kQ4_0, src.data(), 48, dst.data()).code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(DequantizeRow(DType::kQ6_K, src.data(), 128, dst.data()).code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(DequantizeRow(DType::kQ4_0, src.data(), 64, dst.data()).ok());
}

}  // namespace
}  // namespace alignserve
