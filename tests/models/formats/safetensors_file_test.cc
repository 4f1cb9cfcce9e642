// SafetensorsFile and SafetensorsCheckpoint against files written by the
// reference `safetensors` package and by the in-test writer, valid and corrupt.
#include "models/formats/safetensors_file.h"

#include <catch2/catch.hpp>
#include <cstring>

#include "tests/models/formats/format_test_writers.h"
#include "tests/test_paths.h"

namespace alignserve {
namespace {

using testing::BuildSafetensors;
using testing::PatternBytes;
using testing::RawSafetensors;
using testing::ReadFileBytes;
using testing::SmallSafetensors;
using testing::TempDir;

bool Contains(const absl::Status& status, const std::string& text) {
  return std::string(status.message()).find(text) != std::string::npos;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> ParseBytes(const std::string& bytes) {
  auto file = MappedFile::FromBytes("mem.safetensors", bytes);
  if (!file.ok()) return file.status();
  return SafetensorsFile::Parse(*std::move(file));
}

void ExpectCorrupt(const std::string& bytes, const std::string& field) {
  auto st = ParseBytes(bytes);
  REQUIRE_FALSE(st.ok());
  INFO(st.status().ToString());
  CHECK(st.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(Contains(st.status(), "mem.safetensors: "));
  CHECK(Contains(st.status(), field));
}

// The F32 value at index i of a tensor's bytes.
float F32At(const SafetensorsTensor& t, size_t i) {
  float v;
  std::memcpy(&v, t.data + 4 * i, 4);
  return v;
}

TEST_CASE("a file from the reference safetensors writer reads back shapes, dtypes and data") {
  auto st = SafetensorsFile::Open(testing::SourcePath("tests/data/formats/reference.safetensors"));
  REQUIRE(st.ok());
  const SafetensorsFile& f = **st;
  CHECK(f.metadata().at("format") == "pt");
  REQUIRE(f.tensors().size() == 5);
  const SafetensorsTensor* w = f.FindTensor("w.f32");
  REQUIRE(w != nullptr);
  CHECK(w->shape == std::vector<int64_t>{2, 3});  // PyTorch order, outermost first
  CHECK(w->type == DType::kF32);
  CHECK(w->elements == 6);
  CHECK(w->bytes == 24);
  for (int i = 0; i < 6; ++i) CHECK(F32At(*w, i) == static_cast<float>(i));
  const SafetensorsTensor* bf16 = f.FindTensor("w.bf16");
  REQUIRE(bf16 != nullptr);
  CHECK(bf16->type == DType::kBF16);
  CHECK(bf16->shape == std::vector<int64_t>{2, 1});
  uint16_t first;
  std::memcpy(&first, bf16->data, 2);
  CHECK(first == 0x4040);  // bf16(3.0)
  const SafetensorsTensor* f16 = f.FindTensor("w.f16");
  REQUIRE(f16 != nullptr);
  std::memcpy(&first, f16->data, 2);
  CHECK(first == 0x3C00);  // f16(1.0)
  const SafetensorsTensor* i64 = f.FindTensor("w.i64");
  REQUIRE(i64 != nullptr);
  CHECK(i64->type == DType::kI64);
  int64_t second;
  std::memcpy(&second, i64->data + 8, 8);
  CHECK(second == -9);
  const SafetensorsTensor* empty = f.FindTensor("w.empty");
  REQUIRE(empty != nullptr);
  CHECK(empty->shape == std::vector<int64_t>{0, 4});
  CHECK(empty->bytes == 0);
  CHECK(empty->elements == 0);
  CHECK(f.FindTensor("w.none") == nullptr);
  for (const SafetensorsTensor& t : f.tensors()) CHECK(f.file().Contains(t.data, t.bytes));
}

TEST_CASE("a sharded checkpoint from the reference writer finds every tensor in its shard") {
  auto ckpt = SafetensorsCheckpoint::Open(testing::SourcePath("tests/data/formats/sharded"));
  REQUIRE(ckpt.ok());
  const SafetensorsCheckpoint& c = **ckpt;
  CHECK(c.files().size() == 2);
  CHECK(c.num_tensors() == 3);
  CHECK(c.TensorNames() == std::vector<std::string_view>{"a.weight", "b.weight", "c.weight"});
  const SafetensorsTensor* a = c.FindTensor("a.weight");
  REQUIRE(a != nullptr);
  CHECK(a->shape == std::vector<int64_t>{2, 2});
  CHECK(F32At(*a, 3) == 3.0f);
  const SafetensorsTensor* b = c.FindTensor("b.weight");
  REQUIRE(b != nullptr);
  CHECK(F32At(*b, 0) == 5.0f);
  const SafetensorsTensor* cw = c.FindTensor("c.weight");
  REQUIRE(cw != nullptr);
  CHECK(cw->type == DType::kBF16);
  CHECK(c.files()[1]->file().Contains(cw->data, cw->bytes));
  CHECK(c.FindTensor("d.weight") == nullptr);
}

TEST_CASE("a single-file checkpoint folder opens model.safetensors") {
  TempDir dir;
  dir.Write("model.safetensors", SmallSafetensors());
  auto ckpt = SafetensorsCheckpoint::Open(dir.path());
  REQUIRE(ckpt.ok());
  CHECK((*ckpt)->num_tensors() == 3);
  const SafetensorsTensor* a = (*ckpt)->FindTensor("a");
  REQUIRE(a != nullptr);
  CHECK(std::memcmp(a->data, PatternBytes(16, 1).data(), 16) == 0);
  CHECK((*ckpt)->FindTensor("c")->shape == std::vector<int64_t>{1, 2});
}

TEST_CASE("checkpoint folder errors name the folder, the index and the shard") {
  TempDir dir;
  auto none = SafetensorsCheckpoint::Open(dir.path());
  CHECK(none.status().code() == absl::StatusCode::kNotFound);
  CHECK(Contains(none.status(), "has neither model.safetensors.index.json nor model.safetensors"));
  CHECK_FALSE(SafetensorsCheckpoint::Open(dir.path() + "/missing").ok());

  std::string shard = BuildSafetensors({{"x", "F32", {1}, PatternBytes(4)}});
  dir.Write("s1.safetensors", shard);
  dir.Write("model.safetensors.index.json",
            R"({"weight_map": {"x": "s1.safetensors", "y": "s1.safetensors"}})");
  auto missing_tensor = SafetensorsCheckpoint::Open(dir.path());
  CHECK(Contains(missing_tensor.status(),
                 "model.safetensors.index.json: tensor 'y' is mapped to shard 's1.safetensors'"));
  dir.Write("model.safetensors.index.json", R"({"weight_map": {"x": "s2.safetensors"}})");
  auto missing_shard = SafetensorsCheckpoint::Open(dir.path());
  CHECK(missing_shard.status().code() == absl::StatusCode::kNotFound);
  CHECK(Contains(missing_shard.status(), "shard 's2.safetensors'"));
  dir.Write("model.safetensors.index.json", R"({"weight_map": {"x": "../s1.safetensors"}})");
  CHECK(Contains(SafetensorsCheckpoint::Open(dir.path()).status(), "not the file name of a shard"));
  dir.Write("model.safetensors.index.json", R"({"weight_map": {"x": 3}})");
  CHECK(Contains(SafetensorsCheckpoint::Open(dir.path()).status(), "'weight_map' entry 'x' is 3"));
  dir.Write("model.safetensors.index.json", R"({"metadata": {}})");
  CHECK(Contains(SafetensorsCheckpoint::Open(dir.path()).status(), "'weight_map' is missing"));
  dir.Write("model.safetensors.index.json", R"({"weight_map": {}})");
  CHECK(Contains(SafetensorsCheckpoint::Open(dir.path()).status(), "names no tensors"));
  dir.Write("model.safetensors.index.json", "{\"weight_map\": ");
  CHECK(Contains(SafetensorsCheckpoint::Open(dir.path()).status(), "not valid JSON"));
  dir.Write("model.safetensors.index.json", R"({"weight_map": {"x": "s1.safetensors"}})");
  dir.Write("s1.safetensors", shard.substr(0, shard.size() - 1));
  auto corrupt_shard = SafetensorsCheckpoint::Open(dir.path());
  CHECK(Contains(corrupt_shard.status(), "shard 's1.safetensors': "));
  CHECK(Contains(corrupt_shard.status(), "s1.safetensors: tensor 'x': data_offsets [0, 4)"));
}

TEST_CASE("every strict prefix of a valid safetensors file fails to open with an error naming it") {
  std::string bytes = SmallSafetensors();
  REQUIRE(ParseBytes(bytes).ok());
  TempDir dir;
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::string path = dir.Write("prefix.safetensors", bytes.substr(0, n));
    auto st = SafetensorsFile::Open(path);
    INFO("prefix length " << n << ": " << st.status().ToString());
    REQUIRE_FALSE(st.ok());
    CHECK(Contains(st.status(), path + ": "));
  }
}

TEST_CASE("corrupt safetensors headers are errors naming the file and the field") {
  std::string data = PatternBytes(16);
  ExpectCorrupt(std::string(5, '\0'), "header length at offset 0 needs 8 bytes");
  ExpectCorrupt(testing::Le<uint64_t>(200'000'000) + "{}", "exceeds the limit of 100000000");
  ExpectCorrupt(testing::Le<uint64_t>(100) + "{}", "header length 100 exceeds the 2 bytes");
  ExpectCorrupt(RawSafetensors("{\"a\":", data), "header: not valid JSON");
  ExpectCorrupt(RawSafetensors("[1, 2]", data), "header: expected a JSON object, found array");
  ExpectCorrupt(RawSafetensors(std::string(100, '[') + std::string(100, ']'), data),
                "header: JSON nests 100 levels deep");
  ExpectCorrupt(RawSafetensors("{\"a\": {\"dtype\": \"F32\", \"shape\": [4]}}", data),
                "tensor 'a': 'data_offsets' is not an array of two offsets");
  ExpectCorrupt(RawSafetensors(R"({"a": {"shape": [4], "data_offsets": [0, 16]}})", data),
                "tensor 'a': missing string 'dtype'");
  ExpectCorrupt(
      RawSafetensors(R"({"a": {"dtype": "BOOL", "shape": [4], "data_offsets": [0, 4]}})", data),
      "tensor 'a': dtype 'BOOL' is not supported");
  ExpectCorrupt(
      RawSafetensors(R"({"a": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}})", data),
      "tensor 'a': shape[0] is -4");
  ExpectCorrupt(
      RawSafetensors(R"({"a": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}})", data),
      "tensor 'a': shape[0] is 2.0");
  ExpectCorrupt(
      RawSafetensors(R"({"a": {"dtype": "F32", "shape": "4", "data_offsets": [0, 16]}})", data),
      "tensor 'a': 'shape' is not an array");
  ExpectCorrupt(
      RawSafetensors(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [8, 4]}})", data),
      "tensor 'a': data_offsets [8, 4) are not a range inside the data buffer of 16");
  ExpectCorrupt(
      RawSafetensors(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [16, 32]}})", data),
      "tensor 'a': data_offsets [16, 32) are not a range");
  ExpectCorrupt(
      RawSafetensors(R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}})", data),
      "tensor 'a': data_offsets [0, 16) hold 16 bytes but shape [3] of F32 needs 3 x 4");
  ExpectCorrupt(
      RawSafetensors(
          R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 16]}})",
          data),
      "tensor 'a': element count of shape");
  ExpectCorrupt(
      RawSafetensors(
          R"({"a": {"dtype": "I64", "shape": [2305843009213693952], "data_offsets": [0, 16]}})",
          data),
      "tensor 'a': data_offsets [0, 16) hold 16 bytes");
  ExpectCorrupt(RawSafetensors(R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]},)"
                               R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})",
                               data),
                "tensor 'b': data_offsets [8, 16) overlap tensor 'a' at [0, 12)");
  ExpectCorrupt(RawSafetensors(R"({"__metadata__": {"n": 3}})", data),
                "'__metadata__' value 'n' is number");
  ExpectCorrupt(RawSafetensors(R"({"__metadata__": [1]})", data),
                "'__metadata__' is not an object");
  ExpectCorrupt(RawSafetensors(R"({"a": 5})", data), "tensor 'a': entry is number, not an object");
}

TEST_CASE("empty tensors, scalars and padded headers are valid") {
  std::string header = R"({"s": {"dtype": "F64", "shape": [], "data_offsets": [0, 8]},)"
                       R"( "e": {"dtype": "I32", "shape": [3, 0], "data_offsets": [4, 4]}}    )";
  auto st = ParseBytes(RawSafetensors(header, PatternBytes(8)));
  REQUIRE(st.ok());
  CHECK((*st)->FindTensor("s")->elements == 1);
  CHECK((*st)->FindTensor("s")->shape.empty());
  CHECK((*st)->FindTensor("e")->bytes == 0);
  CHECK((*st)->data_offset() == 8 + header.size());
  auto no_tensors = ParseBytes(RawSafetensors("{}", ""));
  REQUIRE(no_tensors.ok());
  CHECK((*no_tensors)->tensors().empty());
}

}  // namespace
}  // namespace alignserve
