// Boundary selection for the row sampler (cuda_sample_rows.cu): in the order
// "logit descending, then id ascending", the element at which a running
// quantity first reaches a target. With quantity 1 per element and target k
// it is the k-th element (top-k's threshold, the n-th top logprob); with
// quantity = the element's softmax weight and target = top_p * the total it
// is the last token top-p keeps (the first whose preceding mass plus its
// own reaches the target, i.e. the last one whose preceding mass is below
// it). Ties are exact: equal logits are ordered by id, so a cut inside a run
// of ties keeps the lowest ids.
//
// Quantities are integers (weights as fixed point, kMassBits fractional
// bits, the top token weighing 2^40), so histograms are built with integer
// atomics and every sum is exact in any order: deterministic. The fixed
// point drops weights below 2^-40 of the top token's, far below the float
// rounding of the weights themselves.
//
// Cost, per selection: one pass over the row builds a histogram of
// (max - logit) in kCoarseBins bins of 1/32 logit (monotone in the logit,
// so the bins are contiguous runs of the order) and finds the bin holding
// the boundary; a second pass gathers that bin's elements into shared
// memory (at most kMaxCandidates), which are sorted and scanned. A bin too
// full for shared memory (thousands of ties or a flat row) is resolved
// instead by an 8-bit radix select on (key, id) restricted to the bin, one
// pass per byte, stopping as soon as the boundary's digit holds a single
// element.
// Thread-safety: device functions with barriers; call from every thread.
#ifndef ALIGNSERVE_KERNELS_CUDA_CUDA_SAMPLE_SELECT_CUH_
#define ALIGNSERVE_KERNELS_CUDA_CUDA_SAMPLE_SELECT_CUH_

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_sample_row_view.cuh"
#include "kernels/cuda/cuda_sampling_primitives.cuh"

