// Activation rows prepared once per MatMul call in the form the weight type's
// dot-product kernel consumes:
//   kF32     the caller's rows as they are (F32/F16/BF16 weights: float
//            weights are always multiplied in f32, never with rounded
//            activations, since this backend is the reference for others);
//   kQ8x32   int8 with one float scale per 32 (Q4_0/Q4_1/Q5_0/Q5_1/Q8_0),
//            plus d * sum(q) per block for the min term of Q4_1/Q5_1
//            (ggml's Q8_0 / Q8_1 idea, with a float scale instead of fp16);
//   kQ8x256  int8 with one float scale per 256 and integer sums of each 16
//            (ggml's Q8_K idea) for the K-quants. The sums are int16
//            (|sum| <= 16 * 127) so SIMD kernels multiply them by 16-bit
//            sub-block scales with one vpmaddwd.
// Quantization is symmetric: d = max|x| / 127 over the block, q = round(x / d)
// (nearest, ties to even), so |x - d*q| <= d / 2. It is portable code and
// gives the same bytes on every ISA, so all dot-product paths see identical
// integers.
// Thread-safety: ActivationBuffer is single-owner (MatMul keeps one per
// calling thread); PreparedActivations is a read-only view that worker
// threads share.
#ifndef ALIGNSERVE_KERNELS_CPU_QUANTIZE_ACTIVATIONS_H_
#define ALIGNSERVE_KERNELS_CPU_QUANTIZE_ACTIVATIONS_H_

#include <cstdint>
#include <vector>

#include "kernels/thread_pool.h"

namespace alignserve {

enum class ActivationFormat { kF32, kQ8x32, kQ8x256 };

// Block length of the scale `d` for a format (1 for the float formats).
int ActivationBlock(ActivationFormat format);

struct PreparedActivations {
  ActivationFormat format = ActivationFormat::kF32;
  int64_t m = 0;
  int64_t k = 0;
  const float* f32 = nullptr;          // kF32: [m, k]
  const int8_t* qs = nullptr;          // kQ8*: [m, k]
  const float* d = nullptr;            // kQ8*: [m, k / block]
  const float* block_sum = nullptr;    // kQ8x32: [m, k / 32] d * sum(q) of each block
  const int16_t* group_sum = nullptr;  // kQ8x256: [m, k / 16] sum(q) of each 16
};

// Quantizes one row of k (a multiple of `block`) floats: qs[k], d[k / block].
void QuantizeRowQ8(const float* x, int64_t k, int block, int8_t* qs, float* d);

// Owns the storage behind PreparedActivations; grows, never shrinks, so a
// steady stream of same-sized calls allocates nothing.
class ActivationBuffer {
 public:
  // x is [m, k] row-major and must outlive the returned view (kF32 points
  // into it). k must be a multiple of ActivationBlock(format). Rows are
  // quantized in parallel on `pool` when m is large.
  const PreparedActivations& Prepare(ActivationFormat format, const float* x, int64_t m, int64_t k,
                                     ThreadPool& pool);

 private:
  void PrepareRows(int64_t begin, int64_t end);

  PreparedActivations view_;
  const float* x_ = nullptr;
  std::vector<int8_t> qs_;
  std::vector<float> d_;
  std::vector<float> block_sum_;
  std::vector<int16_t> group_sum_;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_KERNELS_CPU_QUANTIZE_ACTIVATIONS_H_
