// Paged causal attention for steps with prefill chunks, on tensor cores
// (FlashAttention-2 style): bf16 operands, f32 accumulation, the online
// softmax kept in registers.
//
// Grid: one block of 4 warps per (query tile, sequence, kv head), flattened
// into blockIdx.x with the kv head fastest and the query tiles in reverse,
// so that the last tiles of each chunk (the most keys) start first. A
// block's 64 query rows are kTileTokens = 64 / G consecutive tokens of the
// sequence's chunk times the G query heads that share the kv head (GQA),
// row = token * G + g, so each K/V row staged in shared memory serves all
// G heads. Warp w owns rows [16w, 16w + 16): its Q A-fragments stay in
// registers for the whole block, loaded once with ldmatrix.
//
// Keys come in tiles of 64, gathered through the block table with cp.async
// (16 bytes per thread, zero-filled past the block's last key) into one of
// two shared-memory stages while the warps work on the other; one barrier
// per tile. Per tile a warp computes S = Q K^T (16 x 64, mma.sync m16n8k16,
// K B-fragments by ldmatrix), masks keys past each row's position (causal),
// updates each row's running max and sum (quad shuffles; a thread holds
// rows g and g + 8 of the m16n8 fragments), turns P into bf16 A-fragments
// in registers and accumulates O += P V (V B-fragments by ldmatrix.trans).
// P is split into bf16 hi + lo parts, two mma per V fragment (kSplitP):
// P rounded to bf16 once misses the tests' tolerance for rows of few keys.
//
// Shared memory: K and V, 2 stages x 64 keys x (D + 8) bf16 each (rows
// padded by 16 bytes so that the 8 rows of an ldmatrix hit distinct banks):
// 68 KB for D = 128, 36 KB for D = 64. The Q tile is staged once in the
// second K stage before the first tile lands there. Registers (ptxas,
// sm_90): 198 for D = 128 (Q 32, O 64, S 32 per thread; 2 blocks per SM),
// 138 for D = 64 (3 blocks per SM); no spills.
//
// Queries of type f32 are rounded to bf16 when staged (the K/V cache is bf16
// already); the scale is applied to S in f32. Rows past the chunk's end are
// idle; a row that sees no key writes zeros.
//
// Requirements (TiledAttentionSupports, else the caller uses the phase-1
// kernel): head_dim 64 or 128, G = num_heads / num_kv_heads dividing 64,
// scale > 0, q, out and the caches 16-byte aligned.
#include <climits>
#include <cmath>
#include <cstdint>

#include "kernels/cuda/cuda_device_utils.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace alignserve::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRows = 64;  // query rows per block, 16 per warp
constexpr int kKeys = 64;  // keys per K/V tile
// Blocks per SM the register cap is set for: 2 x 68 KB of stages and ~200
// registers for D = 128 (3 blocks would cap at 168 and spill), 3 for D = 64
// (4 would cap at 128 and spill).
template <int D>
constexpr int kMinBlocksPerSm = D == 64 ? 3 : 2;
constexpr float kLog2e = 1.4426950408889634f;
// P V with P split into two bf16 parts (1.5x the mma of one pass). With P
// rounded to bf16 alone, outputs of rows that see a few keys (2 to 8) miss
// the tests' one-bf16-rounding tolerance on ~1e-4 of their elements
// (simulated); FlashAttention-2 accepts that error, the CPU oracle does not.
constexpr bool kSplitP = true;

template <int D>
struct PrefillSmem {
  static constexpr int kStride = D + 8;  // bf16 per row: 16 bytes of padding
  bf16 k[2][kKeys][kStride];             // [stage][key][dim]; k[1] holds Q at the start
  bf16 v[2][kKeys][kStride];
};

__device__ __forceinline__ void LdMatrixX4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}
__device__ __forceinline__ void LdMatrixX4Trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}

// c (16 x 8, f32) += a (16 x 16, bf16, row) * b (16 x 8, bf16, col).
__device__ __forceinline__ void Mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                    uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
      "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// lo in the low half, as an mma fragment register wants the lower column.