namespace alignserve::cuda::sampling {

constexpr int kCoarseBins = 2048;
constexpr float kCoarseBinsPerLogit = 32.0f;  // the last bin takes max - x >= 64
constexpr int kMaxCandidates = 4096;
constexpr int kBinsPerThread = kCoarseBins / kSampleThreads;
constexpr int kCandidatesPerThread = kMaxCandidates / kSampleThreads;
static_assert(kCoarseBins % kSampleThreads == 0 && kMaxCandidates % kSampleThreads == 0);
constexpr int kMassBits = 40;

// By count, only `count` is used; by mass, only the mass, as two 32-bit
// halves (MassHistogramAdd): shared-memory atomics are native at 32 bits,
// a compare-and-swap loop at 64.
struct CoarseHistogram {
  uint32_t count[kCoarseBins];
  uint32_t mass_lo[kCoarseBins];
  uint32_t mass_hi[kCoarseBins];
};
struct RadixHistogram {
  u64 mass[256];
  u64 max_comp[256];  // identifies the digit's element when it has one
  uint32_t count[256];
};
// One selection's shared memory; the stages reuse it in turn.
union SelectScratch {
  CoarseHistogram coarse;
  RadixHistogram radix;
  u64 candidates[kMaxCandidates];  // OrderComp values
};

// Values one thread finds and the block reads (after a barrier).
struct SelectState {
  int32_t bin;
  uint32_t count;
  u64 before;
  u64 comp;
  int32_t found;
  uint32_t digit;
  uint32_t gathered;
};

struct SelectShared {
  SelectScratch scratch;
  SelectState state;
};

// What to select over.
struct SelectQuery {
  const float* row;  // raw logits [vocab]
  int32_t vocab;
  AdjustedRow adjust;    // the values selected over (count 0: the raw row)
  float ref;             // the largest value of the row (NaN ignored)
  uint32_t min_key;      // elements with OrderKey below take no part (1: all but NaN)
  SoftmaxWeight weight;  // the mass of an element, for by-mass selections
};

struct Boundary {
  bool found;
  u64 comp;  // OrderComp of the boundary element
  // With kSumWeights: this thread's sum of q.weight over every raw value of
  // the row, in ForEachLogit order (the logprobs' log-sum-exp rides along).
  double weight_sum;
};

__device__ __forceinline__ u64 MassOf(float weight) {
  return static_cast<u64>(static_cast<double>(weight) * static_cast<double>(u64{1} << kMassBits));
}

// (hi, lo) += m exactly: a low word that wraps carries into the high word,
// so the halves always hold the exact 64-bit sum, whatever the order.
__device__ __forceinline__ void MassHistogramAdd(uint32_t* lo, uint32_t* hi, u64 m) {
  const uint32_t low = static_cast<uint32_t>(m);
  uint32_t high = static_cast<uint32_t>(m >> 32);
  if (low != 0) {
    const uint32_t old = atomicAdd(lo, low);
    high += old + low < old ? 1u : 0u;
  }
  if (high != 0) atomicAdd(hi, high);
}

// Non-increasing in x for every non-NaN x <= ref (ref itself: bin 0).
__device__ __forceinline__ int CoarseBin(float ref, float x) {
  if (x == ref) return 0;
  const float d = __fmul_rn(__fsub_rn(ref, x), kCoarseBinsPerLogit);
  return d < static_cast<float>(kCoarseBins - 1) ? static_cast<int>(d) : kCoarseBins - 1;
}

// The smallest prefix of the order whose mass reaches top_p of `total`:
// ceil(top_p * total), at least 1 and at most total.
__device__ __forceinline__ u64 MassTarget(float top_p, u64 total) {
  const double t = ceil(static_cast<double>(top_p) * static_cast<double>(total));
  const u64 target = t < 1.0 ? 1 : static_cast<u64>(t);
  return target < total ? target : total;
}

template <bool kByMass>
__device__ __forceinline__ u64 QuantityOf(const SelectQuery& q, float x) {
  if constexpr (kByMass) {
    return MassOf(q.weight(x));
  } else {
    return 1;
  }
}

// The boundary inside `bin`, gathered, sorted and scanned in shared memory;
// *overflow (and not found) when the bin holds more than kMaxCandidates.
template <bool kByMass>
__device__ __noinline__ Boundary SelectAmongCandidates(const SelectQuery& query, int bin,
                                                       u64 before, u64 target, SelectShared& sh,
                                                       BlockScratch& reduce, bool* overflow) {
  const SelectQuery q = query;  // in registers, not reloaded through the reference
  u64* candidates = sh.scratch.candidates;
  SelectState& st = sh.state;
  __syncthreads();  // the histogram and state were read
  if (threadIdx.x == 0) {
    st.gathered = 0;
    st.found = 0;
  }
  __syncthreads();
  ForEachLogit(q.row, q.vocab, [&](float raw, int32_t id) {
    const float x = q.adjust(id, raw);
    const uint32_t key = OrderKey(x);
    if (key < q.min_key || CoarseBin(q.ref, x) != bin) return;
    const uint32_t slot = atomicAdd(&st.gathered, 1u);
    if (slot < kMaxCandidates) candidates[slot] = OrderComp(key, id);
  });
  __syncthreads();
  const uint32_t count = st.gathered;
  *overflow = count > kMaxCandidates;
  if (*overflow) return Boundary{false, 0, 0.0};
  uint32_t size = 1;
  while (size < count) size *= 2;
  for (uint32_t i = count + threadIdx.x; i < size; i += kSampleThreads) candidates[i] = 0;
  BitonicSortDescending(candidates, size);
  // Each thread scans a contiguous run of kCandidatesPerThread candidates.
  constexpr int kRun = kCandidatesPerThread;
  const uint32_t first = kRun * threadIdx.x;
  u64 quantity[kRun];
  u64 sum = 0;
#pragma unroll
  for (int k = 0; k < kRun; ++k) {
    const uint32_t i = first + k;
    quantity[k] = i < count ? QuantityOf<kByMass>(q, KeyValue(candidates[i] >> 32)) : 0;
    sum += quantity[k];
  }
  u64 total;
  u64 running = before + BlockExclusiveScan(sum, reduce, &total);
#pragma unroll
  for (int k = 0; k < kRun; ++k) {
    if (running < target && target <= running + quantity[k]) {
      st.comp = candidates[first + k];
      st.found = 1;
    }
    running += quantity[k];
  }
  __syncthreads();
  return Boundary{st.found != 0, st.comp, 0.0};
}

// The boundary inside `bin` by an 8-bit radix select on OrderComp, most
// significant byte first.
template <bool kByMass>
__device__ __noinline__ Boundary SelectByRadix(const SelectQuery& query, int bin, u64 before,
                                               u64 target, SelectShared& sh, BlockScratch& reduce) {
  const SelectQuery q = query;
  RadixHistogram& h = sh.scratch.radix;
  SelectState& st = sh.state;
  u64 prefix = 0, mask = 0;
  for (int shift = 56; shift >= 0; shift -= 8) {
    __syncthreads();  // the previous histogram and state were read
    for (int i = threadIdx.x; i < 256; i += kSampleThreads) {
      h.mass[i] = 0;
      h.max_comp[i] = 0;
      h.count[i] = 0;
    }
    if (threadIdx.x == 0) st.found = 0;
    __syncthreads();
    ForEachLogit(q.row, q.vocab, [&](float raw, int32_t id) {
      const float x = q.adjust(id, raw);
      const uint32_t key = OrderKey(x);
      if (key < q.min_key || CoarseBin(q.ref, x) != bin) return;
      const u64 comp = OrderComp(key, id);
      if ((comp & mask) != prefix) return;
      const uint32_t digit = static_cast<uint32_t>(comp >> shift) & 0xffu;
      atomicAdd(&h.count[digit], 1u);
      atomicMax(&h.max_comp[digit], comp);
      if constexpr (kByMass) {
        const u64 m = MassOf(q.weight(x));
        if (m != 0) atomicAdd(&h.mass[digit], m);
      }
    });
    __syncthreads();
    // Thread t < 256 takes digit 255 - t: thread order is the order.
    const uint32_t digit = 255u - threadIdx.x;
    u64 quantity = 0;
    if (threadIdx.x < 256) quantity = kByMass ? h.mass[digit] : h.count[digit];
    u64 total;
    const u64 running = before + BlockExclusiveScan(quantity, reduce, &total);
    if (threadIdx.x < 256 && running < target && target <= running + quantity) {
      st.found = 1;
      st.digit = digit;
      st.before = running;
      st.count = h.count[digit];
      st.comp = h.max_comp[digit];
    }
    __syncthreads();
    if (!st.found) return Boundary{false, 0, 0.0};  // unreachable: the bin holds the target
    prefix |= static_cast<u64>(st.digit) << shift;
    mask |= u64{0xff} << shift;
    before = st.before;
    if (st.count == 1) return Boundary{true, st.comp, 0.0};
  }
  return Boundary{true, prefix, 0.0};
}

// The boundary for `rank` (by count) or for top_p of the total mass (by
// mass) among the elements with OrderKey >= q.min_key; with kSumWeights,
// also this thread's share of the sum of q.weight over the raw row. Not
// found when the target exceeds what the elements hold (rank > their
// number).
template <bool kByMass, bool kSumWeights = false>
__device__ __noinline__ Boundary SelectBoundary(const SelectQuery& query, float top_p, u64 rank,
                                                SelectShared& sh, BlockScratch& reduce) {
  const SelectQuery q = query;
  CoarseHistogram& hist = sh.scratch.coarse;
  SelectState& st = sh.state;
  __syncthreads();  // earlier users of the scratch are done
  for (int i = threadIdx.x; i < kCoarseBins; i += kSampleThreads) {
    hist.count[i] = 0;
    hist.mass_lo[i] = 0;
    hist.mass_hi[i] = 0;
  }
  if (threadIdx.x == 0) st.bin = -1;
  __syncthreads();
  double weight_sum = 0.0;
  ForEachLogit(q.row, q.vocab, [&](float raw, int32_t id) {
    if constexpr (kSumWeights) weight_sum += q.weight(raw);
    const float x = q.adjust(id, raw);
    if (OrderKey(x) < q.min_key) return;
    const int bin = CoarseBin(q.ref, x);
    if constexpr (kByMass) {
      MassHistogramAdd(&hist.mass_lo[bin], &hist.mass_hi[bin], MassOf(q.weight(x)));
    } else {
      atomicAdd(&hist.count[bin], 1u);
    }
  });
  __syncthreads();
  // Each thread owns a contiguous run of kBinsPerThread bins (bins ascend
  // as logits descend).
  const int first_bin = kBinsPerThread * threadIdx.x;
  u64 quantity[kBinsPerThread];
  u64 sum = 0;
#pragma unroll
  for (int k = 0; k < kBinsPerThread; ++k) {
    const int b = first_bin + k;
    quantity[k] = kByMass ? (u64{hist.mass_hi[b]} << 32 | hist.mass_lo[b]) : u64{hist.count[b]};
    sum += quantity[k];
  }
  u64 total;
  u64 running = BlockExclusiveScan(sum, reduce, &total);
  const u64 target = kByMass ? MassTarget(top_p, total) : rank;
#pragma unroll
  for (int k = 0; k < kBinsPerThread; ++k) {
    if (target >= 1 && target <= total && running < target && target <= running + quantity[k]) {
      st.bin = first_bin + k;
      st.count = hist.count[first_bin + k];
      st.before = running;
    }
    running += quantity[k];
  }
  __syncthreads();
  const int bin = st.bin;
  const uint32_t count = st.count;  // by mass: not counted, the gather finds out
  const u64 bin_before = st.before;
  Boundary found{false, 0, weight_sum};
  if (bin < 0) return found;
  bool overflow = !kByMass && count > kMaxCandidates;
  if (!overflow) {
    found = SelectAmongCandidates<kByMass>(q, bin, bin_before, target, sh, reduce, &overflow);
  }
  if (overflow) found = SelectByRadix<kByMass>(q, bin, bin_before, target, sh, reduce);
  found.weight_sum = weight_sum;
  return found;
}

}  // namespace alignserve::cuda::sampling

#endif  // ALIGNSERVE_KERNELS_CUDA_CUDA_SAMPLE_SELECT_CUH_
