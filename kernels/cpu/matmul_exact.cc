#include "kernels/cpu/matmul_exact.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/dequantize.h"

namespace alignserve {
namespace matmul_exact_internal {
namespace {

// The scalar level reuses DequantizeRow itself (bit-equality by
// construction) and plain sequential f32 dot products; it is the portable
// fallback, not a fast path. Decode and Gemm both sum with Dot, the scalar
// canonical order (matmul_exact.h).
std::vector<float>& ScalarRowBuffer(int64_t k) {
  thread_local std::vector<float> row;
  if (static_cast<int64_t>(row.size()) < k) row.resize(static_cast<size_t>(k));
  return row;
}

float Dot(const float* a, const float* b, int64_t k) {
  float s = 0.0f;
  for (int64_t i = 0; i < k; ++i) s += a[i] * b[i];
  return s;
}

void DequantRowOrDie(DType t, const uint8_t* src, int64_t k, float* dst) {
  if (absl::Status s = DequantizeRow(t, src, k, dst); !s.ok()) {
    std::fprintf(stderr, "alignserve: MatMulExact: %s\n", s.ToString().c_str());
    std::abort();
  }
}

template <DType kType>
void ScalarDecode(const float* x, int64_t m, int64_t k, const uint8_t* w, size_t w_stride,
                  int64_t c_begin, int64_t c_end, float* y, int64_t ldy) {
  float* row = ScalarRowBuffer(k).data();
  for (int64_t c = c_begin; c < c_end; ++c) {
    DequantRowOrDie(kType, w + c * w_stride, k, row);
    for (int64_t r = 0; r < m; ++r) y[r * ldy + c] = Dot(x + r * k, row, k);
  }
}

template <DType kType>
void ScalarDequant(const uint8_t* w, size_t w_stride, int64_t rows, int64_t k, float* out,
                   int64_t ld) {
  for (int64_t i = 0; i < rows; ++i) {
    DequantRowOrDie(kType, w + i * w_stride, k, out + i * ld);
    std::fill(out + i * ld + k, out + (i + 1) * ld, 0.0f);
  }
}

void ScalarGemm(const float* x, int64_t m, int64_t k, const float* wd, int64_t ldw, int64_t cols,
                float* y, int64_t ldy) {
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < cols; ++c) y[r * ldy + c] = Dot(x + r * k, wd + c * ldw, k);
  }
}

template <DType kType>
Kernels ScalarFor() {
  return {&ScalarDecode<kType>, &ScalarDequant<kType>, &ScalarGemm};
}

}  // namespace

Kernels ScalarKernels(DType w_type) {
  switch (w_type) {
#define ALIGNSERVE_EXACT_CASE(type, decoder) \
  case DType::type:                          \
    return ScalarFor<DType::type>();
    ALIGNSERVE_MATMUL_EXACT_TYPES(ALIGNSERVE_EXACT_CASE)
#undef ALIGNSERVE_EXACT_CASE
    default:
      return {};
  }
}

Kernels ActiveKernels(DType w_type) {
  const CpuIsa isa = ActiveCpuIsa();
  if (isa >= CpuIsa::kAvx512Bw) return Avx512Kernels(w_type);
  if (isa >= CpuIsa::kAvx2) return Avx2Kernels(w_type);
  return ScalarKernels(w_type);
}

}  // namespace matmul_exact_internal

