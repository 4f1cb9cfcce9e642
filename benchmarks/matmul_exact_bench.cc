// MatMulExact (f32 activations, exact dequantized weights) against MatMul
// (int8-quantized activations), side by side in one run, on SmolLM2-135M
// shapes: time per call, GFLOP/s (2 m n k per call), GB/s of weight bytes,
// and the ratio of the two times. Every figure is the median of 5 timed
// repetitions (the development machine is shared with compiles).
// Also measured: the f32 FMA peak of this machine (register-only loop), a
// ThreadPool::ParallelFor round trip, and the decode of the smallest
// projection on one thread against two, which set MatMulExact's threshold
// for waking a second thread.
//   matmul_exact_bench           everything, DefaultThreadPool()
//   matmul_exact_bench --quick   m = 1 and 128 only
//   matmul_exact_bench --exact-only --shape BF16:576:1536 --rows 1,8,64,512
//                                MatMulExact alone on the given shapes (any
//                                supported type), without the preamble
//   matmul_exact_bench --i16     MatMulExact against MatMulI16 (16-bit
//                                activations), without the preamble
// ALIGNSERVE_NUM_THREADS sizes the pool; ALIGNSERVE_CPU_ISA caps the ISA.
// GCC 12's own AVX-512 headers trip -Wuninitialized (the deliberately
// undefined pass-through operand of the unmasked conversions).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/dequantize.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_exact.h"
#include "kernels/cpu/matmul_i16.h"
#include "kernels/dtype.h"
#include "kernels/thread_pool.h"

