// MatMul throughput on SmolLM2-135M shapes, per weight type and ISA level:
// GFLOP/s (2 m n k per call) and GB/s of weight bytes read per call.
// m = 1 is decode; m = 64 / 512 are prefill chunks. Uses DefaultThreadPool()
// (ALIGNSERVE_NUM_THREADS sets its size). Each figure is the median of three
// timing windows of at least 0.1 s (the machine may be shared).
//   matmul_bench                 all shapes and types
//   matmul_bench --quick         Q4_1 / Q8_0 decode (m = 1) only
// "cold" lines cycle through weight copies totalling >= 64 MiB so every call
// streams its weights from DRAM as a decode step does; "warm" lines reuse one
// cache-resident copy.
//   matmul_bench --type Q4_K     one type (repeatable), all its shapes
//   matmul_bench --pool          also time an empty 2-way ParallelFor
//   matmul_bench --isa avx512    only that ISA level
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/matmul.h"
#include "kernels/dtype.h"
#include "kernels/thread_pool.h"

namespace alignserve {
namespace {

struct Shape {
  const char* name;
  int64_t k, n;
};

// Random bytes with small positive fp16 scales wherever a block has them is
// enough for timing: kernels do the same work for any values. Float types
// get 0x3c00-ish patterns (finite values) everywhere.
std::vector<uint8_t> RandomWeights(DType t, int64_t n, int64_t k) {
  std::vector<uint8_t> w(RowBytes(t, k) * n);
  std::mt19937 rng(1);
  for (auto& b : w) b = static_cast<uint8_t>(rng() & 0x3f);
  return w;
}

// Weight copies to cycle through so that every call reads its weights from
// DRAM, as decode does (a model's layers together exceed the caches):
// at least 64 MiB in all. One copy (cache-resident after the first call)
// measures the kernels themselves.
int64_t ColdCopies(size_t bytes) {
  return std::max<int64_t>(1, (int64_t{64} << 20) / static_cast<int64_t>(bytes) + 1);
}

double SecondsPerCall(const std::vector<float>& x, int64_t m, const Shape& s,
                      const std::vector<uint8_t>& w, int64_t copies, DType t,
                      std::vector<float>& y) {
  ThreadPool& pool = DefaultThreadPool();
  const size_t bytes = w.size() / copies;
  int64_t next = 0;
  const auto call = [&] {
    MatMul(x.data(), m, s.k, w.data() + bytes * next, t, s.n, y.data(), pool);
    next = (next + 1) % copies;
  };
  call();  // warm-up
  std::vector<double> windows;
  for (int rep = 0; rep < 3; ++rep) {
    int iters = 0;
    const auto start = std::chrono::steady_clock::now();
    double elapsed = 0;
    do {
      call();
      ++iters;
      elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    } while (elapsed < 0.1);
    windows.push_back(elapsed / iters);
  }
  std::sort(windows.begin(), windows.end());
  return windows[1];
}

// Set by --isa: only that level is timed (and no ratio to scalar printed).
std::optional<CpuIsa> only_isa;

void Bench(DType t, const Shape& s, int64_t m, bool cold = false) {
  const std::vector<uint8_t> one = RandomWeights(t, s.n, s.k);
  const int64_t copies = cold ? ColdCopies(one.size()) : 1;
  std::vector<uint8_t> w;
  w.reserve(one.size() * copies);
  for (int64_t i = 0; i < copies; ++i) w.insert(w.end(), one.begin(), one.end());
  std::vector<float> x(m * s.k), y(m * s.n);
  std::mt19937 rng(2);
  std::normal_distribution<float> normal;
  for (float& v : x) v = normal(rng);
  double base = 0;
  for (CpuIsa isa : AvailableCpuIsas()) {
    ScopedCpuIsaCap cap(isa);
    if (isa != CpuIsa::kScalar && MatMulKernelIsa(t) != isa) continue;
    if (only_isa && isa != *only_isa) continue;
    const double sec = SecondsPerCall(x, m, s, w, copies, t, y);
    if (isa == CpuIsa::kScalar) base = sec;
    const double gflops = 2.0 * m * s.n * s.k / sec * 1e-9;
    const double gbs = static_cast<double>(one.size()) / sec * 1e-9;
    std::printf("%-5s %-9s m=%-4lld k=%-5lld n=%-6lld %-4s %-8s %9.1f us %8.2f GFLOP/s %7.2f GB/s",
                std::string(DTypeName(t)).c_str(), s.name, static_cast<long long>(m),
                static_cast<long long>(s.k), static_cast<long long>(s.n), cold ? "cold" : "warm",
                std::string(CpuIsaName(isa)).c_str(), sec * 1e6, gflops, gbs);
    if (base > 0) std::printf("  x%.1f vs scalar", base / sec);
    std::printf("\n");
    std::fflush(stdout);
  }
}

// What waking the pool costs: an empty ParallelFor over 2 items, 1 each.
void BenchPool() {
  ThreadPool& pool = DefaultThreadPool();
  std::vector<double> windows;
  for (int rep = 0; rep < 3; ++rep) {
    int iters = 0;
    const auto start = std::chrono::steady_clock::now();
    double elapsed = 0;
    do {
      pool.ParallelFor(2, 1, [](int64_t, int64_t) {});
      ++iters;
      elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    } while (elapsed < 0.1);
    windows.push_back(elapsed / iters);
  }
  std::sort(windows.begin(), windows.end());
  std::printf("empty ParallelFor(2, grain 1) on %d threads: %.2f us\n", pool.num_threads(),
              windows[1] * 1e6);
}

}  // namespace
}  // namespace alignserve

