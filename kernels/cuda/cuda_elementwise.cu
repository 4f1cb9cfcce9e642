// Row-wise and elementwise kernels of the CUDA backend (declared in
// cuda_kernels.h): f32 math everywhere, one block per row for row
// operations; the bf16 norms of the hot path load 16-byte pieces.
#include "kernels/cuda/cuda_device_utils.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace alignserve::cuda {
namespace {

constexpr int kRowThreads = 256;
constexpr int kFlatThreads = 256;

// Blocks for a grid-stride loop over n elements; capped so the grid stays
// small, each thread then covers several elements.
unsigned FlatBlocks(int64_t n) {
  const int64_t blocks = (n + kFlatThreads - 1) / kFlatThreads;
  return static_cast<unsigned>(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);
}

template <typename TableT, typename OutT>
__global__ void EmbeddingKernel(const int32_t* ids, const TableT* table, int64_t vocab, int64_t dim,
                                OutT* out) {
  const int t = blockIdx.x;
  const int32_t id = ids[t];
  if (id < 0 || id >= vocab) return;  // validated on the host; never read out of bounds
  const TableT* row = table + static_cast<int64_t>(id) * dim;
  OutT* dst = out + static_cast<int64_t>(t) * dim;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) dst[i] = FromF32<OutT>(ToF32(row[i]));
}

template <typename InT, typename OutT>
__global__ void RmsNormKernel(const InT* x, const float* weight, float eps, int64_t cols,
                              OutT* out) {
  const InT* row = x + blockIdx.x * cols;
  OutT* dst = out + blockIdx.x * cols;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    const float v = ToF32(row[i]);
    ss += v * v;
  }
  ss = BlockSum(ss);
  const float scale = 1.0f / sqrtf(ss / static_cast<float>(cols) + eps);
  // Each thread rewrites only the elements it read, so x == out is safe.
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    dst[i] = FromF32<OutT>(ToF32(row[i]) * scale * weight[i]);
  }
}

// The norm is taken of the residual as stored (rounded to T), which is what
// the next block reads back.
template <typename T>
__global__ void AddRmsNormKernel(T* residual, const T* x, const float* weight, float eps,
                                 int64_t cols, T* out) {
  T* res = residual + blockIdx.x * cols;
  const T* in = x + blockIdx.x * cols;
  T* dst = out + blockIdx.x * cols;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    const T sum = FromF32<T>(ToF32(res[i]) + ToF32(in[i]));
    res[i] = sum;
    const float v = ToF32(sum);
    ss += v * v;
  }
  ss = BlockSum(ss);
  const float scale = 1.0f / sqrtf(ss / static_cast<float>(cols) + eps);
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    dst[i] = FromF32<T>(ToF32(res[i]) * scale * weight[i]);
  }
}

// bf16 rows whose width is a multiple of 8 and at most kRowThreads * 8 *
// kMaxVecs: each thread keeps its 16-byte pieces of the row in registers,
// so the row is read once and every load is issued before the first use
// (the scalar loop above waits on one 2-byte load per iteration: ~16 us for
// one 4,096-wide row, against ~3 us here). Same arithmetic as the scalar
// kernels: the residual is rounded to bf16 before it is squared.
constexpr int kMaxVecs = 4;

__device__ __forceinline__ void Unpack8(const uint4& raw, float (&f)[8]) {
  const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 p = __bfloat1622float2(pairs[i]);
    f[2 * i] = p.x;
    f[2 * i + 1] = p.y;
  }
}

__device__ __forceinline__ uint4 Pack8(const float (&f)[8]) {
  uint4 raw;
  __nv_bfloat162* pairs = reinterpret_cast<__nv_bfloat162*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) pairs[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
  return raw;
}

