// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
// 3", SC'11): a bijection of a 128-bit counter under a 64-bit key, so any
// (seed, step) is drawn directly, with no generator state to carry. One
// definition for the host sampler (engine/sampler.h) and the device sampler
// (kernels/cuda), so a seeded draw is the same uniform on both.
// Thread-safety: pure functions.
#ifndef ALIGNSERVE_KERNELS_PHILOX_H_
#define ALIGNSERVE_KERNELS_PHILOX_H_

#include <cstdint>

#if defined(__CUDACC__)
#define ALIGNSERVE_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define ALIGNSERVE_HOST_DEVICE inline
#endif

namespace alignserve {

struct Philox4 {
  uint32_t v[4];
};

ALIGNSERVE_HOST_DEVICE Philox4 Philox4x32(Philox4 ctr, uint32_t key0, uint32_t key1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kMul0) * ctr.v[0];
    const uint64_t p1 = static_cast<uint64_t>(kMul1) * ctr.v[2];
    ctr = Philox4{{static_cast<uint32_t>(p1 >> 32) ^ ctr.v[1] ^ key0, static_cast<uint32_t>(p1),
                   static_cast<uint32_t>(p0 >> 32) ^ ctr.v[3] ^ key1, static_cast<uint32_t>(p0)}};
    key0 += kWeyl0;
    key1 += kWeyl1;
  }
  return ctr;
}

// The uniform in [0, 1) that a sequence with `seed` draws at `step`
// (key = seed, counter = step; 53 random bits).
ALIGNSERVE_HOST_DEVICE double PhiloxUniform(uint64_t seed, uint64_t step) {
  const Philox4 r =
      Philox4x32(Philox4{{static_cast<uint32_t>(step), static_cast<uint32_t>(step >> 32), 0u, 0u}},
                 static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  const uint64_t bits = ((static_cast<uint64_t>(r.v[0]) << 32) | r.v[1]) >> 11;
  return static_cast<double>(bits) * 0x1.0p-53;
}

}  // namespace alignserve

#endif  // ALIGNSERVE_KERNELS_PHILOX_H_
