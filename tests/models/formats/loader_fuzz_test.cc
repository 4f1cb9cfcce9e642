// Mutation fuzzing of the GGUF and safetensors readers: valid small files are
// bit-flipped, overwritten with boundary values, given inflated length
// fields, truncated and spliced, then parsed. The only claims are the ones
// ROBUSTNESS.md item 25 makes: every parse returns (OK or an error naming
// the file), and an OK parse yields tensors whose bytes lie in the mapping.
// Run under -DALIGNSERVE_SANITIZE=ON to turn any stray read into a failure.
//
// Budget: ALIGNSERVE_FUZZ_SECONDS (default 5) split between the formats, and
// at most ALIGNSERVE_FUZZ_ITERATIONS (default 5,000,000) per format.
// ALIGNSERVE_FUZZ_SEED picks the random stream (default fixed).
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>

#include "models/formats/gguf_file.h"
#include "models/formats/safetensors_file.h"
#include "tests/models/formats/format_test_writers.h"
#include "tests/test_paths.h"

namespace alignserve {
namespace {

using testing::GgufArray;
using testing::GgufStr;
using testing::GgufWriter;
using testing::Le;

double EnvDouble(const char* name, double fallback) {
  const char* v = std::getenv(name);
  return v ? std::atof(v) : fallback;
}

constexpr uint8_t kBoundaryBytes[] = {0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF};
constexpr uint64_t kBoundaryWords[] = {0,
                                       1,
                                       0x7F,
                                       0xFF,
                                       0x7FFF'FFFF,
                                       0x8000'0000,
                                       0xFFFF'FFFF,
                                       0x1'0000'0000,
                                       0x7FFF'FFFF'FFFF'FFFF,
                                       0x8000'0000'0000'0000,
                                       0xFFFF'FFFF'FFFF'FFFF};

class Mutator {
 public:
  Mutator(uint64_t seed, std::vector<std::string> seeds) : rng_(seed), seeds_(std::move(seeds)) {}

  std::string Next() {
    std::string s = seeds_[Below(seeds_.size())];
    int rounds = 1 + static_cast<int>(Below(3));
    for (int i = 0; i < rounds && !s.empty(); ++i) MutateOnce(s);
    return s;
  }

 private:
  size_t Below(size_t n) {
    return n == 0 ? 0 : std::uniform_int_distribution<size_t>(0, n - 1)(rng_);
  }

  void MutateOnce(std::string& s) {
    size_t pos = Below(s.size());
    switch (Below(8)) {
      case 0:  // bit flips
        for (size_t k = 0, n = 1 + Below(4); k < n; ++k) s[Below(s.size())] ^= char(1 << Below(8));
        break;
      case 1:  // a boundary byte
        s[pos] = static_cast<char>(kBoundaryBytes[Below(sizeof(kBoundaryBytes))]);
        break;
      case 2:
      case 3: {  // a length/count/offset field inflated (u64 or u32 wide)
        uint64_t word =
            Below(4) == 0 ? s.size() + Below(64) : kBoundaryWords[Below(std::size(kBoundaryWords))];
        size_t width = Below(2) ? 8 : 4;
        if (pos + width > s.size()) pos = s.size() >= width ? s.size() - width : 0;
        std::memcpy(&s[pos], &word, std::min(width, s.size() - pos));
        break;
      }
      case 4:  // truncation
        s.resize(Below(s.size() + 1));
        break;
      case 5: {  // splice a piece of some seed over or into this one
        const std::string& donor = seeds_[Below(seeds_.size())];
        size_t from = Below(donor.size());
        size_t len = std::min<size_t>(Below(64) + 1, donor.size() - from);
        if (Below(2)) {
          s.insert(pos, donor, from, len);
        } else {
          s.replace(pos, std::min(len, s.size() - pos), donor, from, len);
        }
        break;
      }
      case 6:  // delete a range
        s.erase(pos, Below(32) + 1);
        break;
      default: {  // JSON-ish or digit noise (safetensors headers, GGUF strings)
        static constexpr char kChars[] = "{}[]\",:-.e0123456789 \\";
        s[pos] = kChars[Below(sizeof(kChars) - 1)];
        break;
      }
    }
  }

  std::mt19937_64 rng_;
  std::vector<std::string> seeds_;
};

struct Tally {
  uint64_t iterations = 0;
  uint64_t opened = 0;
  uint64_t rejected = 0;
};

// Reads a tensor's first and last byte so AddressSanitizer checks the bounds
// a second way, besides the Contains check.
uint8_t Touch(const uint8_t* data, size_t bytes) {
  return bytes == 0 ? 0 : static_cast<uint8_t>(data[0] ^ data[bytes - 1]);
}

// Parses bytes as a file named `name` (an empty input fails in FromBytes).
template <typename Format>
absl::StatusOr<std::unique_ptr<Format>> ParseAs(const std::string& name, const std::string& bytes) {
  auto file = MappedFile::FromBytes(name, bytes);
  if (!file.ok()) return file.status();
  return Format::Parse(*std::move(file));
}

void CheckGguf(const std::string& bytes, Tally& tally) {
  auto gguf = ParseAs<GgufFile>("fuzz.gguf", bytes);
  ++tally.iterations;
  if (!gguf.ok()) {
    ++tally.rejected;
    REQUIRE(std::string(gguf.status().message()).rfind("fuzz.gguf: ", 0) == 0);
    return;
  }
  ++tally.opened;
  const GgufFile& f = **gguf;
  volatile uint8_t sink = 0;
  for (const GgufTensor& t : f.tensors()) {
    REQUIRE(f.file().Contains(t.data, t.bytes));
    REQUIRE(t.bytes == RowBytes(t.type, t.dims[0]) * static_cast<size_t>(t.elements / t.dims[0]));
    REQUIRE(f.FindTensor(t.name) == &t);
    sink = sink ^ Touch(t.data, t.bytes);
  }
  for (const GgufKeyValue& kv : f.metadata()) {  // every accessor, on every key
    (void)f.GetInt(kv.key), (void)f.GetFloat(kv.key), (void)f.GetBool(kv.key);
    (void)f.GetString(kv.key), (void)f.GetIntArray(kv.key), (void)f.GetFloatArray(kv.key);
    auto strings = f.GetStringArray(kv.key);
    if (strings.ok()) {
      for (std::string_view s : *strings)
        REQUIRE(f.file().Contains(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
    }
    REQUIRE_FALSE(kv.value.DebugString().empty());
  }
}

void CheckSafetensors(const std::string& bytes, Tally& tally) {
  auto st = ParseAs<SafetensorsFile>("fuzz.safetensors", bytes);
  ++tally.iterations;
  if (!st.ok()) {
    ++tally.rejected;
    REQUIRE(std::string(st.status().message()).rfind("fuzz.safetensors: ", 0) == 0);
    return;
  }
  ++tally.opened;
  volatile uint8_t sink = 0;
  for (const SafetensorsTensor& t : (*st)->tensors()) {
    REQUIRE((*st)->file().Contains(t.data, t.bytes));
    REQUIRE((*st)->FindTensor(t.name) == &t);
    sink = sink ^ Touch(t.data, t.bytes);
  }
}

// Every single-byte overwrite with every boundary value, then random
// mutations until the time or iteration budget is spent.
Tally Fuzz(const std::vector<std::string>& seeds,
           const std::function<void(const std::string&, Tally&)>& check, double seconds) {
  Tally tally;
  for (const std::string& seed : seeds) {
    if (seed.size() > 4096) continue;
    for (size_t pos = 0; pos < seed.size(); ++pos) {
      for (uint8_t b : kBoundaryBytes) {
        std::string s = seed;
        s[pos] = static_cast<char>(b);
        check(s, tally);
      }
    }
  }
  uint64_t max_iterations = static_cast<uint64_t>(EnvDouble("ALIGNSERVE_FUZZ_ITERATIONS", 5e6));
  Mutator mutator(static_cast<uint64_t>(EnvDouble("ALIGNSERVE_FUZZ_SEED", 20240601)), seeds);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  for (uint64_t i = 0; i < max_iterations; ++i) {
    if ((i & 63) == 0 && std::chrono::steady_clock::now() >= deadline) break;
    check(mutator.Next(), tally);
  }
  return tally;
}

std::vector<std::string> GgufSeeds() {
  GgufWriter v2 = testing::SmallGguf();
  v2.version = 2;
  v2.SetAlignment(64);
  v2.AddKv(
      "t.deep", GgufType::kArray,
      GgufArray(GgufType::kArray, 2,
                GgufArray(GgufType::kUint64, 1, Le<uint64_t>(7)) +
                    GgufArray(GgufType::kArray, 1, GgufArray(GgufType::kString, 1, GgufStr("z")))));
  v2.AddKv("t.f64", GgufType::kFloat64, Le(1.25));
  v2.AddKv("t.bools", GgufType::kArray, GgufArray(GgufType::kBool, 2, std::string("\1\0", 2)));
  return {testing::SmallGguf().Build(), v2.Build(),
          testing::ReadFileBytes(testing::SourcePath("tests/data/formats/reference_v3.gguf"))};
}

std::vector<std::string> SafetensorsSeeds() {
  return {testing::SmallSafetensors(),
          testing::ReadFileBytes(testing::SourcePath("tests/data/formats/reference.safetensors"))};
}

double BudgetSeconds() { return EnvDouble("ALIGNSERVE_FUZZ_SECONDS", 5.0) / 2; }

TEST_CASE("mutated GGUF files always open or fail cleanly, and open ones stay in bounds") {
  std::vector<std::string> seeds = GgufSeeds();
  for (const std::string& s : seeds) REQUIRE(ParseAs<GgufFile>("seed", s).ok());
  Tally tally = Fuzz(seeds, CheckGguf, BudgetSeconds());
  std::printf("gguf fuzz: %llu iterations, %llu opened, %llu rejected\n",
              static_cast<unsigned long long>(tally.iterations),
              static_cast<unsigned long long>(tally.opened),
              static_cast<unsigned long long>(tally.rejected));
  CHECK(tally.opened > 0);
  CHECK(tally.rejected > 0);
}

TEST_CASE("mutated safetensors files always open or fail cleanly, and open ones stay in bounds") {
  std::vector<std::string> seeds = SafetensorsSeeds();
  for (const std::string& s : seeds) {
    REQUIRE(ParseAs<SafetensorsFile>("seed", s).ok());
  }
  Tally tally = Fuzz(seeds, CheckSafetensors, BudgetSeconds());
  std::printf("safetensors fuzz: %llu iterations, %llu opened, %llu rejected\n",
              static_cast<unsigned long long>(tally.iterations),
              static_cast<unsigned long long>(tally.opened),
              static_cast<unsigned long long>(tally.rejected));
  CHECK(tally.opened > 0);
  CHECK(tally.rejected > 0);
}

}  // namespace
}  // namespace alignserve