// residual (if add) += x; out = RmsNorm(residual or x) * weight, for bf16.
template <bool kAdd>
__global__ void __launch_bounds__(kRowThreads)
    RmsNormVecKernel(bf16* residual, const bf16* x, const float* weight, float eps, int cols,
                     bf16* out) {
  const int64_t base = static_cast<int64_t>(blockIdx.x) * cols;
  const int vecs = cols / 8;
  float v[kMaxVecs][8];
  float ss = 0.0f;
#pragma unroll
  for (int j = 0; j < kMaxVecs; ++j) {
    const int c = (threadIdx.x + j * kRowThreads) * 8;
    if (c / 8 >= vecs) break;
    Unpack8(*reinterpret_cast<const uint4*>(x + base + c), v[j]);
    if constexpr (kAdd) {
      float r[8];
      Unpack8(*reinterpret_cast<const uint4*>(residual + base + c), r);
#pragma unroll
      for (int i = 0; i < 8; ++i) v[j][i] = __bfloat162float(__float2bfloat16_rn(v[j][i] + r[i]));
      *reinterpret_cast<uint4*>(residual + base + c) = Pack8(v[j]);
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) ss += v[j][i] * v[j][i];
  }
  ss = BlockSum(ss);
  const float scale = 1.0f / sqrtf(ss / static_cast<float>(cols) + eps);
#pragma unroll
  for (int j = 0; j < kMaxVecs; ++j) {
    const int c = (threadIdx.x + j * kRowThreads) * 8;
    if (c / 8 >= vecs) break;
    const float4 w0 = *reinterpret_cast<const float4*>(weight + c);
    const float4 w1 = *reinterpret_cast<const float4*>(weight + c + 4);
    const float w[8] = {w0.x, w0.y, w0.z, w0.w, w1.x, w1.y, w1.z, w1.w};
    float o[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) o[i] = v[j][i] * scale * w[i];
    *reinterpret_cast<uint4*>(out + base + c) = Pack8(o);
  }
}

// True if a bf16 row of `cols` fits RmsNormVecKernel (16-byte aligned
// pieces: every pointer is a cudaMalloc base plus whole rows of 8k elements).
bool VecRowFits(int64_t cols, const void* a, const void* b, const void* c, const float* w) {
  auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return cols % 8 == 0 && cols <= int64_t{kRowThreads} * 8 * kMaxVecs && aligned(a) && aligned(b) &&
         aligned(c) && aligned(w);
}

// One block per token; threads walk the (head, pair) items of q then k.
template <typename T>
__global__ void RopeKernel(RopeArgs a, T* q, T* k) {
  const int t = blockIdx.x;
  const int half = a.rotary_dim / 2;
  const int pos = a.positions[t];
  const float* cos = a.cos + static_cast<int64_t>(pos) * half;
  const float* sin = a.sin + static_cast<int64_t>(pos) * half;
  const int items = (a.q_heads + a.k_heads) * half;
  for (int item = threadIdx.x; item < items; item += blockDim.x) {
    const int head = item / half;
    const int i = item % half;
    T* v = head < a.q_heads
               ? q + (static_cast<int64_t>(t) * a.q_heads + head) * a.head_dim
               : k + (static_cast<int64_t>(t) * a.k_heads + head - a.q_heads) * a.head_dim;
    const int ia = a.interleaved ? 2 * i : i;
    const int ib = a.interleaved ? 2 * i + 1 : i + half;
    const float x0 = ToF32(v[ia]), x1 = ToF32(v[ib]);
    v[ia] = FromF32<T>(x0 * cos[i] - x1 * sin[i]);
    v[ib] = FromF32<T>(x1 * cos[i] + x0 * sin[i]);
  }
}

