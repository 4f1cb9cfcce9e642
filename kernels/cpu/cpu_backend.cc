#include "kernels/cpu/cpu_backend.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/dequantize.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_exact.h"
#include "kernels/cpu/matmul_i16.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cpu/vector_ops.h"
#include "kernels/status_macros.h"

namespace alignserve {
namespace {

constexpr size_t kAlignment = 64;

class HostBuffer final : public DeviceBuffer {
 public:
  HostBuffer(void* data, size_t size) : data_(data), size_(size) {}
  ~HostBuffer() override { std::free(data_); }
  void* data() override { return data_; }
  size_t size() const override { return size_; }

 private:
  void* data_;
  size_t size_;
};

absl::StatusOr<std::unique_ptr<HostBuffer>> AllocateHost(size_t bytes) {
  const size_t rounded = (std::max<size_t>(bytes, 1) + kAlignment - 1) / kAlignment * kAlignment;
  void* p = std::aligned_alloc(kAlignment, rounded);
  if (p == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cpu backend: cannot allocate ", bytes, " bytes of host memory"));
  }
  return std::make_unique<HostBuffer>(p, bytes);
}

class CpuKvCache final : public KvCache {
 public:
  CpuKvCache(const KvCacheSpec& spec, std::vector<std::unique_ptr<HostBuffer>> buffers)
      : KvCache(spec), buffers_(std::move(buffers)) {}
  void* k(int layer) override { return buffers_[2 * layer]->data(); }
  void* v(int layer) override { return buffers_[2 * layer + 1]->data(); }

 private:
  std::vector<std::unique_ptr<HostBuffer>> buffers_;  // K0, V0, K1, V1, ...
};

absl::Status CheckF32(const Tensor& t, const char* what) {
  if (t.dtype != DType::kF32) {
    return absl::InvalidArgumentError(
        absl::StrCat("cpu backend: ", what, " must be F32, got ", t.ShapeString()));
  }
  return absl::OkStatus();
}

absl::Status CheckSameShape(const Tensor& a, const Tensor& b, const char* op) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) {
    return absl::InvalidArgumentError(absl::StrCat("cpu backend: ", op, ": shape mismatch ",
                                                   a.ShapeString(), " vs ", b.ShapeString()));
  }
  return absl::OkStatus();
}

}  // namespace

const char* MatmulModeName(MatmulMode mode) {
  switch (mode) {
    case MatmulMode::kExact:
      return "exact";
    case MatmulMode::kInt16Activations:
      return "i16";
    case MatmulMode::kInt8Activations:
      return "int8";
  }
  return "?";
}

absl::StatusOr<MatmulMode> MatmulModeFromName(std::string_view name) {
  if (name == "exact") return MatmulMode::kExact;
  if (name == "i16") return MatmulMode::kInt16Activations;
  if (name == "int8") return MatmulMode::kInt8Activations;
  return absl::InvalidArgumentError(absl::StrCat(
      "the CPU matmul mode must be exact, i16 or int8, got '", std::string(name), "'"));
}

MatmulMode MatmulModeFromEnv() {
  const char* env = std::getenv("ALIGNSERVE_CPU_MATMUL");
  if (env == nullptr || *env == '\0') return MatmulMode::kExact;
  absl::StatusOr<MatmulMode> mode = MatmulModeFromName(env);
  if (!mode.ok()) {
    static const bool reported = [&] {
      std::fprintf(stderr, "alignserve: ALIGNSERVE_CPU_MATMUL ignored: %s\n",
                   std::string(mode.status().message()).c_str());
      return true;
    }();
    (void)reported;
    return MatmulMode::kExact;
  }
  return *mode;
}

MatmulMode ServingMatmulMode() {
  const char* env = std::getenv("ALIGNSERVE_CPU_MATMUL");
  if (env != nullptr && *env != '\0') return MatmulModeFromEnv();
  return MatMulI16KernelIsa() == CpuIsa::kAvx512 ? MatmulMode::kInt16Activations
                                                 : MatmulMode::kExact;
}