__device__ __forceinline__ uint32_t PackBf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// 2^x; 2^-inf = 0.
__device__ __forceinline__ float Exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Eight consecutive query values as bf16.
__device__ __forceinline__ uint4 Load8AsBf16(const bf16* src) {
  return *reinterpret_cast<const uint4*>(src);
}
__device__ __forceinline__ uint4 Load8AsBf16(const float* src) {
  const float4 a = reinterpret_cast<const float4*>(src)[0];
  const float4 b = reinterpret_cast<const float4*>(src)[1];
  return make_uint4(PackBf16(a.x, a.y), PackBf16(a.z, a.w), PackBf16(b.x, b.y), PackBf16(b.z, b.w));
}

__device__ __forceinline__ void StorePair(bf16* dst, float x, float y) {
  *reinterpret_cast<__nv_bfloat162*>(dst) = __floats2bfloat162_rn(x, y);
}
__device__ __forceinline__ void StorePair(float* dst, float x, float y) {
  *reinterpret_cast<float2*>(dst) = make_float2(x, y);
}

// What a block works on: tokens [t0, t0 + tokens) of its sequence's chunk
// (rows q_begin + t0 ..), and keys [0, n_keys) of the sequence.
struct BlockWork {
  int kv_head;
  int q_begin;
  int t0;
  int tokens;
  int n_keys;
  const int32_t* table;  // the sequence's block table row
};

// The block's work, from blockIdx.x = kv_head + num_kv_heads * (seq +
// num_seqs * (tiles_per_seq - 1 - tile)); false if the tile is past the
// sequence's chunk.
__device__ __forceinline__ bool FindWork(const AttentionArgs& a, int group, int tiles_per_seq,
                                         BlockWork* w) {
  const int rest = blockIdx.x / a.num_kv_heads;
  const int seq = rest % a.batch.num_seqs;
  const int tile = tiles_per_seq - 1 - rest / a.batch.num_seqs;
  w->kv_head = blockIdx.x % a.num_kv_heads;
  w->q_begin = a.batch.query_start[seq];
  const int q_len = a.batch.query_start[seq + 1] - w->q_begin;
  const int tile_tokens = kRows / group;
  w->t0 = tile * tile_tokens;
  if (w->t0 >= q_len) return false;
  w->tokens = min(tile_tokens, q_len - w->t0);
  w->table = a.batch.block_tables + static_cast<int64_t>(seq) * a.batch.max_blocks_per_seq;
  // Keys up to the last token's position (positions rise within a chunk).
  const int max_ctx = a.batch.max_blocks_per_seq * a.block_size;
  w->n_keys = min(a.batch.positions[w->q_begin + w->t0 + w->tokens - 1] + 1, max_ctx);
  return true;
}

// Q rows of the block into sq[row][dim] as bf16; rows past the chunk zero.
template <int D, typename T>
__device__ void StageQuery(const AttentionArgs& a, const BlockWork& w, int group,
                           bf16 (*sq)[D + 8]) {
  constexpr int kChunks = D / 8;  // 16-byte bf16 chunks per row
  const T* q = static_cast<const T*>(a.q);
  for (int i = threadIdx.x; i < kRows * kChunks; i += kThreads) {
    const int r = i / kChunks, c = i % kChunks;
    const int tok = r / group, g = r - tok * group;
    uint4 packed = make_uint4(0, 0, 0, 0);
    if (tok < w.tokens) {
      const int64_t row = w.q_begin + w.t0 + tok;
      packed = Load8AsBf16(q + (row * a.num_heads + w.kv_head * group + g) * D + c * 8);
    }
    *reinterpret_cast<uint4*>(&sq[r][c * 8]) = packed;
  }
}

