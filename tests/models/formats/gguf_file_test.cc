// GgufFile against the real default model, against a file written by the
// reference writer (gguf-py), and against in-test files, valid and corrupt.
#include "models/formats/gguf_file.h"

#include <catch2/catch.hpp>
#include <cstring>
#include <map>

#include "tests/models/formats/format_test_writers.h"
#include "tests/test_paths.h"

namespace alignserve {
namespace {

using testing::GgufArray;
using testing::GgufStr;
using testing::GgufTensorSpec;
using testing::GgufWriter;
using testing::Le;
using testing::PatternBytes;
using testing::SmallGguf;
using testing::TempDir;

bool Contains(const absl::Status& status, const std::string& text) {
  return std::string(status.message()).find(text) != std::string::npos;
}

// Parses bytes as an in-memory file named `name`.
absl::StatusOr<std::unique_ptr<GgufFile>> ParseBytes(const std::string& bytes,
                                                     const std::string& name = "mem.gguf") {
  auto file = MappedFile::FromBytes(name, bytes);
  if (!file.ok()) return file.status();
  return GgufFile::Parse(*std::move(file));
}

// Expects Parse to fail with InvalidArgument naming the file and `field`.
void ExpectCorrupt(const std::string& bytes, const std::string& field) {
  absl::StatusOr<std::unique_ptr<GgufFile>> gguf = ParseBytes(bytes, "corrupt.gguf");
  REQUIRE_FALSE(gguf.ok());
  INFO(gguf.status().ToString());
  CHECK(gguf.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(Contains(gguf.status(), "corrupt.gguf: "));
  CHECK(Contains(gguf.status(), field));
}

TEST_CASE("the default model's header, metadata and tensor table read as gguf-py reads them") {
  auto gguf = GgufFile::Open(testing::DefaultModelPath());
  REQUIRE(gguf.ok());
  const GgufFile& f = **gguf;
  CHECK(f.version() == 3);
  CHECK(f.alignment() == 32);
  CHECK(f.data_section_offset() == 1785664);  // gguf-py: token_embd data_offset
  REQUIRE(f.tensors().size() == 272);
  std::map<DType, int> by_type;
  for (const GgufTensor& t : f.tensors()) ++by_type[t.type];
  CHECK(by_type[DType::kQ4_1] == 210);
  CHECK(by_type[DType::kF32] == 61);
  CHECK(by_type[DType::kQ8_0] == 1);

  CHECK(f.GetInt("llama.block_count").value() == 30);
  CHECK(f.GetInt("llama.embedding_length").value() == 576);
  CHECK(f.GetFloat("llama.rope.freq_base").value() == 100000.0);
  CHECK(f.GetFloat("llama.attention.layer_norm_rms_epsilon").value() == Approx(1e-5));
  CHECK(f.GetBool("tokenizer.ggml.add_bos_token").value() == false);
  CHECK(f.GetString("tokenizer.ggml.model").value() == "gpt2");
  CHECK(f.GetString("tokenizer.ggml.pre").value() == "smollm");
  auto tokens = f.GetStringArray("tokenizer.ggml.tokens");
  REQUIRE(tokens.ok());
  REQUIRE(tokens->size() == 49152);
  CHECK((*tokens)[0] == "<|endoftext|>");
  CHECK((*tokens)[1] == "<|im_start|>");
  CHECK((*tokens)[2] == "<|im_end|>");
  CHECK(tokens->back() == "ectable");
  auto merges = f.GetStringArray("tokenizer.ggml.merges");
  REQUIRE(merges.ok());
  CHECK(merges->size() == 48900);
  CHECK((*merges)[0] == "\xC4\xA0 t");  // "Ġ t"
  CHECK(f.GetIntArray("tokenizer.ggml.token_type").value().size() == 49152);
  auto chat_template = f.GetString("tokenizer.chat_template");
  REQUIRE(chat_template.ok());
  CHECK(chat_template->rfind("{% for message in messages %}", 0) == 0);

  const GgufTensor* embd = f.FindTensor("token_embd.weight");
  REQUIRE(embd != nullptr);
  CHECK(embd->dims == std::vector<int64_t>{576, 49152});
  CHECK(embd->type == DType::kQ8_0);
  CHECK(embd->bytes == 30081024);
  CHECK(embd->elements == 576 * 49152);
  CHECK(embd->data == f.file().data() + 1785664);
  const GgufTensor* down = f.FindTensor("blk.0.ffn_down.weight");
  REQUIRE(down != nullptr);
  CHECK(down->dims == std::vector<int64_t>{1536, 576});
  CHECK(down->type == DType::kQ4_1);
  CHECK(down->data == f.file().data() + 31868992);
  CHECK(down->bytes == 552960);
  CHECK(f.FindTensor("no.such.tensor") == nullptr);
  for (const GgufTensor& t : f.tensors()) {
    CHECK(f.file().Contains(t.data, t.bytes));
    CHECK(t.bytes == RowBytes(t.type, t.dims[0]) * static_cast<size_t>(t.elements / t.dims[0]));
  }
}

TEST_CASE("metadata accessors name the file and key on a missing key or a wrong type") {
  auto gguf = GgufFile::Open(testing::DefaultModelPath());
  REQUIRE(gguf.ok());
  const GgufFile& f = **gguf;
  auto missing = f.GetInt("llama.no_such_key");
  CHECK(missing.status().code() == absl::StatusCode::kNotFound);
  CHECK(Contains(missing.status(), testing::DefaultModelPath()));
  CHECK(Contains(missing.status(), "'llama.no_such_key'"));
  auto wrong = f.GetString("llama.block_count");
  CHECK(wrong.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(Contains(wrong.status(), "'llama.block_count' is u32 30, expected a string"));
  CHECK_FALSE(f.GetInt("tokenizer.ggml.tokens").ok());
  CHECK_FALSE(f.GetFloatArray("tokenizer.ggml.tokens").ok());
  CHECK_FALSE(f.GetStringArray("tokenizer.ggml.token_type").ok());
  CHECK(f.GetIntOr("llama.no_such_key", 7).value() == 7);
  CHECK(f.GetIntOr("llama.block_count", 7).value() == 30);
  CHECK_FALSE(f.GetIntOr("tokenizer.ggml.model", 7).ok());  // present but wrong: no silent default
  CHECK(f.GetStringOr("general.nothing", "x").value() == "x");
  CHECK(f.GetBoolOr("general.nothing", true).value() == true);
  CHECK(f.GetFloatOr("general.nothing", 2.5).value() == 2.5);
}

TEST_CASE(
    "a file from gguf-py's writer reads back every value type, nested arrays and alignment 64") {
  auto gguf = GgufFile::Open(testing::SourcePath("tests/data/formats/reference_v3.gguf"));
  REQUIRE(gguf.ok());
  const GgufFile& f = **gguf;
  CHECK(f.version() == 3);
  CHECK(f.alignment() == 64);
  CHECK(f.GetString("general.architecture").value() == "testarch");
  CHECK(f.GetInt("t.u8").value() == 255);
  CHECK(f.GetInt("t.i8").value() == -128);
  CHECK(f.GetInt("t.u16").value() == 65535);
  CHECK(f.GetInt("t.i16").value() == -32768);
  CHECK(f.GetInt("t.u32").value() == 4294967295LL);
  CHECK(f.GetInt("t.i32").value() == -2147483648LL);
  CHECK(f.GetInt("t.i64").value() == INT64_MIN);
  auto big = f.GetInt("t.u64");  // 2^63 + 5 does not fit in int64
  CHECK(big.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(Contains(big.status(), "fits in int64"));
  CHECK(f.Find("t.u64")->type() == GgufType::kUint64);
  CHECK(f.GetFloat("t.u64").value() == 9223372036854775813.0);
  CHECK(f.GetFloat("t.f32").value() == 1.5);
  CHECK(f.GetFloat("t.f64").value() == -2.25);
  CHECK(f.GetFloat("t.i8").value() == -128.0);
  CHECK(f.GetBool("t.bool").value() == true);
  CHECK(f.GetString("t.string").value() == "h\xC3\xA9llo \xE4\xB8\x96\xE7\x95\x8C");
  CHECK(f.GetIntArray("t.int_array").value() == std::vector<int64_t>{1, -2, 3});
  CHECK(f.GetFloatArray("t.float_array").value() == std::vector<float>{0.5f, -1.25f});
  CHECK(f.GetFloatArray("t.int_array").value() == std::vector<float>{1.f, -2.f, 3.f});
  CHECK(f.GetStringArray("t.string_array").value() ==
        std::vector<std::string_view>{"a", "", "\xC3\xA9t\xC3\xA9"});
  const GgufValue* bools = f.Find("t.bool_array");
  REQUIRE(bools != nullptr);
  CHECK(bools->size() == 3);
  CHECK(*bools->BoolAt(0));
  CHECK_FALSE(*bools->BoolAt(1));
  CHECK_FALSE(bools->BoolAt(3).has_value());
  const GgufValue* nested = f.Find("t.nested");
  REQUIRE(nested != nullptr);
  REQUIRE(nested->element_type() == GgufType::kArray);
  REQUIRE(nested->arrays().size() == 2);
  CHECK(nested->arrays()[0].IntAt(1).value() == 2);
  CHECK(nested->arrays()[1].size() == 1);
  CHECK(nested->arrays()[1].IntAt(0).value() == 3);
  CHECK_FALSE(f.GetIntArray("t.nested").ok());

  CHECK(f.data_section_offset() == 832);
  REQUIRE(f.tensors().size() == 4);
  const GgufTensor* f32 = f.FindTensor("f32");
  REQUIRE(f32 != nullptr);
  CHECK(f32->dims == std::vector<int64_t>{3, 2});
  float values[6];
  std::memcpy(values, f32->data, sizeof(values));
  for (int i = 0; i < 6; ++i) CHECK(values[i] == static_cast<float>(i));
  const GgufTensor* q8 = f.FindTensor("q8");
  REQUIRE(q8 != nullptr);
  CHECK(q8->type == DType::kQ8_0);
  CHECK(q8->dims == std::vector<int64_t>{32, 2});
  CHECK(q8->offset == 128);
  CHECK(q8->bytes == 68);
  for (int i = 0; i < 68; ++i) CHECK(q8->data[i] == i);
  const GgufTensor* q41 = f.FindTensor("q41");
  REQUIRE(q41 != nullptr);
  CHECK(q41->type == DType::kQ4_1);
  CHECK(q41->bytes == 20);
  CHECK(q41->data[19] == 57);
  CHECK(f.FindTensor("f16")->elements == 4);
}

TEST_CASE("v2 and v3 files from the in-test writer read back with alignment 1, 32 and 256") {
  for (uint32_t version : {2u, 3u}) {
    for (uint32_t alignment : {1u, 32u, 256u}) {
      GgufWriter w = SmallGguf();
      w.version = version;
      w.SetAlignment(alignment);
      w.AddKv("t.empty", GgufType::kArray, GgufArray(GgufType::kFloat64, 0, ""));
      w.AddKv("t.f64s", GgufType::kArray, GgufArray(GgufType::kFloat64, 2, Le(0.25) + Le(-8.0)));
      w.AddKv("t.u64s", GgufType::kArray,
              GgufArray(GgufType::kUint64, 2, Le<uint64_t>(1) + Le<uint64_t>(1ULL << 40)));
      w.AddKv("t.strs2", GgufType::kArray,
              GgufArray(GgufType::kArray, 2,
                        GgufArray(GgufType::kString, 1, GgufStr("x")) +
                            GgufArray(GgufType::kString, 0, "")));
      auto gguf = ParseBytes(w.Build());
      INFO("version " << version << " alignment " << alignment);
      REQUIRE(gguf.ok());
      const GgufFile& f = **gguf;
      CHECK(f.version() == version);
      CHECK(f.alignment() == alignment);
      CHECK(f.data_section_offset() % alignment == 0);
      CHECK(f.GetInt("llama.block_count").value() == 2);
      CHECK(f.GetStringArray("t.tokens").value() == std::vector<std::string_view>{"a", "bc", ""});
      CHECK(f.Find("t.nested")->arrays()[0].IntAt(1).value() == -1);
      CHECK(f.GetFloatArray("t.empty").value().empty());
      CHECK(f.GetFloatArray("t.f64s").value() == std::vector<float>{0.25f, -8.0f});
      CHECK(f.GetIntArray("t.u64s").value() == std::vector<int64_t>{1, 1LL << 40});
      CHECK(f.Find("t.strs2")->arrays()[0].strings()[0] == "x");
      CHECK(f.Find("t.strs2")->arrays()[1].strings().empty());
      REQUIRE(f.tensors().size() == 3);
      const GgufTensor* embd = f.FindTensor("embd");
      REQUIRE(embd != nullptr);
      CHECK(embd->offset % alignment == 0);
      CHECK(std::memcmp(embd->data, PatternBytes(68, 2).data(), 68) == 0);
      CHECK(std::memcmp(f.FindTensor("proj")->data, PatternBytes(20, 3).data(), 20) == 0);
    }
  }
}

TEST_CASE("a file with no tensors and no padding opens") {
  GgufWriter w;
  w.AddU32("a", 1);
  auto gguf = ParseBytes(w.Build());
  REQUIRE(gguf.ok());
  CHECK((*gguf)->tensors().empty());
  CHECK((*gguf)->GetInt("a").value() == 1);
}

TEST_CASE("every strict prefix of a valid GGUF file fails to open with an error naming the file") {
  std::string bytes = SmallGguf().Build();
  REQUIRE(ParseBytes(bytes).ok());
  TempDir dir;
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::string path = dir.Write("prefix.gguf", bytes.substr(0, n));
    auto gguf = GgufFile::Open(path);
    INFO("prefix length " << n << ": " << gguf.status().ToString());
    REQUIRE_FALSE(gguf.ok());
    CHECK(Contains(gguf.status(), path + ": "));
  }
}

TEST_CASE("version 1, unknown versions and big-endian files are rejected clearly") {
  GgufWriter w = SmallGguf();
  w.version = 1;
  ExpectCorrupt(w.Build(), "version 1 is not supported");
  w.version = 4;
  ExpectCorrupt(w.Build(), "unsupported GGUF version 4");
  auto be = GgufFile::Open(testing::SourcePath("tests/data/formats/reference_bigendian.gguf"));
  REQUIRE_FALSE(be.ok());
  CHECK(Contains(be.status(), "reference_bigendian.gguf: big-endian GGUF file (version 3)"));
  w = SmallGguf();
  w.magic = 0x4C4D4747;
  ExpectCorrupt(w.Build(), "bad magic");
}

TEST_CASE("corrupt header counts and lengths are errors, never allocations") {
  GgufWriter w = SmallGguf();
  w.tensor_count_override = 1ULL << 60;
  ExpectCorrupt(w.Build(), "header claims 1152921504606846976 tensors");
  w = SmallGguf();
  w.kv_count_override = ~0ULL;
  ExpectCorrupt(w.Build(), "header claims 18446744073709551615 metadata entries");
  w = SmallGguf();
  w.kv_count_override = 7;  // one more than written: the next "key" is a tensor name
  CHECK_FALSE(ParseBytes(w.Build()).ok());

  std::string bytes = SmallGguf().Build();
  std::string huge_key = bytes;
  std::memcpy(&huge_key[24], Le<uint64_t>(~0ULL).data(), 8);  // first key's length
  ExpectCorrupt(
      huge_key,
      "metadata entry 0 of 6: key at offset 24 has length 18446744073709551615 but only 500");

  GgufWriter s;
  s.AddKv("s", GgufType::kString, Le<uint64_t>(1ULL << 62) + "abc");
  ExpectCorrupt(s.Build(), "metadata key 's': string at offset");
  GgufWriter a;
  a.AddKv("arr", GgufType::kArray, GgufArray(GgufType::kUint32, 1ULL << 61, "abcd"));
  ExpectCorrupt(a.Build(), "metadata key 'arr': array of 2305843009213693952 u32");
  GgufWriter sa;
  sa.AddKv("strs", GgufType::kArray, GgufArray(GgufType::kString, 1ULL << 40, GgufStr("x")));
  ExpectCorrupt(sa.Build(), "metadata key 'strs': array of 1099511627776 strings");
  GgufWriter sa2;
  sa2.AddKv("strs", GgufType::kArray,
            GgufArray(GgufType::kString, 2, GgufStr("x") + Le<uint64_t>(1000) + "yz"));
  ExpectCorrupt(sa2.Build(), "metadata key 'strs': string array element 1 of 2");
}

TEST_CASE("corrupt metadata values are errors naming the key") {
  GgufWriter w;
  w.AddKv("t.type", static_cast<GgufType>(13), Le<uint32_t>(0));
  ExpectCorrupt(w.Build(), "metadata key 't.type': unknown value type id 13");
  w = GgufWriter();
  w.AddKv("t.bool", GgufType::kBool, std::string(1, '\2'));
  ExpectCorrupt(w.Build(), "metadata key 't.bool': bool at offset");
  w = GgufWriter();
  w.AddKv("t.elem", GgufType::kArray, GgufArray(static_cast<GgufType>(99), 0, ""));
  ExpectCorrupt(w.Build(), "metadata key 't.elem': unknown array element type id 99");
  std::string deep = GgufArray(GgufType::kUint8, 0, "");
  for (int i = 0; i < GgufValue::kMaxArrayDepth; ++i) deep = GgufArray(GgufType::kArray, 1, deep);
  w = GgufWriter();
  w.AddKv("t.deep", GgufType::kArray, deep);
  ExpectCorrupt(w.Build(), "arrays nested deeper than 8");
  w = GgufWriter();
  w.AddU32("k", 1);
  w.AddU32("k", 2);
  ExpectCorrupt(w.Build(), "duplicate metadata key 'k'");
  // The key alone is bad; the writer still pads to 32 (padding to 2^31
  // would build a 2 GB file).
  for (uint32_t bad : {0u, 48u, 1u << 31}) {
    w = SmallGguf();
    w.AddU32("general.alignment", bad);
    ExpectCorrupt(w.Build(), "'general.alignment' is " + std::to_string(bad) + ", not a power");
  }
  w = SmallGguf();
  w.AddString("general.alignment", "32");
  ExpectCorrupt(w.Build(), "'general.alignment' is string \"32\", expected an integer");
}

GgufWriter OneTensor(GgufTensorSpec spec) {
  GgufWriter w;
  w.AddTensor(std::move(spec));
  return w;
}

TEST_CASE("corrupt tensor infos are errors naming the tensor and the field") {
  constexpr uint32_t kF32 = 0, kQ8 = 8;
  ExpectCorrupt(OneTensor({"t", {4}, 99, PatternBytes(16)}).Build(),
                "tensor 't': unknown ggml type id 99");
  ExpectCorrupt(OneTensor({"t", {33, 1}, kQ8, PatternBytes(34)}).Build(),
                "tensor 't': dims[0] = 33 is not a multiple of Q8_0's block of 32 elements");
  ExpectCorrupt(OneTensor({"t", {4, 0}, kF32, ""}).Build(), "tensor 't': dims[1] is 0");
  ExpectCorrupt(OneTensor({"t", {1, 1, 1, 1, 1}, kF32, PatternBytes(4)}).Build(),
                "tensor 't': n_dims is 5, expected 1 to 4");
  ExpectCorrupt(OneTensor({"t", {}, kF32, ""}).Build(), "tensor 't': n_dims is 0");
  ExpectCorrupt(OneTensor({"t", {1ULL << 32, 1ULL << 32}, kF32, ""}).Build(),
                "tensor 't': element count of dims {4294967296, 4294967296} overflows");
  ExpectCorrupt(OneTensor({"t", {1ULL << 62, 2}, kF32, ""}).Build(), "overflows");
  ExpectCorrupt(OneTensor({"t", {1ULL << 63}, kF32, ""}).Build(), "dims[0] is 9223372036854775808");
  ExpectCorrupt(OneTensor({"t", {4}, kF32, PatternBytes(16), 8}).Build(),
                "tensor 't': data offset 8 is not a multiple of the alignment 32");
  ExpectCorrupt(OneTensor({"t", {8}, kF32, PatternBytes(16)}).Build(),
                "tensor 't': data [offset 0, size 32) exceeds the file's data section of 16 bytes");
  ExpectCorrupt(OneTensor({"t", {4}, kF32, PatternBytes(16), 1ULL << 63}).Build(),
                "tensor 't': data [offset 9223372036854775808, size 16) exceeds");

  GgufWriter dup;
  dup.AddTensor({"same", {4}, kF32, PatternBytes(16)});
  dup.AddTensor({"same", {4}, kF32, PatternBytes(16)});
  ExpectCorrupt(dup.Build(), "duplicate tensor name 'same'");
  GgufWriter overlap;
  overlap.AddTensor({"a", {16}, kF32, PatternBytes(64)});
  overlap.AddTensor({"b", {4}, kF32, PatternBytes(16), 32});
  ExpectCorrupt(overlap.Build(), "tensor 'b': data at offset 32 overlaps tensor 'a' at [0, 64)");
  GgufWriter no_data;
  no_data.AddTensor({"t", {4}, kF32, ""});
  ExpectCorrupt(no_data.Build(),
                "tensor 't': data [offset 0, size 16) exceeds the file's data section of 0 bytes");
}

TEST_CASE("MappedFile rejects missing files, directories and empty files by name") {
  TempDir dir;
  auto missing = GgufFile::Open(dir.path() + "/nope.gguf");
  CHECK(missing.status().code() == absl::StatusCode::kNotFound);
  CHECK(Contains(missing.status(), dir.path() + "/nope.gguf"));
  auto directory = MappedFile::Open(dir.path());
  CHECK(directory.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(Contains(directory.status(), "is a directory"));
  auto empty = GgufFile::Open(dir.Write("empty.gguf", ""));
  CHECK(Contains(empty.status(), "empty.gguf: file is empty"));
  auto mapped = MappedFile::Open(dir.Write("x.bin", "abc"));
  REQUIRE(mapped.ok());
  CHECK((*mapped)->size() == 3);
  CHECK(std::memcmp((*mapped)->data(), "abc", 3) == 0);
  CHECK((*mapped)->Contains((*mapped)->data() + 1, 2));
  CHECK_FALSE((*mapped)->Contains((*mapped)->data() + 1, 3));
}

}  // namespace
}  // namespace alignserve