int main(int argc, char** argv) {
  using alignserve::DType;
  using alignserve::Shape;
  bool quick = false, pool = false;
  std::vector<DType> only;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strcmp(argv[i], "--pool") == 0) {
      pool = true;
    } else if (std::strcmp(argv[i], "--isa") == 0 && i + 1 < argc) {
      alignserve::only_isa = alignserve::ParseCpuIsa(argv[++i]);
    } else if (std::strcmp(argv[i], "--type") == 0 && i + 1 < argc) {
      const std::string name = argv[++i];
      for (uint32_t id = 0; id < 64; ++id) {
        auto info = alignserve::LookupDType(id);
        if (info && info->name == name) only.push_back(static_cast<DType>(id));
      }
    } else {
      std::fprintf(stderr,
                   "usage: matmul_bench [--quick] [--pool] [--isa LEVEL] [--type NAME]...\n");
      return 2;
    }
  }
  const auto wanted = [&](DType t) {
    return only.empty() || std::find(only.begin(), only.end(), t) != only.end();
  };
  const Shape attn_kv{"attn_kv", 576, 192}, attn_q{"attn_q", 576, 576}, mlp_up{"mlp_up", 576, 1536},
      mlp_down{"mlp_down", 1536, 576}, head{"lm_head", 576, 49152};
  std::printf("threads=%d host_isa=%s\n", alignserve::DefaultThreadPool().num_threads(),
              std::string(alignserve::CpuIsaName(alignserve::HostCpuIsa())).c_str());
  if (pool) alignserve::BenchPool();
  // The default model: Q4_1 projections, Q8_0 tied output head; decode with
  // weights in cache and streamed from DRAM.
  for (bool cold : {false, true}) {
    if (wanted(DType::kQ4_1)) {
      for (const Shape& s : {attn_kv, attn_q, mlp_up, mlp_down}) {
        alignserve::Bench(DType::kQ4_1, s, 1, cold);
      }
    }
    if (wanted(DType::kQ8_0)) alignserve::Bench(DType::kQ8_0, head, 1, cold);
  }
  for (int64_t m : {64, 512}) {
    if (quick) break;
    if (wanted(DType::kQ4_1)) {
      for (const Shape& s : {attn_kv, attn_q, mlp_up, mlp_down})
        alignserve::Bench(DType::kQ4_1, s, m);
    }
    if (wanted(DType::kQ8_0) && m <= 64) alignserve::Bench(DType::kQ8_0, head, m);
  }
  if (quick) return 0;
  for (DType t : {DType::kQ4_0, DType::kQ5_0, DType::kQ5_1, DType::kQ8_0, DType::kF32, DType::kF16,
                  DType::kBF16, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K}) {
    if (!wanted(t)) continue;
    // K-quant rows are whole 256-blocks: use the k = 1536 shape for them.
    const bool k_quant = alignserve::Info(t).block_elems == 256;
    for (int64_t m : {1, 64}) alignserve::Bench(t, k_quant ? mlp_down : mlp_up, m);
  }
  return 0;
}
