#include "kernels/cpu/matmul.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/dequantize.h"
#include "kernels/cpu/matmul_kernels.h"
#include "kernels/cpu/quantize_activations.h"

namespace alignserve {
namespace {

struct Selected {
  TileKernel kernel;
  CpuIsa isa = CpuIsa::kScalar;
};

Selected SelectKernel(DType w_type) {
  const CpuIsa isa = ActiveCpuIsa();
  if (isa >= CpuIsa::kAvx512 && ActiveAvx512Vnni()) {
    TileKernel k = Avx512VnniTileKernel(w_type);
    if (k.fn != nullptr) return {k, CpuIsa::kAvx512};
  }
  if (isa >= CpuIsa::kAvx512Bw) {
    TileKernel k = Avx512TileKernel(w_type);
    if (k.fn != nullptr) return {k, CpuIsa::kAvx512Bw};
  }
  if (isa >= CpuIsa::kAvx2) {
    TileKernel k = Avx2TileKernel(w_type);
    if (k.fn != nullptr) return {k, CpuIsa::kAvx2};
  }
  return {ScalarTileKernel(w_type), CpuIsa::kScalar};
}

// Everything a worker needs, so the ParallelFor lambda captures one pointer
// (std::function then stores it inline: no allocation per call).
struct Job {
  const PreparedActivations* a;
  TileFn fn;
  const uint8_t* w;
  size_t w_stride;
  int64_t m;
  int64_t n;
  float* y;
};

// Rows are processed in blocks so that a block's activations (at most
// kRowBlock * k bytes of int8) stay in L2 while the thread's weight columns
// stream past; within a block, each weight tile is reused by all row tiles.
constexpr int64_t kRowBlock = 64;

// Weight rows of a thread's columns are contiguous, so its weights are one
// sequential stream; at decode they come from DRAM (a model's layers exceed
// the caches), and the hardware prefetcher alone leaves the kernels waiting
// (it stops at 4 KiB pages). Prefetching the tile kPrefetchTiles ahead halves
// decode time on weights streamed from DRAM (matmul_bench "cold": Q8_0
// 576 x 49152 8.1 -> 3.1 ms, Q4_1 576 x 1536 170 -> 79 us on one thread;
// distances 4-16 measured alike, 8 best) and costs ~5% when they are cached.
constexpr int64_t kPrefetchTiles = 8;

// Prefetches weight rows [c_begin, c_end) (clipped to the thread's c_limit).
void PrefetchColumns(const Job& job, int64_t c_begin, int64_t c_end, int64_t c_limit) {
  c_end = std::min(c_end, c_limit);
  if (c_begin >= c_end) return;
  const uint8_t* end = job.w + c_end * job.w_stride;
  for (const uint8_t* p = job.w + c_begin * job.w_stride; p < end; p += 64) {
    __builtin_prefetch(p, /*rw=*/0, /*locality=*/3);
  }
}

void RunColumnTiles(const Job& job, int64_t tile_begin, int64_t tile_end) {
  const int64_t c_begin = tile_begin * kMaxTileCols;
  const int64_t c_end = std::min(job.n, tile_end * kMaxTileCols);
  constexpr int64_t kAhead = kPrefetchTiles * kMaxTileCols;
  for (int64_t rb = 0; rb < job.m; rb += kRowBlock) {
    const int64_t rb_end = std::min(job.m, rb + kRowBlock);
    for (int64_t c0 = c_begin; c0 < c_end; c0 += kMaxTileCols) {
      const int cols = static_cast<int>(std::min<int64_t>(kMaxTileCols, c_end - c0));
      const uint8_t* w = job.w + c0 * job.w_stride;
      PrefetchColumns(job, c0 + kAhead, c0 + kAhead + kMaxTileCols, c_end);
      for (int64_t r0 = rb; r0 < rb_end; r0 += kMaxTileRows) {
        const int rows = static_cast<int>(std::min<int64_t>(kMaxTileRows, rb_end - r0));
        job.fn(*job.a, r0, rows, w, job.w_stride, cols, job.y + r0 * job.n + c0, job.n);
      }
    }
  }
}

[[noreturn]] void Die(const absl::Status& status) {
  std::fprintf(stderr, "alignserve: MatMul precondition: %s\n", status.ToString().c_str());
  std::abort();
}

}  // namespace

bool MatMulSupports(DType w_type) { return DequantizeSupports(w_type); }

absl::Status ValidateMatMulWeight(DType w_type, int64_t k) {
  if (!MatMulSupports(w_type)) {
    return absl::InvalidArgumentError(
        absl::StrCat("MatMul: unsupported weight type id ", static_cast<uint32_t>(w_type)));
  }
  const int block = Info(w_type).block_elems;
  if (k <= 0 || k % block != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("MatMul: row length ", k, " is not a multiple of the ",
                     std::string(DTypeName(w_type)), " block (", block, ")"));
  }
  return absl::OkStatus();
}

CpuIsa MatMulKernelIsa(DType w_type) { return SelectKernel(w_type).isa; }

void MatMul(const float* x, int64_t m, int64_t k, const void* w, DType w_type, int64_t n, float* y,
            ThreadPool& pool) {
  if (absl::Status s = ValidateMatMulWeight(w_type, k); !s.ok()) Die(s);
  if (m < 0 || n < 0) Die(absl::InvalidArgumentError("negative m or n"));
  if (m == 0 || n == 0) return;
  const Selected selected = SelectKernel(w_type);
  thread_local ActivationBuffer buffer;
  const PreparedActivations& a = buffer.Prepare(selected.kernel.format, x, m, k, pool);

  const Job job{&a, selected.kernel.fn, static_cast<const uint8_t*>(w), RowBytes(w_type, k), m, n,
                y};
  const Job* job_ptr = &job;
  // Give each thread at least 2^18 multiply-adds, so a second thread is used
  // only from m n k >= 2^19 (decode: the MLP projections and the output head,
  // not the attention ones). Waking a pool thread costs ~5-15 us (an empty
  // 2-way ParallelFor, measured with matmul_bench --pool on a loaded 2-core
  // VM), while a 576 x 576 Q4_1 product takes ~20 us on one AVX-512 thread:
  // below ~2^19 the split saves less than the wake-up costs.
  const int64_t tiles = (n + kMaxTileCols - 1) / kMaxTileCols;
  const int64_t work_per_tile = std::max<int64_t>(1, m * k * kMaxTileCols);
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 18) / work_per_tile);
  pool.ParallelFor(tiles, grain,
                   [job_ptr](int64_t begin, int64_t end) { RunColumnTiles(*job_ptr, begin, end); });
}

}  // namespace alignserve