// One block per token: threads walk q's (head, pair) items, then k's
// (rotated into the cache row), then v's elements (copied).
template <typename T>
__global__ void RopeWriteKvKernel(RopeArgs a, const int64_t* slots, int64_t num_slots, T* q,
                                  const T* k, const T* v, bf16* k_cache, bf16* v_cache) {
  const int t = blockIdx.x;
  const int half = a.rotary_dim / 2;
  const int pos = a.positions[t];
  const float* cos = a.cos + static_cast<int64_t>(pos) * half;
  const float* sin = a.sin + static_cast<int64_t>(pos) * half;
  for (int item = threadIdx.x; item < a.q_heads * half; item += blockDim.x) {
    const int head = item / half, i = item % half;
    T* x = q + (static_cast<int64_t>(t) * a.q_heads + head) * a.head_dim;
    const int ia = a.interleaved ? 2 * i : i;
    const int ib = a.interleaved ? 2 * i + 1 : i + half;
    const float x0 = ToF32(x[ia]), x1 = ToF32(x[ib]);
    x[ia] = FromF32<T>(x0 * cos[i] - x1 * sin[i]);
    x[ib] = FromF32<T>(x1 * cos[i] + x0 * sin[i]);
  }
  const int64_t slot = slots[t];
  if (slot < 0 || slot >= num_slots) return;  // padding; bounds validated on the host
  const int64_t row = static_cast<int64_t>(a.k_heads) * a.head_dim;
  const T* k_row = k + t * row;
  const T* v_row = v + t * row;
  bf16* k_out = k_cache + slot * row;
  bf16* v_out = v_cache + slot * row;
  // Each item is one element of k's row: rotated dims pair up through the
  // table, dims past rotary_dim are copied.
  for (int64_t e = threadIdx.x; e < row; e += blockDim.x) {
    const int d = static_cast<int>(e % a.head_dim);
    const int64_t head_base = e - d;
    float out = ToF32(k_row[e]);
    if (d < a.rotary_dim) {
      // The pair (ia, ib) of rotation index i that holds dim d.
      const int i = a.interleaved ? d / 2 : d % half;
      const bool first = a.interleaved ? d % 2 == 0 : d < half;
      const int ia = a.interleaved ? 2 * i : i;
      const int ib = a.interleaved ? 2 * i + 1 : i + half;
      const float x0 = ToF32(k_row[head_base + ia]), x1 = ToF32(k_row[head_base + ib]);
      out = first ? x0 * cos[i] - x1 * sin[i] : x1 * cos[i] + x0 * sin[i];
    }
    k_out[e] = FromF32<bf16>(out);
    v_out[e] = FromF32<bf16>(ToF32(v_row[e]));
  }
}

template <typename T>
__global__ void SiluMulKernel(const T* gate, const T* up, int64_t n, T* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = ToF32(gate[i]);
    out[i] = FromF32<T>(g / (1.0f + expf(-g)) * ToF32(up[i]));
  }
}

template <typename T>
__global__ void AddKernel(T* x, const T* y, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    x[i] = FromF32<T>(ToF32(x[i]) + ToF32(y[i]));
  }
}

template <typename T>
__global__ void WriteKvKernel(const int64_t* slots, const T* k, const T* v, int64_t row,
                              int64_t num_slots, bf16* k_cache, bf16* v_cache) {
  const int t = blockIdx.x;
  const int64_t slot = slots[t];
  if (slot < 0 || slot >= num_slots) return;  // validated on the host
  for (int64_t i = threadIdx.x; i < row; i += blockDim.x) {
    k_cache[slot * row + i] = FromF32<bf16>(ToF32(k[t * row + i]));
    v_cache[slot * row + i] = FromF32<bf16>(ToF32(v[t * row + i]));
  }
}

template <typename U>
__global__ void GatherRowsKernel(const int32_t* indices, const U* x, int64_t x_rows,
                                 int64_t row_units, U* out) {
  const int i = blockIdx.x;
  const int32_t src = indices[i];
  if (src < 0 || src >= x_rows) return;  // validated on the host
  for (int64_t j = threadIdx.x; j < row_units; j += blockDim.x) {
    out[i * row_units + j] = x[src * row_units + j];
  }
}

template <typename T>
__global__ void ToF32Kernel(const T* src, int64_t n, float* dst) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dst[i] = ToF32(src[i]);
  }
}

template <typename OutT>
__global__ void StoreRowsKernel(const float* src, const float* bias, int64_t rows, int64_t cols,
                                OutT* dst) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float b = bias != nullptr ? bias[i % cols] : 0.0f;
    dst[i] = FromF32<OutT>(src[i] + b);
  }
}