// Issues the cp.async copies of K and V rows k0 .. k0 + 63 into one stage;
// keys at or past n_keys (or in a block outside the cache) become zeros.
template <int D>
__device__ void LoadKvTile(const AttentionArgs& a, const BlockWork& w, int k0, bf16 (*sk)[D + 8],
                           bf16 (*sv)[D + 8]) {
  constexpr int kChunks = D / 8;
  constexpr int kKeysPerPass = kThreads / kChunks;  // 8 for D = 128, 16 for D = 64
  const bf16* k_cache = static_cast<const bf16*>(a.k_cache);
  const bf16* v_cache = static_cast<const bf16*>(a.v_cache);
  const int c = threadIdx.x % kChunks;
  const int first = threadIdx.x / kChunks;
  int j = k0 + first;
  int block_index = j / a.block_size, offset = j % a.block_size;  // of key j
#pragma unroll
  for (int pass = 0; pass < kKeys / kKeysPerPass; ++pass) {
    const int key = first + pass * kKeysPerPass;
    const int32_t block = j < w.n_keys ? w.table[block_index] : -1;
    const bool valid = block >= 0 && block < a.num_blocks;
    const int64_t slot = static_cast<int64_t>(valid ? block : 0) * a.block_size + offset;
    const int64_t src = (slot * a.num_kv_heads + w.kv_head) * D + c * 8;
    CpAsync16(SmemAddress(&sk[key][c * 8]), valid ? k_cache + src : k_cache, valid);
    CpAsync16(SmemAddress(&sv[key][c * 8]), valid ? v_cache + src : v_cache, valid);
    j += kKeysPerPass;
    offset += kKeysPerPass;
    while (offset >= a.block_size) {
      offset -= a.block_size;
      ++block_index;
    }
  }
}

// One warp's running state: rows g = lane / 4 and g + 8 of its 16 (index h).
template <int D>
struct WarpState {
  uint32_t q[D / 16][4];  // Q A-fragments, one per 16 dims
  float o[D / 8][4];      // O accumulators: 8 dims per m16n8 fragment
  float m[2];             // running max of score * scale * log2(e)
  float l[2];             // this thread's part of the running sum
  int pos[2];             // the row's position (last visible key), -1 if idle
};

// S = Q K^T for the warp's 16 rows and the stage's 64 keys.
template <int D>
__device__ __forceinline__ void TileScores(const WarpState<D>& st, bf16 (*sk)[D + 8],
                                           float (&s)[kKeys / 8][4]) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int n = 0; n < kKeys / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
    for (int nn = 0; nn < kKeys / 16; ++nn) {
      // Matrices: keys +0..7 dims +0..7, keys +0..7 dims +8..15, then keys +8..15.
      uint32_t b[4];
      LdMatrixX4(
          b, SmemAddress(
                 &sk[nn * 16 + (lane & 7) + ((lane >> 4) << 3)][kk * 16 + ((lane >> 3) & 1) * 8]));
      Mma(s[2 * nn], st.q[kk], b[0], b[1]);
      Mma(s[2 * nn + 1], st.q[kk], b[2], b[3]);
    }
  }
}

// Masks keys past each row's position, updates m and l, rescales O, and
// leaves the (unnormalized) probabilities in s.
template <int D>
__device__ __forceinline__ void SoftmaxUpdate(WarpState<D>& st, int k0, float scale_log2,
                                              float (&s)[kKeys / 8][4]) {
  const int lane = threadIdx.x % 32;
  if (k0 + kKeys - 1 > min(st.pos[0], st.pos[1])) {
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = k0 + n * 8 + 2 * (lane & 3) + (e & 1);
        if (key > st.pos[e >> 1]) s[n][e] = -INFINITY;
      }
    }
  }
  float correction[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float tile_max = -INFINITY;
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n)
      tile_max = fmaxf(tile_max, fmaxf(s[n][2 * h], s[n][2 * h + 1]));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
    const float m_new = fmaxf(st.m[h], tile_max * scale_log2);
    // A row with no visible key yet keeps m = -inf and gets p = 0.
    const float m_use = m_new == -INFINITY ? 0.0f : m_new;
    correction[h] = st.m[h] == m_new ? 1.0f : Exp2(st.m[h] - m_use);
    st.m[h] = m_new;
    float sum = 0.0f;
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n) {
      s[n][2 * h] = Exp2(fmaf(s[n][2 * h], scale_log2, -m_use));
      s[n][2 * h + 1] = Exp2(fmaf(s[n][2 * h + 1], scale_log2, -m_use));
      sum += s[n][2 * h] + s[n][2 * h + 1];
    }
    st.l[h] = st.l[h] * correction[h] + sum;
  }
  // Past the first tiles a row's max rarely moves: skip the rescale then.
  if (__any_sync(0xffffffffu, correction[0] != 1.0f || correction[1] != 1.0f)) {
#pragma unroll
    for (int d = 0; d < D / 8; ++d) {
      st.o[d][0] *= correction[0];
      st.o[d][1] *= correction[0];
      st.o[d][2] *= correction[1];
      st.o[d][3] *= correction[1];
    }
  }
}