CpuBackend::CpuBackend(ThreadPool* pool, MatmulMode mode)
    : pool_(pool ? *pool : DefaultThreadPool()), matmul_mode_(mode) {
  if (mode == MatmulMode::kInt16Activations && MatMulI16KernelIsa() != CpuIsa::kAvx512) {
    static const bool warned = [] {
      std::fprintf(stderr,
                   "alignserve: i16 products without AVX512-VNNI run the portable reference "
                   "kernels (same results, many times slower); --cpu-matmul exact is faster "
                   "here\n");
      return true;
    }();
    (void)warned;
  }
}

absl::StatusOr<std::unique_ptr<DeviceBuffer>> CpuBackend::Allocate(size_t bytes) {
  ASSIGN_OR_RETURN(std::unique_ptr<HostBuffer> buffer, AllocateHost(bytes));
  return std::unique_ptr<DeviceBuffer>(std::move(buffer));
}

absl::Status CpuBackend::CopyToDevice(void* dst, const void* src, size_t bytes) {
  std::memcpy(dst, src, bytes);
  return absl::OkStatus();
}

absl::Status CpuBackend::CopyToHost(void* dst, const void* src, size_t bytes) {
  std::memcpy(dst, src, bytes);
  return absl::OkStatus();
}

bool CpuBackend::SupportsWeightType(DType dtype) const {
  return matmul_mode_ == MatmulMode::kInt8Activations ? ::alignserve::MatMulSupports(dtype)
                                                      : MatMulExactSupports(dtype);
}

bool CpuBackend::UsesI16(DType w_type) const {
  return matmul_mode_ == MatmulMode::kInt16Activations && MatMulI16Supports(w_type);
}

bool CpuBackend::SupportsKvCacheDtype(DType dtype) const {
  return cpu::PagedAttentionSupportsKv(dtype);
}

absl::StatusOr<std::unique_ptr<KvCache>> CpuBackend::AllocateKvCache(const KvCacheSpec& spec) {
  if (!SupportsKvCacheDtype(spec.dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cpu backend: the KV cache must be F32 or F16, got ", std::string(DTypeName(spec.dtype))));
  }
  std::vector<std::unique_ptr<HostBuffer>> buffers;
  const size_t bytes = spec.bytes_per_block_per_layer() * spec.num_blocks;
  for (int i = 0; i < 2 * spec.num_layers; ++i) {
    ASSIGN_OR_RETURN(std::unique_ptr<HostBuffer> buffer, AllocateHost(bytes));
    std::memset(buffer->data(), 0, bytes);
    buffers.push_back(std::move(buffer));
  }
  return std::unique_ptr<KvCache>(new CpuKvCache(spec, std::move(buffers)));
}

absl::StatusOr<DeviceBatch> CpuBackend::UploadBatch(const BatchLayout& layout) {
  step_ = layout;
  DeviceBatch b;
  b.num_tokens = step_.num_tokens();
  b.num_seqs = step_.num_seqs();
  b.num_logits = static_cast<int32_t>(step_.logits_indices.size());
  b.max_blocks_per_seq = step_.max_blocks_per_seq;
  for (int s = 0; s < b.num_seqs; ++s) {
    b.max_query_len = std::max(b.max_query_len, step_.query_start[s + 1] - step_.query_start[s]);
    b.max_context_len = std::max(b.max_context_len, step_.context_lens[s]);
  }
  b.token_ids = step_.token_ids.data();
  b.positions = step_.positions.data();
  b.query_start = step_.query_start.data();
  b.context_lens = step_.context_lens.data();
  b.block_tables = step_.block_tables.data();
  b.slot_mapping = step_.slot_mapping.data();
  b.logits_indices = step_.logits_indices.data();
  return b;
}

absl::Status CpuBackend::Embedding(const DeviceBatch& batch, const Tensor& table, Tensor& out) {
  RETURN_IF_ERROR(CheckF32(out, "embedding output"));
  const int64_t dim = table.cols();
  for (int t = 0; t < batch.num_tokens; ++t) {
    const int32_t id = batch.token_ids[t];
    if (id < 0 || id >= table.rows()) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " is outside the vocabulary of ", table.rows()));
    }
    const char* row = static_cast<const char*>(table.data) + id * table.row_bytes();
    RETURN_IF_ERROR(DequantizeRow(table.dtype, row, dim, out.as<float>() + t * dim));
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  RETURN_IF_ERROR(CheckSameShape(x, out, "rms_norm"));
  const int64_t n = x.cols();
  pool_.ParallelFor(x.rows(), 4, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      cpu::RmsNormRow(x.as<float>() + r * n, weight.as<float>(), eps, n, out.as<float>() + r * n);
    }
  });
  return absl::OkStatus();
}

