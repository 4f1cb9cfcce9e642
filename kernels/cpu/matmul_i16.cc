#include "kernels/cpu/matmul_i16.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/quant_blocks.h"

namespace alignserve {
namespace matmul_i16_internal {
namespace {

// One weight block as integers u[32] and its scales (matmul_i16.h).
struct DecodedBlock {
  int32_t u[kBlock];
  float d;
  float mn;
};

template <DType kType>
DecodedBlock DecodeBlock(const uint8_t* row, int64_t b) {
  DecodedBlock out{};
  if constexpr (kType == DType::kQ8_0) {
    BlockQ8_0 blk;
    std::memcpy(&blk, row + b * sizeof(BlockQ8_0), sizeof(blk));
    for (int i = 0; i < kBlock; ++i) out.u[i] = blk.qs[i];
    out.d = Fp16ToF32(blk.d);
  } else {
    using Block = std::conditional_t<kType == DType::kQ4_1, BlockQ4_1, BlockQ4_0>;
    Block blk;
    std::memcpy(&blk, row + b * sizeof(Block), sizeof(blk));
    for (int i = 0; i < kBlock / 2; ++i) {
      out.u[i] = blk.qs[i] & 0x0F;
      out.u[i + kBlock / 2] = blk.qs[i] >> 4;
    }
    out.d = Fp16ToF32(blk.d);
    if constexpr (kType == DType::kQ4_1) {
      out.mn = Fp16ToF32(blk.m);
    } else {
      out.mn = -8.0f * out.d;
    }
  }
  return out;
}

// The reference: matmul_i16.h's operations one output at a time.
template <DType kType>
void ScalarTileImpl(const QuantizedRows& a, const uint8_t* w, size_t w_stride, int64_t c0,
                    int64_t cols, float* y, int64_t ldy) {
  constexpr bool kHasMin = kType != DType::kQ8_0;
  const int64_t nb = a.k / kBlock;
  for (int64_t j = c0; j < c0 + cols; ++j) {
    const uint8_t* row = w + j * w_stride;
    for (int64_t r = 0; r < a.m; ++r) {
      const ActivationBlock* x = a.blocks + r * nb;
      float acc = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        const DecodedBlock blk = DecodeBlock<kType>(row, b);
        int32_t isum = 0;
        for (int i = 0; i < kBlock; ++i) isum += blk.u[i] * x[b].q[PermutedIndex(i)];
        const float t = static_cast<float>(isum) * x[b].s;
        acc = std::fma(t, blk.d, acc);
        if constexpr (kHasMin) acc = std::fma(blk.mn, x[b].c, acc);
      }
      y[r * ldy + j] = acc;
    }
  }
}

}  // namespace

void QuantizeRowScalar(const float* x, int64_t k, ActivationBlock* out) {
  for (int64_t b = 0; b < k / kBlock; ++b) {
    const float* xb = x + b * kBlock;
    ActivationBlock& o = out[b];
    float amax = 0.0f;
    bool finite = true;
    for (int i = 0; i < kBlock; ++i) {
      finite = finite && std::isfinite(xb[i]);
      amax = std::max(amax, std::fabs(xb[i]));
    }
    std::fill(o.q, o.q + kBlock, int16_t{0});
    if (!finite) {
      o.s = o.c = std::numeric_limits<float>::quiet_NaN();
      continue;
    }
    if (amax < kTinyAmax) {
      o.s = o.c = 0.0f;
      continue;
    }
    const float inv = 32767.0f / amax;
    int32_t sum = 0;
    for (int i = 0; i < kBlock; ++i) {
      const float v = std::clamp(std::nearbyint(xb[i] * inv), -32767.0f, 32767.0f);
      o.q[PermutedIndex(i)] = static_cast<int16_t>(v);
      sum += static_cast<int32_t>(v);
    }
    o.s = amax / 32767.0f;
    o.c = o.s * static_cast<float>(sum);
  }
}

TileFn ScalarTile(DType w_type) {
  switch (w_type) {
    case DType::kQ4_0:
      return &ScalarTileImpl<DType::kQ4_0>;
    case DType::kQ4_1:
      return &ScalarTileImpl<DType::kQ4_1>;
    case DType::kQ8_0:
      return &ScalarTileImpl<DType::kQ8_0>;
    default:
      return nullptr;
  }
}

}  // namespace matmul_i16_internal