// p as bf16 pairs hi + lo (lo = the rounding error of hi, rounded): P V from
// both keeps ~16 bits of each probability.
__device__ __forceinline__ void SplitBf16(float x, float y, uint32_t& hi, uint32_t& lo) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
  const float2 hf = __bfloat1622float2(h);
  hi = *reinterpret_cast<const uint32_t*>(&h);
  lo = PackBf16(x - hf.x, y - hf.y);
}

// O += P V: the S accumulators of keys 16kk .. 16kk + 15 are the A-fragment
// of that key step (FlashAttention-2's register reuse).
template <int D>
__device__ __forceinline__ void AccumulatePv(WarpState<D>& st, bf16 (*sv)[D + 8],
                                             const float (&p)[kKeys / 8][4]) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int kk = 0; kk < kKeys / 16; ++kk) {
    uint32_t hi[4], lo[4];
    SplitBf16(p[2 * kk][0], p[2 * kk][1], hi[0], lo[0]);
    SplitBf16(p[2 * kk][2], p[2 * kk][3], hi[1], lo[1]);
    SplitBf16(p[2 * kk + 1][0], p[2 * kk + 1][1], hi[2], lo[2]);
    SplitBf16(p[2 * kk + 1][2], p[2 * kk + 1][3], hi[3], lo[3]);
#pragma unroll
    for (int dn = 0; dn < D / 16; ++dn) {
      // Matrices (transposed): keys +0..7 dims +0..7, keys +8..15, then dims +8..15.
      uint32_t b[4];
      LdMatrixX4Trans(b, SmemAddress(&sv[kk * 16 + (lane & 15)][dn * 16 + (lane >> 4) * 8]));
      Mma(st.o[2 * dn], hi, b[0], b[1]);
      Mma(st.o[2 * dn + 1], hi, b[2], b[3]);
      if constexpr (kSplitP) {
        Mma(st.o[2 * dn], lo, b[0], b[1]);
        Mma(st.o[2 * dn + 1], lo, b[2], b[3]);
      }
    }
  }
}

// Normalizes and writes the warp's rows that belong to the chunk.
template <int D, typename T>
__device__ void WriteRows(const AttentionArgs& a, const BlockWork& w, int group, WarpState<D>& st) {
  const int lane = threadIdx.x % 32;
  T* out = static_cast<T*>(a.out);
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float l = st.l[h];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const int r = (threadIdx.x / 32) * 16 + h * 8 + lane / 4;
    const int tok = r / group;
    if (tok >= w.tokens) continue;
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    const int64_t row = w.q_begin + w.t0 + tok;
    T* dst = out + (row * a.num_heads + w.kv_head * group + r - tok * group) * D + 2 * (lane & 3);
#pragma unroll
    for (int d = 0; d < D / 8; ++d)
      StorePair(dst + d * 8, st.o[d][2 * h] * inv, st.o[d][2 * h + 1] * inv);
  }
}

template <int D, typename T>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSm<D>)
    PrefillAttentionKernel(AttentionArgs a, int group, int tiles_per_seq, float scale_log2) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  PrefillSmem<D>& sm = *reinterpret_cast<PrefillSmem<D>*>(smem_raw);
  BlockWork w;
  if (!FindWork(a, group, tiles_per_seq, &w)) return;  // the whole block, before any barrier
  const int n_tiles = w.n_keys > 0 ? (w.n_keys + kKeys - 1) / kKeys : 0;

  if (n_tiles > 0) LoadKvTile<D>(a, w, 0, sm.k[0], sm.v[0]);
  CpAsyncCommit();
  StageQuery<D, T>(a, w, group, sm.k[1]);
  __syncthreads();

  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  WarpState<D> st;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    LdMatrixX4(st.q[kk], SmemAddress(&sm.k[1][warp * 16 + (lane & 15)][kk * 16 + (lane >> 4) * 8]));
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int tok = (warp * 16 + h * 8 + lane / 4) / group;
    st.pos[h] = tok < w.tokens ? min(a.batch.positions[w.q_begin + w.t0 + tok], w.n_keys - 1) : -1;
    st.m[h] = -INFINITY;
    st.l[h] = 0.0f;
  }