absl::Status CpuBackend::AddRmsNorm(Tensor& residual, const Tensor& x, const Tensor& weight,
                                    float eps, Tensor& out) {
  RETURN_IF_ERROR(CheckSameShape(x, residual, "add_rms_norm"));
  const int64_t n = x.cols();
  pool_.ParallelFor(x.rows(), 4, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      cpu::AddRmsNormRow(residual.as<float>() + r * n, x.as<float>() + r * n, weight.as<float>(),
                         eps, n, out.as<float>() + r * n);
    }
  });
  return absl::OkStatus();
}

absl::Status CpuBackend::CheckMatMul(const Tensor& x, const Tensor& w, const Tensor& y) const {
  RETURN_IF_ERROR(CheckF32(x, "matmul input"));
  if (x.cols() != w.cols() || y.cols() != w.rows() || y.rows() != x.rows()) {
    return absl::InvalidArgumentError(absl::StrCat("cpu backend: matmul shapes ", x.ShapeString(),
                                                   " x ", w.ShapeString(), "^T -> ",
                                                   y.ShapeString()));
  }
  if (!SupportsWeightType(w.dtype)) {
    return absl::UnimplementedError(absl::StrCat("cpu backend: no matmul kernel for ",
                                                 std::string(DTypeName(w.dtype)), " weights"));
  }
  return absl::OkStatus();
}

void CpuBackend::AddBias(const Tensor* bias, Tensor& y) {
  if (bias == nullptr) return;
  for (int64_t r = 0; r < y.rows(); ++r) {
    cpu::AddRow(y.as<float>() + r * y.cols(), bias->as<float>(), y.cols());
  }
}

absl::Status CpuBackend::MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  RETURN_IF_ERROR(CheckMatMul(x, w, y));
  if (UsesI16(w.dtype)) {
    MatMulI16(x.as<float>(), x.rows(), x.cols(), w.data, w.dtype, w.rows(), y.as<float>(), pool_);
  } else if (matmul_mode_ == MatmulMode::kInt8Activations) {
    ::alignserve::MatMul(x.as<float>(), x.rows(), x.cols(), w.data, w.dtype, w.rows(),
                         y.as<float>(), pool_);
  } else {
    MatMulExact(x.as<float>(), x.rows(), x.cols(), w.data, w.dtype, w.rows(), y.as<float>(), pool_);
  }
  AddBias(bias, y);
  return absl::OkStatus();
}

absl::Status CpuBackend::MatMulShared(const Tensor& x, std::span<const MatMulTarget> targets) {
  // Every product is checked before any runs: a bad one writes nothing.
  for (const MatMulTarget& t : targets) RETURN_IF_ERROR(CheckMatMul(x, *t.w, *t.y));
  // One job when every weight takes the same kernel family.
  const bool all_i16 = std::all_of(targets.begin(), targets.end(),
                                   [&](const MatMulTarget& t) { return UsesI16(t.w->dtype); });
  const bool all_exact = std::none_of(targets.begin(), targets.end(),
                                      [&](const MatMulTarget& t) { return UsesI16(t.w->dtype); }) &&
                         matmul_mode_ != MatmulMode::kInt8Activations;
  if (!(all_i16 || all_exact) || targets.size() > kMaxSharedParts) {
    return Backend::MatMulShared(x, targets);
  }
  MatMulPart parts[kMaxSharedParts];
  for (size_t i = 0; i < targets.size(); ++i) {
    const MatMulTarget& t = targets[i];
    parts[i] = {t.w->data, t.w->dtype, t.w->rows(), t.y->as<float>()};
  }
  const std::span<const MatMulPart> part_span(parts, targets.size());
  if (all_i16) {
    MatMulI16Shared(x.as<float>(), x.rows(), x.cols(), part_span, pool_);
  } else {
    MatMulExactShared(x.as<float>(), x.rows(), x.cols(), part_span, pool_);
  }
  for (const MatMulTarget& t : targets) AddBias(t.bias, *t.y);
  return absl::OkStatus();
}

