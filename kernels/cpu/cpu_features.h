// Which x86 SIMD extensions this process may use, for runtime dispatch of the
// CPU kernels. The hardware is probed once (cpuid via __builtin_cpu_supports);
// the level actually used is the hardware's, capped by the environment
// variable ALIGNSERVE_CPU_ISA=scalar|avx2|avx512bw|avx512 (read once) and by
// SetCpuIsaCap(), which tests and benchmarks use to run every path.
//
// Levels, each including the ones before it:
//   kScalar     portable C++ only.
//   kAvx2       AVX2 + FMA + F16C.
//   kAvx512Bw   AVX-512 F/BW/VL/DQ (no VNNI, no BF16 instructions).
//   kAvx512     kAvx512Bw plus AVX512_VNNI (integer dot products). AVX512_BF16
//               is deliberately unused: it rounds activations to bfloat16.
// Thread-safety: all functions are safe to call concurrently; the cap is an
// atomic, so kernels started after SetCpuIsaCap() see the new level.
#ifndef ALIGNSERVE_KERNELS_CPU_CPU_FEATURES_H_
#define ALIGNSERVE_KERNELS_CPU_CPU_FEATURES_H_

#include <optional>
#include <string_view>
#include <vector>

namespace alignserve {

enum class CpuIsa : int { kScalar = 0, kAvx2 = 1, kAvx512Bw = 2, kAvx512 = 3 };

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512dq = false;
  bool avx512vnni = false;
};

// What the hardware (and OS) supports, probed once.
const CpuFeatures& HostCpuFeatures();

// The best level the hardware supports.
CpuIsa HostCpuIsa();

// The level kernels use now: min(HostCpuIsa(), env cap, SetCpuIsaCap cap).
CpuIsa ActiveCpuIsa();

// Whether AVX512_VNNI is usable at the active level (false below kAvx512).
bool ActiveAvx512Vnni();

// Caps the level (nullopt removes the programmatic cap; the env cap stays).
// Returns the previous programmatic cap.
std::optional<CpuIsa> SetCpuIsaCap(std::optional<CpuIsa> cap);

// The levels this machine can run, lowest first (always includes kScalar).
std::vector<CpuIsa> AvailableCpuIsas();

std::string_view CpuIsaName(CpuIsa isa);
std::optional<CpuIsa> ParseCpuIsa(std::string_view name);

// RAII cap for tests and benchmarks.
class ScopedCpuIsaCap {
 public:
  explicit ScopedCpuIsaCap(CpuIsa cap) : previous_(SetCpuIsaCap(cap)) {}
  ~ScopedCpuIsaCap() { SetCpuIsaCap(previous_); }
  ScopedCpuIsaCap(const ScopedCpuIsaCap&) = delete;
  ScopedCpuIsaCap& operator=(const ScopedCpuIsaCap&) = delete;

 private:
  std::optional<CpuIsa> previous_;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_KERNELS_CPU_CPU_FEATURES_H_