namespace {

using matmul_exact_internal::Kernels;
using matmul_exact_internal::kMaxDecodeRows;
using matmul_exact_internal::kTileCols;
using matmul_exact_internal::kTilePad;

// Multiply-adds a thread must get before a second thread is woken. Measured
// on the 2-core development VM (benchmarks/matmul_exact_bench.cc): a
// ParallelFor round trip costs ~8-20 us of wall time (under compile load),
// and the fused decode runs ~28 G multiply-adds per core-second on cached
// weights, so halving a product pays only from ~0.5 M multiply-adds on: the
// k/v and q/o projections of SmolLM2 (0.11 M, 0.33 M) stay on one thread,
// the MLP (0.88 M) and output head (28 M) split. Prefill clears it at m >= 4.
constexpr int64_t kMinMacsPerThread = int64_t{1} << 18;
// Decode columns are handed out in groups of 4 (the kernel's row group).
constexpr int64_t kDecodeGroup = 4;

// One weight matrix of a job: its kernels, bytes, columns and output, and
// where its units (decode groups or prefill tiles) start in the job's list.
struct Part {
  Kernels kernels;
  const uint8_t* w;
  size_t w_stride;
  int64_t n;
  float* y;
  int64_t first_unit;
};

// Everything a worker needs, so the ParallelFor lambda captures one pointer
// (std::function then stores it inline: no allocation per call).
struct Job {
  const float* x;
  int64_t m, k;
  int64_t unit_cols;  // kDecodeGroup or kTileCols
  int num_parts;
  Part parts[kMaxSharedParts];
};

// Calls fn(part, first, last) for the part-local unit ranges that the job's
// unit range [begin, end) covers, in order.
template <class Fn>
void ForEachPart(const Job& job, int64_t begin, int64_t end, Fn&& fn) {
  for (int i = 0; i < job.num_parts && begin < end; ++i) {
    const Part& part = job.parts[i];
    const int64_t units = (part.n + job.unit_cols - 1) / job.unit_cols;
    const int64_t last = std::min(end, part.first_unit + units);
    if (begin < last) {
      fn(part, begin - part.first_unit, last - part.first_unit);
      begin = last;
    }
  }
}

void DecodeColumns(const Job& job, const Part& part, int64_t group_begin, int64_t group_end) {
  const int64_t c_begin = group_begin * kDecodeGroup;
  const int64_t c_end = std::min(part.n, group_end * kDecodeGroup);
  part.kernels.decode(job.x, job.m, job.k, part.w, part.w_stride, c_begin, c_end, part.y, part.n);
}

// The thread's dequantized tile: kTileCols rows of ld floats, 64-byte
// aligned, grown only when k grows.
float* TileBuffer(int64_t ld) {
  thread_local std::vector<float> storage;
  const size_t need = static_cast<size_t>(kTileCols * ld + 16);
  if (storage.size() < need) storage.resize(need);
  const auto addr = reinterpret_cast<uintptr_t>(storage.data());
  return storage.data() + ((64 - addr % 64) % 64) / sizeof(float);
}

// The next tile's weight bytes (kTileCols rows, contiguous) are prefetched
// while this tile's GEMM runs, so dequantizing it does not wait on DRAM
// (the output head's 30 MB of weights stream once per call).
void PrefetchTile(const Part& part, int64_t c0) {
  if (c0 >= part.n) return;
  const uint8_t* end = part.w + std::min(part.n, c0 + kTileCols) * part.w_stride;
  for (const uint8_t* p = part.w + c0 * part.w_stride; p < end; p += 64) {
    __builtin_prefetch(p, 0, 2);
  }
}

void PrefillTiles(const Job& job, const Part& part, int64_t tile_begin, int64_t tile_end) {
  const int64_t ld = (job.k + kTilePad - 1) / kTilePad * kTilePad;
  float* tile = TileBuffer(ld);
  for (int64_t t = tile_begin; t < tile_end; ++t) {
    const int64_t c0 = t * kTileCols;
    const int64_t cols = std::min(kTileCols, part.n - c0);
    part.kernels.dequant(part.w + c0 * part.w_stride, part.w_stride, cols, job.k, tile, ld);
    if (t + 1 < tile_end) PrefetchTile(part, c0 + kTileCols);
    part.kernels.gemm(job.x, job.m, job.k, tile, ld, cols, part.y + c0, part.n);
  }
}

[[noreturn]] void Die(const absl::Status& status) {
  std::fprintf(stderr, "alignserve: MatMulExact precondition: %s\n", status.ToString().c_str());
  std::abort();
}

}  // namespace

bool MatMulExactSupports(DType w_type) {
  return matmul_exact_internal::ScalarKernels(w_type).decode != nullptr;
}

absl::Status ValidateMatMulExactWeight(DType w_type, int64_t k) {
  if (!MatMulExactSupports(w_type)) {
    return absl::InvalidArgumentError(
        absl::StrCat("MatMulExact: unsupported weight type id ", static_cast<uint32_t>(w_type)));
  }
  const int block = Info(w_type).block_elems;
  if (k <= 0 || k % block != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("MatMulExact: row length ", k, " is not a multiple of the ",
                     std::string(DTypeName(w_type)), " block (", block, ")"));
  }
  return absl::OkStatus();
}

CpuIsa MatMulExactKernelIsa() {
  const CpuIsa isa = ActiveCpuIsa();
  return isa >= CpuIsa::kAvx512Bw ? CpuIsa::kAvx512Bw : isa;
}

void MatMulExactShared(const float* x, int64_t m, int64_t k, std::span<const MatMulPart> parts,
                       ThreadPool& pool) {
  if (parts.size() > static_cast<size_t>(kMaxSharedParts)) {
    Die(absl::InvalidArgumentError(
        absl::StrCat(parts.size(), " weights share one input; at most ", kMaxSharedParts)));
  }
  if (m < 0) Die(absl::InvalidArgumentError("negative m"));
  Job job{x, m, k, m <= kMaxDecodeRows ? kDecodeGroup : kTileCols, 0, {}};
  int64_t units = 0;
  for (const MatMulPart& p : parts) {
    if (absl::Status s = ValidateMatMulExactWeight(p.w_type, k); !s.ok()) Die(s);
    if (p.n < 0) Die(absl::InvalidArgumentError("negative n"));
    if (p.n == 0) continue;
    job.parts[job.num_parts++] = Part{matmul_exact_internal::ActiveKernels(p.w_type),
                                      static_cast<const uint8_t*>(p.w),
                                      RowBytes(p.w_type, k),
                                      p.n,
                                      p.y,
                                      units};
    units += (p.n + job.unit_cols - 1) / job.unit_cols;
  }
  if (m == 0 || units == 0) return;
  const Job* job_ptr = &job;
  const int64_t grain = std::max<int64_t>(1, kMinMacsPerThread / (m * k * job.unit_cols));
  if (m <= kMaxDecodeRows) {
    pool.ParallelFor(units, grain, [job_ptr](int64_t b, int64_t e) {
      ForEachPart(*job_ptr, b, e, [job_ptr](const Part& part, int64_t first, int64_t last) {
        DecodeColumns(*job_ptr, part, first, last);
      });
    });
    return;
  }
  pool.ParallelFor(units, grain, [job_ptr](int64_t b, int64_t e) {
    ForEachPart(*job_ptr, b, e, [job_ptr](const Part& part, int64_t first, int64_t last) {
      PrefillTiles(*job_ptr, part, first, last);
    });
  });
}

void MatMulExact(const float* x, int64_t m, int64_t k, const void* w, DType w_type, int64_t n,
                 float* y, ThreadPool& pool) {
  const MatMulPart part{w, w_type, n, y};
  MatMulExactShared(x, m, k, std::span<const MatMulPart>(&part, 1), pool);
}

}  // namespace alignserve