absl::Status CpuBackend::Rope(const DeviceBatch& batch, const RopeTable& rope, int head_dim,
                              Tensor& q, Tensor& k) {
  const int q_heads = static_cast<int>(q.cols() / head_dim);
  const int k_heads = static_cast<int>(k.cols() / head_dim);
  const int half = rope.rotary_dim / 2;
  for (int t = 0; t < batch.num_tokens; ++t) {
    if (batch.positions[t] < 0 || batch.positions[t] >= rope.max_positions) {
      return absl::OutOfRangeError(absl::StrCat("position ", batch.positions[t],
                                                " is past the rope table of ", rope.max_positions,
                                                " positions"));
    }
  }
  pool_.ParallelFor(batch.num_tokens, 8, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const float* cos = rope.cos + static_cast<int64_t>(batch.positions[t]) * half;
      const float* sin = rope.sin + static_cast<int64_t>(batch.positions[t]) * half;
      cpu::RopeRow(q.as<float>() + t * q.cols(), q_heads, head_dim, rope.rotary_dim, cos, sin,
                   rope.interleaved);
      cpu::RopeRow(k.as<float>() + t * k.cols(), k_heads, head_dim, rope.rotary_dim, cos, sin,
                   rope.interleaved);
    }
  });
  return absl::OkStatus();
}

absl::Status CpuBackend::SiluMul(const Tensor& gate, const Tensor& up, Tensor& out) {
  RETURN_IF_ERROR(CheckSameShape(gate, up, "silu_mul"));
  const int64_t n = gate.cols();
  pool_.ParallelFor(gate.rows(), 4, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      cpu::SiluMulRow(gate.as<float>() + r * n, up.as<float>() + r * n, n, out.as<float>() + r * n);
    }
  });
  return absl::OkStatus();
}

absl::Status CpuBackend::Add(Tensor& x, const Tensor& y) {
  RETURN_IF_ERROR(CheckSameShape(x, y, "add"));
  cpu::AddRow(x.as<float>(), y.as<float>(), x.elements());
  return absl::OkStatus();
}