namespace {

using matmul_i16_internal::kBlock;
using matmul_i16_internal::kTileCols;
using matmul_i16_internal::QuantizedRows;
using matmul_i16_internal::TileFn;

// Multiply-adds a thread must get before a second one is woken (as
// MatMulExact's threshold, matmul_exact.cc).
constexpr int64_t kMinMacsPerThread = int64_t{1} << 18;

struct Part {
  TileFn tile;
  const uint8_t* w;
  size_t w_stride;
  int64_t n;
  float* y;
  int64_t first_tile;
};

struct Job {
  QuantizedRows a;
  int num_parts;
  Part parts[kMaxSharedParts];
};

// The calling thread's rounded rows; grows, never shrinks. Rows are
// rounded on the pool (a round trip costs ~0.3 us; 64 rows of 576 take ~9
// us on one core, during which the other would wait).
QuantizedRows QuantizeRows(const float* x, int64_t m, int64_t k, bool simd, ThreadPool& pool) {
  using matmul_i16_internal::ActivationBlock;
  thread_local std::vector<ActivationBlock> buffer;
  const int64_t nb = k / kBlock;
  if (buffer.size() < static_cast<size_t>(m * nb)) buffer.resize(static_cast<size_t>(m * nb));
  // One pointer captured, so std::function stores the lambda inline (no
  // allocation per call).
  const struct {
    const float* x;
    int64_t k, nb;
    ActivationBlock* out;
    bool simd;
  } job{x, k, nb, buffer.data(), simd}, *job_ptr = &job;
  pool.ParallelFor(m, std::max<int64_t>(1, 8192 / k), [job_ptr](int64_t begin, int64_t end) {
    const auto& j = *job_ptr;
    for (int64_t r = begin; r < end; ++r) {
      if (j.simd) {
        matmul_i16_internal::QuantizeRowAvx512(j.x + r * j.k, j.k, j.out + r * j.nb);
      } else {
        matmul_i16_internal::QuantizeRowScalar(j.x + r * j.k, j.k, j.out + r * j.nb);
      }
    }
  });
  return {buffer.data(), m, k};
}

void RunTiles(const Job& job, int64_t begin, int64_t end) {
  for (int i = 0; i < job.num_parts && begin < end; ++i) {
    const Part& part = job.parts[i];
    const int64_t tiles = (part.n + kTileCols - 1) / kTileCols;
    const int64_t last = std::min(end, part.first_tile + tiles);
    for (int64_t t = begin - part.first_tile; t < last - part.first_tile; ++t) {
      const int64_t c0 = t * kTileCols;
      part.tile(job.a, part.w, part.w_stride, c0, std::min(kTileCols, part.n - c0), part.y, part.n);
    }
    begin = std::max(begin, last);
  }
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "alignserve: MatMulI16 precondition: %s\n", what.c_str());
  std::abort();
}

}  // namespace

bool MatMulI16Supports(DType w_type) { return matmul_i16_internal::ScalarTile(w_type) != nullptr; }

CpuIsa MatMulI16KernelIsa() { return ActiveAvx512Vnni() ? CpuIsa::kAvx512 : CpuIsa::kScalar; }

void MatMulI16Shared(const float* x, int64_t m, int64_t k, std::span<const MatMulPart> parts,
                     ThreadPool& pool) {
  if (parts.size() > static_cast<size_t>(kMaxSharedParts)) {
    Die(absl::StrCat(parts.size(), " weights share one input; at most ", kMaxSharedParts));
  }
  if (m < 0) Die("negative m");
  if (k <= 0 || k % kBlock != 0) Die(absl::StrCat("row length ", k, " is not a multiple of 32"));
  const bool simd = MatMulI16KernelIsa() == CpuIsa::kAvx512;
  Job job{};
  int64_t tiles = 0;
  for (const MatMulPart& p : parts) {
    if (!MatMulI16Supports(p.w_type)) {
      Die(absl::StrCat("unsupported weight type ", std::string(DTypeName(p.w_type))));
    }
    if (p.n < 0) Die("negative n");
    if (p.n == 0) continue;
    const TileFn tile = simd ? matmul_i16_internal::Avx512VnniTile(p.w_type)
                             : matmul_i16_internal::ScalarTile(p.w_type);
    job.parts[job.num_parts++] =
        Part{tile, static_cast<const uint8_t*>(p.w), RowBytes(p.w_type, k), p.n, p.y, tiles};
    tiles += (p.n + kTileCols - 1) / kTileCols;
  }
  if (m == 0 || tiles == 0) return;
  job.a = QuantizeRows(x, m, k, simd, pool);
  const Job* job_ptr = &job;
  const int64_t grain = std::max<int64_t>(1, kMinMacsPerThread / (m * k * kTileCols));
  pool.ParallelFor(tiles, grain, [job_ptr](int64_t b, int64_t e) { RunTiles(*job_ptr, b, e); });
}

void MatMulI16(const float* x, int64_t m, int64_t k, const void* w, DType w_type, int64_t n,
               float* y, ThreadPool& pool) {
  const MatMulPart part{w, w_type, n, y};
  MatMulI16Shared(x, m, k, std::span<const MatMulPart>(&part, 1), pool);
}

}  // namespace alignserve