namespace alignserve {
namespace {

struct Shape {
  const char* name;
  DType type;
  int64_t k, n;
};

const Shape kShapes[] = {
    {"attn_k/v", DType::kQ4_1, 576, 192},  {"attn_q/o", DType::kQ4_1, 576, 576},
    {"ffn_up", DType::kQ4_1, 576, 1536},   {"ffn_down", DType::kQ4_1, 1536, 576},
    {"lm_head", DType::kQ8_0, 576, 49152},
};

// Random quant bits with sane fp16 scales in every block (d at byte 0 and,
// for Q4_1/Q5_1/Q4_K/Q5_K, m or dmin at byte 2; Q6_K's d at byte 208), and
// values in [-0.1, 0.1) for the float types, so no weight is subnormal or NaN.
std::vector<uint8_t> MakeWeights(DType t, int64_t n, int64_t k) {
  std::vector<uint8_t> w(RowBytes(t, k) * n);
  std::mt19937 rng(1);
  if (!Info(t).quantized) {
    std::uniform_real_distribution<float> value(-0.1f, 0.1f);
    for (int64_t i = 0; i < n * k; ++i) {
      const float v = value(rng);
      const uint16_t h = t == DType::kF16 ? F32ToFp16(v) : F32ToBf16(v);
      if (t == DType::kF32) std::memcpy(&w[4 * i], &v, 4);
      if (t != DType::kF32) std::memcpy(&w[2 * i], &h, 2);
    }
    return w;
  }
  for (uint8_t& b : w) b = static_cast<uint8_t>(rng());
  const int bytes = Info(t).block_bytes;
  const bool has_min =
      t == DType::kQ4_1 || t == DType::kQ5_1 || t == DType::kQ4_K || t == DType::kQ5_K;
  const size_t d_at = t == DType::kQ6_K ? 208 : 0;
  for (size_t i = 0; i < w.size(); i += bytes) {
    const uint16_t d = F32ToFp16(0.01f), m = F32ToFp16(-0.08f);
    std::memcpy(&w[i + d_at], &d, 2);
    if (has_min) std::memcpy(&w[i + 2], &m, 2);
  }
  return w;
}

// Wall time and CPU time of all the process's threads. On a machine shared
// with compiles a descheduled worker stretches wall time arbitrarily; CPU
// time only counts cycles the kernel actually ran (a blocked ParallelFor
// waiter costs none), so CPU-based rates stay comparable under load.
struct Timing {
  double wall = 0, cpu = 0;  // seconds per call
};

double ProcessCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Medians over 5 repetitions of the mean per call, each repetition running
// for at least 20 ms of wall time.
Timing MedianPerCall(const std::function<void()>& fn) {
  fn();  // warm-up: scratch, caches, page faults
  std::vector<double> walls, cpus;
  for (int rep = 0; rep < 5; ++rep) {
    int64_t iters = 0;
    const auto start = std::chrono::steady_clock::now();
    const double cpu_start = ProcessCpuSeconds();
    double wall = 0;
    while (wall < 0.02) {
      fn();
      ++iters;
      wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    walls.push_back(wall / static_cast<double>(iters));
    cpus.push_back((ProcessCpuSeconds() - cpu_start) / static_cast<double>(iters));
  }
  std::sort(walls.begin(), walls.end());
  std::sort(cpus.begin(), cpus.end());
  return {walls[2], cpus[2]};
}

constexpr int kPeakChains = 12;
constexpr int kPeakIters = 1 << 22;

// 12 independent FMA chains (enough to cover latency x pipes) on zmm.
__attribute__((target("avx512f,fma"))) float FmaChains() {
  __m512 acc[kPeakChains];
  for (int i = 0; i < kPeakChains; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int it = 0; it < kPeakIters; ++it) {
    for (int i = 0; i < kPeakChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  float sink = 0;
  for (int i = 0; i < kPeakChains; ++i) sink += _mm512_reduce_add_ps(acc[i]);
  return sink;
}

double FmaPeakGflops() {
  volatile float sink = 0;
  const double sec = MedianPerCall([&] { sink = sink + FmaChains(); }).cpu;
  return 2.0 * 16 * kPeakChains * kPeakIters / sec * 1e-9;
}

void ThreadingOverhead() {
  ThreadPool one(1), two(2);
  const double round_trip =
      MedianPerCall([&] { two.ParallelFor(2, 1, [](int64_t, int64_t) {}); }).wall;
  const std::vector<uint8_t> w = MakeWeights(DType::kQ4_1, 192, 576);
  std::vector<float> x(576, 0.5f), y(192);
  const double single = MedianPerCall([&] {
                          MatMulExact(x.data(), 1, 576, w.data(), DType::kQ4_1, 192, y.data(), one);
                        }).cpu;
  std::printf("ParallelFor round trip (2 threads, empty): %.2f us\n", round_trip * 1e6);
  std::printf("MatMulExact Q4_1 m=1 576->192 on one thread: %.2f us (%.2f GMAC/s/thread)\n",
              single * 1e6, 576.0 * 192 / single * 1e-9);
  std::printf("=> splitting 576->192 over 2 threads saves ~%.2f us, costs ~%.2f us\n\n",
              single * 1e6 / 2, round_trip * 1e6);
}

// Largest |y - y_ref| of both kernels against DequantizeRow + double dot
// products, absolute and relative to the output scale (max |y_ref|), on the
// attention-projection shape with normal activations.
void Accuracy(ThreadPool& pool) {
  const int64_t m = 16, k = 576, n = 576;
  const std::vector<uint8_t> w = MakeWeights(DType::kQ4_1, n, k);
  std::vector<float> x(m * k), wd(n * k), y_int8(m * n), y_exact(m * n);
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  for (float& v : x) v = normal(rng);
  for (int64_t c = 0; c < n; ++c) {
    if (!DequantizeRow(DType::kQ4_1, w.data() + c * RowBytes(DType::kQ4_1, k), k, wd.data() + c * k)
             .ok()) {
      std::abort();
    }
  }
  MatMul(x.data(), m, k, w.data(), DType::kQ4_1, n, y_int8.data(), pool);
  MatMulExact(x.data(), m, k, w.data(), DType::kQ4_1, n, y_exact.data(), pool);
  double err_int8 = 0, err_exact = 0, scale = 0;
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      double ref = 0;
      for (int64_t i = 0; i < k; ++i) ref += static_cast<double>(x[r * k + i]) * wd[c * k + i];
      scale = std::max(scale, std::fabs(ref));
      err_int8 = std::max(err_int8, std::fabs(y_int8[r * n + c] - ref));
      err_exact = std::max(err_exact, std::fabs(y_exact[r * n + c] - ref));
    }
  }
  std::printf(
      "accuracy, Q4_1 576->576 m=16 vs f64 oracle: max |err| int8 %.3g (%.2g of max|y|), "
      "exact %.3g (%.2g of max|y|)\n\n",
      err_int8, err_int8 / scale, err_exact, err_exact / scale);
}

// m x k standard normal activations (the same for every kernel timed).
std::vector<float> NormalActivations(int64_t m, int64_t k) {
  std::vector<float> x(m * k);
  std::mt19937 rng(2);
  std::normal_distribution<float> normal;
  for (float& v : x) v = normal(rng);
  return x;
}

// MatMulExact alone: wall us, CPU us, GFLOP/s by wall and per CPU-second.
void TimeExact(const Shape& s, int64_t m, ThreadPool& pool) {
  const std::vector<uint8_t> w = MakeWeights(s.type, s.n, s.k);
  const std::vector<float> x = NormalActivations(m, s.k);
  std::vector<float> y(m * s.n);
  const Timing exact =
      MedianPerCall([&] { MatMulExact(x.data(), m, s.k, w.data(), s.type, s.n, y.data(), pool); });
  const double gflop = 2e-9 * m * s.n * s.k;
  std::printf("%-5s %5lld->%-5lld m=%-4lld wall %9.1f us  cpu %9.1f us  %7.1f GF/s  %7.1f GF/cpu\n",
              std::string(DTypeName(s.type)).c_str(), static_cast<long long>(s.k),
              static_cast<long long>(s.n), static_cast<long long>(m), exact.wall * 1e6,
              exact.cpu * 1e6, gflop / exact.wall, gflop / exact.cpu);
  std::fflush(stdout);
}

void Compare(const Shape& s, int64_t m, ThreadPool& pool) {
  const std::vector<uint8_t> w = MakeWeights(s.type, s.n, s.k);
  const std::vector<float> x = NormalActivations(m, s.k);
  std::vector<float> y(m * s.n);
  const Timing int8 =
      MedianPerCall([&] { MatMul(x.data(), m, s.k, w.data(), s.type, s.n, y.data(), pool); });
  const Timing exact =
      MedianPerCall([&] { MatMulExact(x.data(), m, s.k, w.data(), s.type, s.n, y.data(), pool); });
  const double gflop = 2e-9 * m * s.n * s.k, gb = 1e-9 * static_cast<double>(w.size());
  std::printf(
      "%-5s %-8s %4lld->%-5lld %4lld | %8.1f %8.1f %6.1f %6.1f %5.1f | %8.1f %8.1f %6.1f "
      "%6.1f %5.1f | %5.2f %5.2f\n",
      std::string(DTypeName(s.type)).c_str(), s.name, static_cast<long long>(s.k),
      static_cast<long long>(s.n), static_cast<long long>(m), int8.wall * 1e6, int8.cpu * 1e6,
      gflop / int8.wall, gflop / int8.cpu, gb / int8.wall, exact.wall * 1e6, exact.cpu * 1e6,
      gflop / exact.wall, gflop / exact.cpu, gb / exact.wall, exact.wall / int8.wall,
      exact.cpu / int8.cpu);
  std::fflush(stdout);
}

// MatMulExact against MatMulI16: wall us and GFLOP/s of each, and the ratio.
void CompareI16(const Shape& s, int64_t m, ThreadPool& pool) {
  const std::vector<uint8_t> w = MakeWeights(s.type, s.n, s.k);
  const std::vector<float> x = NormalActivations(m, s.k);
  std::vector<float> y(m * s.n);
  const Timing exact =
      MedianPerCall([&] { MatMulExact(x.data(), m, s.k, w.data(), s.type, s.n, y.data(), pool); });
  const Timing i16 =
      MedianPerCall([&] { MatMulI16(x.data(), m, s.k, w.data(), s.type, s.n, y.data(), pool); });
  const double gflop = 2e-9 * m * s.n * s.k;
  std::printf(
      "%-5s %-8s %5lld->%-5lld m=%-4lld exact %9.1f us %6.1f GF/s | i16 %9.1f us %6.1f "
      "GF/s | exact/i16 %5.2f\n",
      std::string(DTypeName(s.type)).c_str(), s.name, static_cast<long long>(s.k),
      static_cast<long long>(s.n), static_cast<long long>(m), exact.wall * 1e6, gflop / exact.wall,
      i16.wall * 1e6, gflop / i16.wall, exact.wall / i16.wall);
  std::fflush(stdout);
}

struct Options {
  bool quick = false;
  bool exact_only = false;
  bool i16 = false;
  std::vector<Shape> shapes;  // empty: kShapes
  std::vector<int64_t> rows;  // empty: the default list
};

std::optional<DType> ParseType(std::string_view name) {
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ4_0, DType::kQ4_1, DType::kQ5_0,
                  DType::kQ5_1, DType::kQ8_0, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K}) {
    if (DTypeName(t) == name) return t;
  }
  return std::nullopt;
}

// "TYPE:K:N", e.g. "Q4_1:576:1536".
std::optional<Shape> ParseShape(const std::string& spec) {
  const size_t a = spec.find(':'), b = spec.find(':', a == std::string::npos ? a : a + 1);
  if (a == std::string::npos || b == std::string::npos) return std::nullopt;
  const std::optional<DType> t = ParseType(std::string_view(spec).substr(0, a));
  const long long k = std::atoll(spec.c_str() + a + 1), n = std::atoll(spec.c_str() + b + 1);
  if (!t || k <= 0 || n <= 0 || !ValidateMatMulExactWeight(*t, k).ok()) return std::nullopt;
  return Shape{"custom", *t, k, n};
}

std::vector<int64_t> ParseRows(const std::string& list) {
  std::vector<int64_t> rows;
  for (size_t at = 0; at < list.size();) {
    const size_t comma = std::min(list.find(',', at), list.size());
    const long long m = std::atoll(list.substr(at, comma - at).c_str());
    if (m > 0) rows.push_back(m);
    at = comma + 1;
  }
  return rows;
}

constexpr char kUsage[] =
    "usage: matmul_exact_bench [--quick] [--exact-only | --i16] [--shape TYPE:K:N]... "
    "[--rows M,M,...]\n"
    "  --quick        m = 1 and 128 only\n"
    "  --exact-only   time MatMulExact alone (no MatMul, no peak/threading/accuracy preamble)\n"
    "  --i16          MatMulExact against MatMulI16 (Q4_0, Q4_1, Q8_0 shapes), no preamble\n"
    "  --shape        a weight type (F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K),\n"
    "                 k and n; repeatable; replaces the SmolLM2-135M default shapes\n"
    "  --rows         the m values (default 1,16,128,512)\n"
    "ALIGNSERVE_NUM_THREADS sizes the pool; ALIGNSERVE_CPU_ISA caps the ISA.\n";

std::optional<Options> ParseOptions(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--quick") {
      o.quick = true;
    } else if (arg == "--exact-only") {
      o.exact_only = true;
    } else if (arg == "--i16") {
      o.i16 = true;
    } else if (arg == "--shape" && has_value) {
      const std::optional<Shape> shape = ParseShape(argv[++i]);
      if (!shape) return std::nullopt;
      o.shapes.push_back(*shape);
    } else if (arg == "--rows" && has_value) {
      o.rows = ParseRows(argv[++i]);
      if (o.rows.empty()) return std::nullopt;
    } else {
      return std::nullopt;
    }
  }
  return o;
}

