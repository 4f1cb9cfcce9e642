// CpuBackend: the reference Backend, on host memory. Multi-threaded over a
// ThreadPool; SIMD kernels are chosen at run time for the CPU.
//
// Matrix products: by default MatMulExact (kernels/cpu/matmul_exact.h), which
// equals dequantizing the weights and multiplying in f32, so this backend
// agrees with transformers to float rounding and can serve as the oracle
// for other backends. MatmulMode::kInt16Activations rounds activations to
// 16 bits per 32-element block and sums Q4_0/Q4_1/Q8_0 products exactly in
// integers (kernels/cpu/matmul_i16.h; other weight types stay exact): up to
// 1.7x faster batched products, batch invariant like the exact mode, logit
// errors ~1e-2. MatmulMode::kInt8Activations selects the llama.cpp-style
// kernels (kernels/cpu/matmul.h) that round activations to 8 bits: faster
// on cache-resident decode matrices, with logit errors of order 1.
// Activations are f32; the KV cache is f32 (exact) unless SetKvCacheDtype
// chose f16 (half the bytes that decode attention reads, values rounded to
// binary16 as they are written); weights may be any type
// MatMulSupports() accepts and are used in place (mmapped files need no copy).
// Thread-safety: one driving thread, like every Backend.
#ifndef ALIGNSERVE_KERNELS_CPU_CPU_BACKEND_H_
#define ALIGNSERVE_KERNELS_CPU_CPU_BACKEND_H_

#include <memory>

#include "kernels/backend.h"
#include "kernels/thread_pool.h"

namespace alignserve {

enum class MatmulMode { kExact, kInt16Activations, kInt8Activations };

// "exact", "i16" or "int8".
const char* MatmulModeName(MatmulMode mode);
// "exact", "i16" or "int8"; InvalidArgument for another name.
absl::StatusOr<MatmulMode> MatmulModeFromName(std::string_view name);
// ALIGNSERVE_CPU_MATMUL=exact|i16|int8 (default exact; an unknown value is
// reported on stderr once and ignored). What CpuBackend() uses: the
// reference numerics unless asked otherwise.
MatmulMode MatmulModeFromEnv();
// The mode the server runs with when --cpu-matmul is auto:
// ALIGNSERVE_CPU_MATMUL when set, else i16 where the CPU has AVX512-VNNI
// (its fast kernels) and exact elsewhere.
MatmulMode ServingMatmulMode();

class CpuBackend final : public Backend {
 public:
  // pool: the threads to use; nullptr means DefaultThreadPool().
  explicit CpuBackend(ThreadPool* pool = nullptr, MatmulMode mode = MatmulModeFromEnv());

  std::string_view name() const override { return "cpu"; }
  DType activation_dtype() const override { return DType::kF32; }
  bool shares_host_memory() const override { return true; }
  // F32 and F16.
  bool SupportsKvCacheDtype(DType dtype) const override;

  absl::StatusOr<std::unique_ptr<DeviceBuffer>> Allocate(size_t bytes) override;
  absl::Status CopyToDevice(void* dst, const void* src, size_t bytes) override;
  absl::Status CopyToHost(void* dst, const void* src, size_t bytes) override;
  absl::Status Synchronize() override { return absl::OkStatus(); }
  bool SupportsWeightType(DType dtype) const override;
  absl::StatusOr<std::unique_ptr<KvCache>> AllocateKvCache(const KvCacheSpec& spec) override;
  absl::StatusOr<DeviceBatch> UploadBatch(const BatchLayout& layout) override;

  absl::Status Embedding(const DeviceBatch& batch, const Tensor& table, Tensor& out) override;
  absl::Status RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) override;
  absl::Status AddRmsNorm(Tensor& residual, const Tensor& x, const Tensor& weight, float eps,
                          Tensor& out) override;
  absl::Status MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) override;
  absl::Status MatMulShared(const Tensor& x, std::span<const MatMulTarget> targets) override;
  absl::Status Rope(const DeviceBatch& batch, const RopeTable& rope, int head_dim, Tensor& q,
                    Tensor& k) override;
  absl::Status SiluMul(const Tensor& gate, const Tensor& up, Tensor& out) override;
  absl::Status Add(Tensor& x, const Tensor& y) override;
  absl::Status WriteKv(const DeviceBatch& batch, const Tensor& k, const Tensor& v, KvCache& cache,
                       int layer) override;
  absl::Status PagedAttention(const DeviceBatch& batch, const Tensor& q, KvCache& cache, int layer,
                              int num_heads, float scale, Tensor& out) override;
  absl::Status GatherRows(const DeviceBatch& batch, const Tensor& x, Tensor& out) override;
  absl::Status CopyBlocks(std::span<const BlockCopy> copies, KvCache& cache) override;
  absl::Status ArgMax(const Tensor& logits, Tensor& ids) override;

 private:
  // Whether a product by a weight of this type runs MatMulI16.
  bool UsesI16(DType w_type) const;
  // MatMul's shape and weight-type checks.
  absl::Status CheckMatMul(const Tensor& x, const Tensor& w, const Tensor& y) const;
  static void AddBias(const Tensor* bias, Tensor& y);

  ThreadPool& pool_;
  const MatmulMode matmul_mode_;
  BatchLayout step_;  // the uploaded layout; DeviceBatch points into it
};

}  // namespace alignserve

#endif  // ALIGNSERVE_KERNELS_CPU_CPU_BACKEND_H_
