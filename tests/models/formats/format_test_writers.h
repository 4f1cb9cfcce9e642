// In-test writers for small GGUF and safetensors files, low-level enough to
// write invalid files too: every count, id, dim and offset can be set to
// anything. Shared by the format tests and the loader fuzz test.
#ifndef ALIGNSERVE_TESTS_MODELS_FORMATS_FORMAT_TEST_WRITERS_H_
#define ALIGNSERVE_TESTS_MODELS_FORMATS_FORMAT_TEST_WRITERS_H_

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kernels/dtype.h"
#include "models/formats/gguf_value.h"
#include "nlohmann/json.hpp"

namespace alignserve::testing {

template <typename T>
std::string Le(T value) {  // little-endian bytes of a scalar (host is little-endian)
  std::string s(sizeof(T), '\0');
  std::memcpy(s.data(), &value, sizeof(T));
  return s;
}

inline std::string GgufStr(const std::string& s) { return Le<uint64_t>(s.size()) + s; }

// An encoded GGUF array value: element type, count, elements.
inline std::string GgufArray(GgufType element, uint64_t count, const std::string& elements) {
  return Le<uint32_t>(static_cast<uint32_t>(element)) + Le<uint64_t>(count) + elements;
}

struct GgufTensorSpec {
  GgufTensorSpec(std::string name, std::vector<uint64_t> dims, uint32_t type, std::string data,
                 std::optional<uint64_t> offset_override = std::nullopt)
      : name(std::move(name)),
        dims(std::move(dims)),
        type(type),
        data(std::move(data)),
        offset_override(offset_override) {}

  std::string name;
  std::vector<uint64_t> dims;               // ggml order, written as given
  uint32_t type = 0;                        // ggml type id
  std::string data;                         // laid out aligned in the data section
  std::optional<uint64_t> offset_override;  // written instead of the real offset
};

class GgufWriter {
 public:
  uint32_t magic = 0x46554747;
  uint32_t version = 3;
  std::optional<uint64_t> tensor_count_override;
  std::optional<uint64_t> kv_count_override;
  uint64_t alignment = 32;             // used for padding; SetAlignment also writes the key
  bool pad_after_last_tensor = false;  // off: every strict prefix is corrupt

  void AddKv(const std::string& key, GgufType type, const std::string& encoded_value) {
    kvs_ += GgufStr(key) + Le<uint32_t>(static_cast<uint32_t>(type)) + encoded_value;
    ++kv_count_;
  }
  void AddU32(const std::string& key, uint32_t v) { AddKv(key, GgufType::kUint32, Le(v)); }
  void AddString(const std::string& key, const std::string& v) {
    AddKv(key, GgufType::kString, GgufStr(v));
  }
  void SetAlignment(uint32_t a) {
    alignment = a;
    AddU32("general.alignment", a);
  }
  void AddTensor(GgufTensorSpec spec) { tensors_.push_back(std::move(spec)); }

  std::string Build() const {
    std::string out = Le(magic) + Le(version);
    out += Le<uint64_t>(tensor_count_override.value_or(tensors_.size()));
    out += Le<uint64_t>(kv_count_override.value_or(kv_count_));
    out += kvs_;
    std::string data;
    for (size_t i = 0; i < tensors_.size(); ++i) {
      const GgufTensorSpec& t = tensors_[i];
      uint64_t offset = data.size();
      out += GgufStr(t.name) + Le<uint32_t>(t.dims.size());
      for (uint64_t d : t.dims) out += Le(d);
      out += Le(t.type) + Le<uint64_t>(t.offset_override.value_or(offset));
      data += t.data;
      if (i + 1 < tensors_.size() || pad_after_last_tensor) Pad(&data);
    }
    if (!tensors_.empty()) Pad(&out);
    return out + data;
  }

 private:
  void Pad(std::string* s) const {
    while (s->size() % alignment != 0) s->push_back('\0');
  }

  std::string kvs_;
  uint64_t kv_count_ = 0;
  std::vector<GgufTensorSpec> tensors_;
};

// Bytes 0, 1, 2, ... of length n (distinct data per tensor via `seed`).
inline std::string PatternBytes(size_t n, uint8_t seed = 0) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + i * 7);
  return s;
}

// A small valid v3 GGUF: a few value types, an F32, a Q8_0 and a Q4_1 tensor.
inline GgufWriter SmallGguf() {
  GgufWriter w;
  w.AddString("general.architecture", "llama");
  w.AddU32("llama.block_count", 2);
  w.AddKv("t.f32", GgufType::kFloat32, Le(0.5f));
  w.AddKv("t.bool", GgufType::kBool, std::string(1, '\1'));
  w.AddKv("t.tokens", GgufType::kArray,
          GgufArray(GgufType::kString, 3, GgufStr("a") + GgufStr("bc") + GgufStr("")));
  w.AddKv("t.nested", GgufType::kArray,
          GgufArray(GgufType::kArray, 1,
                    GgufArray(GgufType::kInt16, 2, Le<int16_t>(1) + Le<int16_t>(-1))));
  w.AddTensor({"norm", {4}, static_cast<uint32_t>(DType::kF32), PatternBytes(16, 1)});
  w.AddTensor({"embd", {32, 2}, static_cast<uint32_t>(DType::kQ8_0), PatternBytes(68, 2)});
  w.AddTensor({"proj", {32}, static_cast<uint32_t>(DType::kQ4_1), PatternBytes(20, 3)});
  return w;
}

struct SafetensorsSpec {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::string data;
};

// A safetensors file with tensors laid out contiguously in the given order.
inline std::string BuildSafetensors(const std::vector<SafetensorsSpec>& tensors,
                                    const std::map<std::string, std::string>& metadata = {}) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string data;
  for (const SafetensorsSpec& t : tensors) {
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {data.size(), data.size() + t.data.size()}}};
    data += t.data;
  }
  std::string text = header.dump();
  while ((8 + text.size()) % 8 != 0) text.push_back(' ');
  return Le<uint64_t>(text.size()) + text + data;
}

// Header text given verbatim (for malformed headers), then `data`.
inline std::string RawSafetensors(const std::string& header, const std::string& data) {
  return Le<uint64_t>(header.size()) + header + data;
}

inline std::string SmallSafetensors() {
  return BuildSafetensors({{"a", "F32", {2, 2}, PatternBytes(16, 1)},
                           {"b", "BF16", {3}, PatternBytes(6, 2)},
                           {"c", "F16", {1, 2}, PatternBytes(4, 3)}},
                          {{"format", "pt"}});
}

// A fresh directory under TMPDIR, removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "alignserve_formats_XXXXXX").string();
    path_ = ::mkdtemp(pattern.data()) ? pattern : std::string();
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string Write(const std::string& name, const std::string& bytes) const {
    std::string file = path_ + "/" + name;
    std::ofstream(file, std::ios::binary | std::ios::trunc).write(bytes.data(), bytes.size());
    return file;
  }

 private:
  std::string path_;
};

inline std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace alignserve::testing

#endif  // ALIGNSERVE_TESTS_MODELS_FORMATS_FORMAT_TEST_WRITERS_H_