void Run(const Options& options) {
  ThreadPool& pool = DefaultThreadPool();
  std::printf("ISA %s (MatMulExact kernels: %s), %d threads\n",
              std::string(CpuIsaName(ActiveCpuIsa())).c_str(),
              std::string(CpuIsaName(MatMulExactKernelIsa())).c_str(), pool.num_threads());
  std::vector<Shape> shapes = options.shapes;
  if (shapes.empty()) shapes.assign(std::begin(kShapes), std::end(kShapes));
  std::vector<int64_t> rows = options.rows;
  if (rows.empty())
    rows = options.quick ? std::vector<int64_t>{1, 128} : std::vector<int64_t>{1, 16, 128, 512};
  if (options.exact_only) {
    for (const Shape& s : shapes) {
      for (int64_t m : rows) TimeExact(s, m, pool);
    }
    return;
  }
  if (options.i16) {
    std::printf("MatMulI16 kernels: %s\n", std::string(CpuIsaName(MatMulI16KernelIsa())).c_str());
    for (const Shape& s : shapes) {
      if (!MatMulI16Supports(s.type)) continue;
      for (int64_t m : rows) CompareI16(s, m, pool);
    }
    return;
  }
  if (HostCpuFeatures().avx512f) {
    const double peak = FmaPeakGflops();
    std::printf("f32 FMA peak (zmm, register-only): %.1f GFLOP/s per thread, %.1f for %d\n", peak,
                peak * pool.num_threads(), pool.num_threads());
  }
  ThreadingOverhead();
  Accuracy(pool);
  std::printf(
      "Per kernel: wall us, CPU us (all threads), GFLOP/s by wall, GFLOP/s per CPU-second,\n"
      "weight GB/s by wall. Ratio exact/int8 by wall and by CPU time.\n");
  std::printf("%-24s %4s | %-38s | %-38s | %s\n", "type tensor k->n", "m",
              "MatMul (int8 activations)", "MatMulExact", "exact/int8");
  std::printf("%-29s | %8s %8s %6s %6s %5s | %8s %8s %6s %6s %5s | %5s %5s\n", "", "wall", "cpu",
              "GF/s", "GF/cpu", "GB/s", "wall", "cpu", "GF/s", "GF/cpu", "GB/s", "wall", "cpu");
  for (const Shape& s : shapes) {
    for (int64_t m : rows) {
      if (MatMulSupports(s.type)) {
        Compare(s, m, pool);
      } else {
        TimeExact(s, m, pool);
      }
    }
  }
}

}  // namespace
}  // namespace alignserve

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--help") == 0) {
    std::fputs(alignserve::kUsage, stdout);
    return 0;
  }
  const std::optional<alignserve::Options> options = alignserve::ParseOptions(argc, argv);
  if (!options) {
    std::fputs(alignserve::kUsage, stderr);
    return 2;
  }
  alignserve::Run(*options);
  return 0;
}
