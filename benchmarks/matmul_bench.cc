// MatMul throughput on SmolLM2-135M shapes, per weight type and ISA level:
// GFLOP/s (2 m n k per call) and GB/s of weight bytes read per call.
// m = 1 is decode; m = 64 / 512 are prefill chunks. Uses DefaultThreadPool()
// (ALIGNSERVE_NUM_THREADS sets its size).
//   matmul_bench            all shapes and types
//   matmul_bench --quick    Q4_1 / Q8_0 on the MLP shape only
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
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

double SecondsPerCall(const std::vector<float>& x, int64_t m, const Shape& s,
                      const std::vector<uint8_t>& w, DType t, std::vector<float>& y) {
  ThreadPool& pool = DefaultThreadPool();
  MatMul(x.data(), m, s.k, w.data(), t, s.n, y.data(), pool);  // warm-up
  double best = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    int iters = 0;
    const auto start = std::chrono::steady_clock::now();
    double elapsed = 0;
    do {
      MatMul(x.data(), m, s.k, w.data(), t, s.n, y.data(), pool);
      ++iters;
      elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    } while (elapsed < 0.1);
    best = std::min(best, elapsed / iters);
  }
  return best;
}

void Bench(DType t, const Shape& s, int64_t m) {
  const std::vector<uint8_t> w = RandomWeights(t, s.n, s.k);
  std::vector<float> x(m * s.k), y(m * s.n);
  std::mt19937 rng(2);
  std::normal_distribution<float> normal;
  for (float& v : x) v = normal(rng);
  double base = 0;
  for (CpuIsa isa : AvailableCpuIsas()) {
    ScopedCpuIsaCap cap(isa);
    if (isa != CpuIsa::kScalar && MatMulKernelIsa(t) != isa) continue;
    const double sec = SecondsPerCall(x, m, s, w, t, y);
    if (isa == CpuIsa::kScalar) base = sec;
    const double gflops = 2.0 * m * s.n * s.k / sec * 1e-9;
    const double gbs = static_cast<double>(w.size()) / sec * 1e-9;
    std::printf(
        "%-5s %-9s m=%-4lld k=%-5lld n=%-6lld %-8s %9.1f us %8.2f GFLOP/s %7.2f GB/s  x%.1f vs "
        "scalar\n",
        std::string(DTypeName(t)).c_str(), s.name, static_cast<long long>(m),
        static_cast<long long>(s.k), static_cast<long long>(s.n),
        std::string(CpuIsaName(isa)).c_str(), sec * 1e6, gflops, gbs, base / sec);
    std::fflush(stdout);
  }
}

}  // namespace
}  // namespace alignserve

int main(int argc, char** argv) {
  using alignserve::DType;
  using alignserve::Shape;
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const Shape mlp_up{"mlp_up", 576, 1536}, mlp_down{"mlp_down", 1536, 576},
      attn_q{"attn_q", 576, 576}, head{"lm_head", 576, 49152};
  std::printf("threads=%d host_isa=%s\n", alignserve::DefaultThreadPool().num_threads(),
              std::string(alignserve::CpuIsaName(alignserve::HostCpuIsa())).c_str());
  for (int64_t m : {1, 64, 512}) {
    alignserve::Bench(DType::kQ4_1, mlp_up, m);
    if (quick) continue;
    alignserve::Bench(DType::kQ4_1, mlp_down, m);
    alignserve::Bench(DType::kQ4_1, attn_q, m);
    if (m <= 64) alignserve::Bench(DType::kQ8_0, head, m);
  }
  if (quick) return 0;
  for (DType t : {DType::kQ4_0, DType::kQ5_0, DType::kQ5_1, DType::kQ8_0, DType::kF32, DType::kF16,
                  DType::kBF16, DType::kQ4_K, DType::kQ6_K}) {
    // K-quant rows are whole 256-blocks: use the k = 1536 shape for them.
    const bool k_quant = alignserve::Info(t).block_elems == 256;
    for (int64_t m : {1, 64}) alignserve::Bench(t, k_quant ? mlp_down : mlp_up, m);
  }
  return 0;
}