template <typename TableT>
cudaError_t EmbeddingFor(const int32_t* ids, int num_tokens, const void* table, int64_t vocab,
                         int64_t dim, void* out, DType out_type, cudaStream_t stream) {
  return ALIGNSERVE_DISPATCH_ACT(
      out_type, OutT,
      EmbeddingKernel<<<num_tokens, kRowThreads, 0, stream>>>(
          ids, static_cast<const TableT*>(table), vocab, dim, static_cast<OutT*>(out)));
}

template <typename InT>
cudaError_t RmsNormFor(const void* x, const float* weight, float eps, int64_t rows, int64_t cols,
                       void* out, DType out_type, cudaStream_t stream) {
  return ALIGNSERVE_DISPATCH_ACT(
      out_type, OutT,
      RmsNormKernel<<<static_cast<unsigned>(rows), kRowThreads, 0, stream>>>(
          static_cast<const InT*>(x), weight, eps, cols, static_cast<OutT*>(out)));
}

}  // namespace

cudaError_t LaunchEmbedding(const int32_t* ids, int num_tokens, const void* table, DType table_type,
                            int64_t vocab, int64_t dim, void* out, DType out_type,
                            cudaStream_t stream) {
  if (num_tokens == 0) return cudaSuccess;
  switch (table_type) {
    case DType::kF32:
      return EmbeddingFor<float>(ids, num_tokens, table, vocab, dim, out, out_type, stream);
    case DType::kF16:
      return EmbeddingFor<__half>(ids, num_tokens, table, vocab, dim, out, out_type, stream);
    case DType::kBF16:
      return EmbeddingFor<bf16>(ids, num_tokens, table, vocab, dim, out, out_type, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

cudaError_t LaunchRmsNorm(const void* x, DType x_type, const float* weight, float eps, int64_t rows,
                          int64_t cols, void* out, DType out_type, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (x_type == DType::kBF16 && out_type == DType::kBF16 && VecRowFits(cols, x, out, x, weight)) {
    RmsNormVecKernel<false><<<static_cast<unsigned>(rows), kRowThreads, 0, stream>>>(
        nullptr, static_cast<const bf16*>(x), weight, eps, static_cast<int>(cols),
        static_cast<bf16*>(out));
    return cudaGetLastError();
  }
  switch (x_type) {
    case DType::kF32:
      return RmsNormFor<float>(x, weight, eps, rows, cols, out, out_type, stream);
    case DType::kBF16:
      return RmsNormFor<bf16>(x, weight, eps, rows, cols, out, out_type, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

cudaError_t LaunchAddRmsNorm(void* residual, const void* x, const float* weight, float eps,
                             int64_t rows, int64_t cols, void* out, DType type,
                             cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (type == DType::kBF16 && VecRowFits(cols, residual, x, out, weight)) {
    RmsNormVecKernel<true><<<static_cast<unsigned>(rows), kRowThreads, 0, stream>>>(
        static_cast<bf16*>(residual), static_cast<const bf16*>(x), weight, eps,
        static_cast<int>(cols), static_cast<bf16*>(out));
    return cudaGetLastError();
  }
  return ALIGNSERVE_DISPATCH_ACT(
      type, T,
      AddRmsNormKernel<<<static_cast<unsigned>(rows), kRowThreads, 0, stream>>>(
          static_cast<T*>(residual), static_cast<const T*>(x), weight, eps, cols,
          static_cast<T*>(out)));
}

cudaError_t LaunchRope(const RopeArgs& args, void* q, void* k, DType type, cudaStream_t stream) {
  if (args.num_tokens == 0 || args.rotary_dim < 2) return cudaSuccess;
  return ALIGNSERVE_DISPATCH_ACT(type, T,
                                 RopeKernel<<<args.num_tokens, kRowThreads, 0, stream>>>(
                                     args, static_cast<T*>(q), static_cast<T*>(k)));
}

cudaError_t LaunchSiluMul(const void* gate, const void* up, int64_t n, void* out, DType type,
                          cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  return ALIGNSERVE_DISPATCH_ACT(
      type, T,
      SiluMulKernel<<<FlatBlocks(n), kFlatThreads, 0, stream>>>(
          static_cast<const T*>(gate), static_cast<const T*>(up), n, static_cast<T*>(out)));
}

cudaError_t LaunchAdd(void* x, const void* y, int64_t n, DType type, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  return ALIGNSERVE_DISPATCH_ACT(type, T,
                                 AddKernel<<<FlatBlocks(n), kFlatThreads, 0, stream>>>(
                                     static_cast<T*>(x), static_cast<const T*>(y), n));
}

cudaError_t LaunchWriteKv(const int64_t* slots, int num_tokens, const void* k, const void* v,
                          DType type, int64_t row, int64_t num_slots, void* k_cache, void* v_cache,
                          cudaStream_t stream) {
  if (num_tokens == 0) return cudaSuccess;
  return ALIGNSERVE_DISPATCH_ACT(
      type, T,
      WriteKvKernel<<<num_tokens, kRowThreads, 0, stream>>>(
          slots, static_cast<const T*>(k), static_cast<const T*>(v), row, num_slots,
          static_cast<bf16*>(k_cache), static_cast<bf16*>(v_cache)));
}

cudaError_t LaunchRopeWriteKv(const RopeArgs& args, const int64_t* slots, void* q, const void* k,
                              const void* v, DType type, int64_t num_slots, void* k_cache,
                              void* v_cache, cudaStream_t stream) {
  if (args.num_tokens == 0) return cudaSuccess;
  return ALIGNSERVE_DISPATCH_ACT(
      type, T,
      RopeWriteKvKernel<<<args.num_tokens, kRowThreads, 0, stream>>>(
          args, slots, num_slots, static_cast<T*>(q), static_cast<const T*>(k),
          static_cast<const T*>(v), static_cast<bf16*>(k_cache), static_cast<bf16*>(v_cache)));
}

cudaError_t LaunchGatherRows(const int32_t* indices, int count, const void* x, int64_t x_rows,
                             size_t row_bytes, void* out, cudaStream_t stream) {
  if (count == 0 || row_bytes == 0) return cudaSuccess;
  const int64_t bytes = static_cast<int64_t>(row_bytes);
  if (bytes % 4 == 0) {
    GatherRowsKernel<<<count, kRowThreads, 0, stream>>>(
        indices, static_cast<const uint32_t*>(x), x_rows, bytes / 4, static_cast<uint32_t*>(out));
  } else if (bytes % 2 == 0) {
    GatherRowsKernel<<<count, kRowThreads, 0, stream>>>(
        indices, static_cast<const uint16_t*>(x), x_rows, bytes / 2, static_cast<uint16_t*>(out));
  } else {
    GatherRowsKernel<<<count, kRowThreads, 0, stream>>>(indices, static_cast<const uint8_t*>(x),
                                                        x_rows, bytes, static_cast<uint8_t*>(out));
  }
  return cudaGetLastError();
}

cudaError_t LaunchToF32(const void* src, DType src_type, int64_t n, float* dst,
                        cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  switch (src_type) {
    case DType::kF32:
      ToF32Kernel<<<FlatBlocks(n), kFlatThreads, 0, stream>>>(static_cast<const float*>(src), n,
                                                              dst);
      break;
    case DType::kF16:
      ToF32Kernel<<<FlatBlocks(n), kFlatThreads, 0, stream>>>(static_cast<const __half*>(src), n,
                                                              dst);
      break;
    case DType::kBF16:
      ToF32Kernel<<<FlatBlocks(n), kFlatThreads, 0, stream>>>(static_cast<const bf16*>(src), n,
                                                              dst);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t LaunchStoreRows(const float* src, const float* bias, int64_t rows, int64_t cols,
                            void* dst, DType dst_type, cudaStream_t stream) {
  if (rows * cols == 0) return cudaSuccess;
  return ALIGNSERVE_DISPATCH_ACT(
      dst_type, T,
      StoreRowsKernel<<<FlatBlocks(rows * cols), kFlatThreads, 0, stream>>>(src, bias, rows, cols,
                                                                            static_cast<T*>(dst)));
}

}  // namespace alignserve::cuda
