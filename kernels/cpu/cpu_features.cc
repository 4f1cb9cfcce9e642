#include "kernels/cpu/cpu_features.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>

namespace alignserve {
namespace {

CpuFeatures Probe() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  // __builtin_cpu_supports also checks that the OS saves the wide registers
  // (XGETBV), so a feature reported here is usable.
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.f16c = __builtin_cpu_supports("f16c");
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512vl = __builtin_cpu_supports("avx512vl");
  f.avx512dq = __builtin_cpu_supports("avx512dq");
  f.avx512vnni = __builtin_cpu_supports("avx512vnni");
#endif
  return f;
}

CpuIsa ProbeLevel(const CpuFeatures& f) {
  if (!(f.avx2 && f.fma && f.f16c)) return CpuIsa::kScalar;
  if (!(f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq)) return CpuIsa::kAvx2;
  if (f.avx512vnni) return CpuIsa::kAvx512;
  return CpuIsa::kAvx512Bw;
}

CpuIsa EnvCap() {
  static const CpuIsa cap = [] {
    const char* env = std::getenv("ALIGNSERVE_CPU_ISA");
    if (env == nullptr || *env == '\0') return CpuIsa::kAvx512;
    std::optional<CpuIsa> parsed = ParseCpuIsa(env);
    if (!parsed) {
      std::fprintf(stderr, "alignserve: ignoring unknown ALIGNSERVE_CPU_ISA=%s\n", env);
      return CpuIsa::kAvx512;
    }
    return *parsed;
  }();
  return cap;
}

constexpr int kNoCap = -1;
std::atomic<int> programmatic_cap{kNoCap};

}  // namespace

const CpuFeatures& HostCpuFeatures() {
  static const CpuFeatures features = Probe();
  return features;
}

CpuIsa HostCpuIsa() {
  static const CpuIsa level = ProbeLevel(HostCpuFeatures());
  return level;
}

CpuIsa ActiveCpuIsa() {
  int level = std::min(static_cast<int>(HostCpuIsa()), static_cast<int>(EnvCap()));
  const int cap = programmatic_cap.load(std::memory_order_relaxed);
  if (cap != kNoCap) level = std::min(level, cap);
  return static_cast<CpuIsa>(level);
}

bool ActiveAvx512Vnni() {
  return ActiveCpuIsa() == CpuIsa::kAvx512 && HostCpuFeatures().avx512vnni;
}

std::optional<CpuIsa> SetCpuIsaCap(std::optional<CpuIsa> cap) {
  const int previous = programmatic_cap.exchange(cap ? static_cast<int>(*cap) : kNoCap);
  if (previous == kNoCap) return std::nullopt;
  return static_cast<CpuIsa>(previous);
}

std::vector<CpuIsa> AvailableCpuIsas() {
  std::vector<CpuIsa> out;
  for (int i = 0; i <= static_cast<int>(HostCpuIsa()); ++i) out.push_back(static_cast<CpuIsa>(i));
  return out;
}

std::string_view CpuIsaName(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar:
      return "scalar";
    case CpuIsa::kAvx2:
      return "avx2";
    case CpuIsa::kAvx512Bw:
      return "avx512bw";
    case CpuIsa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

std::optional<CpuIsa> ParseCpuIsa(std::string_view name) {
  for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512Bw, CpuIsa::kAvx512}) {
    if (name == CpuIsaName(isa)) return isa;
  }
  return std::nullopt;
}

}  // namespace alignserve