#pragma unroll
  for (int d = 0; d < D / 8; ++d) st.o[d][0] = st.o[d][1] = st.o[d][2] = st.o[d][3] = 0.0f;
  // The warp's last visible key: tiles past it add nothing to its rows.
  int warp_last = max(st.pos[0], st.pos[1]);
#pragma unroll
  for (int o = 16; o > 0; o /= 2)
    warp_last = max(warp_last, __shfl_xor_sync(0xffffffffu, warp_last, o));

  for (int t = 0; t < n_tiles; ++t) {
    // Tile t has landed for every thread; every warp is done with tile t - 1
    // (and with Q), so its stage may be refilled.
    CpAsyncWaitAll();
    __syncthreads();
    if (t + 1 < n_tiles) LoadKvTile<D>(a, w, (t + 1) * kKeys, sm.k[(t + 1) & 1], sm.v[(t + 1) & 1]);
    CpAsyncCommit();
    const int k0 = t * kKeys;
    if (k0 > warp_last) continue;  // warp-uniform; also idle warps (warp_last = -1)
    float s[kKeys / 8][4];
    TileScores<D>(st, sm.k[t & 1], s);
    SoftmaxUpdate<D>(st, k0, scale_log2, s);
    AccumulatePv<D>(st, sm.v[t & 1], s);
  }
  WriteRows<D, T>(a, w, group, st);
}

template <int D, typename T>
cudaError_t LaunchPrefillFor(const AttentionArgs& args, cudaStream_t stream) {
  const int group = args.num_heads / args.num_kv_heads;
  const int tile_tokens = kRows / group;
  const int tiles_per_seq = (args.batch.max_query_len + tile_tokens - 1) / tile_tokens;
  const int64_t blocks =
      static_cast<int64_t>(args.batch.num_seqs) * tiles_per_seq * args.num_kv_heads;
  if (blocks <= 0) return cudaSuccess;
  if (blocks > INT_MAX) return cudaErrorInvalidConfiguration;
  const auto kernel = PrefillAttentionKernel<D, T>;
  const size_t smem = sizeof(PrefillSmem<D>);
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem));
  if (e != cudaSuccess) return e;
  // Room for kMinBlocksPerSm blocks' stages, not the default carveout.
  e = cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                           cudaSharedmemCarveoutMaxShared);
  if (e != cudaSuccess) return e;
  kernel<<<static_cast<unsigned>(blocks), kThreads, smem, stream>>>(args, group, tiles_per_seq,
                                                                    args.scale * kLog2e);
  return cudaGetLastError();
}

template <int D>
cudaError_t LaunchPrefillForType(const AttentionArgs& args, DType q_type, cudaStream_t stream) {
  switch (q_type) {
    case DType::kF32:
      return LaunchPrefillFor<D, float>(args, stream);
    case DType::kBF16:
      return LaunchPrefillFor<D, bf16>(args, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

bool TiledAttentionSupports(const AttentionArgs& args) {
  if (args.head_dim != 64 && args.head_dim != 128) return false;
  if (args.num_kv_heads <= 0 || args.num_heads % args.num_kv_heads != 0) return false;
  if (args.block_size <= 0 || !(args.scale > 0.0f)) return false;
  if (!Aligned16(args.q) || !Aligned16(args.out) || !Aligned16(args.k_cache) ||
      !Aligned16(args.v_cache)) {
    return false;
  }
  const int group = args.num_heads / args.num_kv_heads;
  return group <= kRows && kRows % group == 0;
}

cudaError_t LaunchTiledPagedAttention(const AttentionArgs& args, DType q_type,
                                      cudaStream_t stream) {
  if (args.batch.num_tokens == 0 || args.batch.num_seqs == 0) return cudaSuccess;
  if (!TiledAttentionSupports(args)) return cudaErrorInvalidValue;
  return args.head_dim == 64 ? LaunchPrefillForType<64>(args, q_type, stream)
                             : LaunchPrefillForType<128>(args, q_type, stream);
}

}  // namespace alignserve::cuda