absl::Status CpuBackend::WriteKv(const DeviceBatch& batch, const Tensor& k, const Tensor& v,
                                 KvCache& cache, int layer) {
  const KvCacheSpec& spec = cache.spec();
  const int64_t row = static_cast<int64_t>(spec.num_kv_heads) * spec.head_dim;
  const int64_t slots = static_cast<int64_t>(spec.num_blocks) * spec.block_size;
  const bool half = spec.dtype == DType::kF16;
  const size_t elem_bytes = half ? sizeof(uint16_t) : sizeof(float);
  char* k_cache = static_cast<char*>(cache.k(layer));
  char* v_cache = static_cast<char*>(cache.v(layer));
  for (int t = 0; t < batch.num_tokens; ++t) {
    const int64_t slot = batch.slot_mapping[t];
    if (slot == kPaddingSlot) continue;
    if (slot < 0 || slot >= slots) {
      return absl::OutOfRangeError(absl::StrCat("kv slot ", slot, " outside the cache"));
    }
    const float* k_row = k.as<float>() + t * row;
    const float* v_row = v.as<float>() + t * row;
    char* k_dst = k_cache + slot * row * elem_bytes;
    char* v_dst = v_cache + slot * row * elem_bytes;
    if (half) {
      cpu::F32ToFp16Row(k_row, row, reinterpret_cast<uint16_t*>(k_dst));
      cpu::F32ToFp16Row(v_row, row, reinterpret_cast<uint16_t*>(v_dst));
    } else {
      std::memcpy(k_dst, k_row, row * sizeof(float));
      std::memcpy(v_dst, v_row, row * sizeof(float));
    }
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::PagedAttention(const DeviceBatch& batch, const Tensor& q, KvCache& cache,
                                        int layer, int num_heads, float scale, Tensor& out) {
  const KvCacheSpec& spec = cache.spec();
  cpu::AttentionShape shape{num_heads, spec.num_kv_heads, spec.head_dim, spec.block_size, scale};
  cpu::PagedAttention(batch, shape, q.as<float>(), cache.k(layer), cache.v(layer), spec.dtype,
                      out.as<float>(), pool_);
  return absl::OkStatus();
}

absl::Status CpuBackend::GatherRows(const DeviceBatch& batch, const Tensor& x, Tensor& out) {
  const size_t row_bytes = x.row_bytes();
  for (int i = 0; i < batch.num_logits; ++i) {
    std::memcpy(static_cast<char*>(out.data) + i * row_bytes,
                static_cast<const char*>(x.data) + batch.logits_indices[i] * row_bytes, row_bytes);
  }
  return absl::OkStatus();
}

namespace {

// The lowest index of the row's maximum, never a NaN (0 when all are NaN):
// the host sampler's greedy choice. Two passes: the maximum (`v > m ? v :
// m`, which skips NaN, is what SSE's maxps(v, m) computes lane by lane),
// then the first element equal to it.
int32_t RowArgMax(const float* row, int64_t cols) {
  float max = -std::numeric_limits<float>::infinity();
  int64_t c = 0;
#if defined(__x86_64__)
  __m128 m[4];
  for (__m128& v : m) v = _mm_set1_ps(max);
  for (; c + 16 <= cols; c += 16) {
    for (int j = 0; j < 4; ++j) m[j] = _mm_max_ps(_mm_loadu_ps(row + c + 4 * j), m[j]);
  }
  alignas(16) float lanes[16];
  for (int j = 0; j < 4; ++j) _mm_store_ps(lanes + 4 * j, m[j]);
  for (float v : lanes) max = v > max ? v : max;
#endif
  for (; c < cols; ++c) max = row[c] > max ? row[c] : max;
  for (c = 0; c < cols; ++c) {
    if (row[c] == max) return static_cast<int32_t>(c);
  }
  return 0;
}

}  // namespace

absl::Status CpuBackend::ArgMax(const Tensor& logits, Tensor& ids) {
  if (logits.dtype != DType::kF32 || ids.dtype != DType::kI32 || ids.elements() < logits.rows()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cpu backend: argmax of ", logits.ShapeString(), " into ", ids.ShapeString()));
  }
  const int64_t cols = logits.cols();
  const float* data = logits.as<float>();
  int32_t* out = ids.as<int32_t>();
  pool_.ParallelFor(logits.rows(),
                    std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(cols, 1)),
                    [&](int64_t b, int64_t e) {
                      for (int64_t r = b; r < e; ++r) out[r] = RowArgMax(data + r * cols, cols);
                    });
  return absl::OkStatus();
}

absl::Status CpuBackend::CopyBlocks(std::span<const BlockCopy> copies, KvCache& cache) {
  const KvCacheSpec& spec = cache.spec();
  const size_t block_bytes = spec.bytes_per_block_per_layer();
  for (int layer = 0; layer < spec.num_layers; ++layer) {
    for (void* base : {cache.k(layer), cache.v(layer)}) {
      char* p = static_cast<char*>(base);
      for (const BlockCopy& c : copies) {
        std::memcpy(p + c.dst * block_bytes, p + c.src * block_bytes, block_bytes);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace alignserve
