// The device row sampler: one block of kSampleThreads per DeviceSamplingRow,
// with the semantics of kernels/device_sampling.h. Per row:
//
//   1. Adjusted tokens are marked in a shared-memory bitmap (AdjustedRow);
//      the logits are never copied or written.
//   2. One pass: the adjusted row's argmax (lowest id on ties, NaN never
//      wins), which is also its max, and the raw row's max.
//   3. Greedy rows, rows of one token and rows without a finite max (all
//      NaN or -inf, or +inf present: no mass to draw from) take the argmax.
//   4. Sampled rows: top-k's k-th largest logit and top-p's last kept token
//      are boundaries in "logit descending, id ascending" order
//      (cuda_sample_select.cuh, two passes each, more only for huge ties);
//      min-p is a weight test. The survivors are then drawn from in id
//      order: each warp owns a contiguous range of ids, walked in steps of
//      128 (4 ids a lane), so loads stay coalesced; a first pass sums each
//      warp's surviving weight in double (per step: the lanes' sums by a
//      fixed shuffle tree, added in step order), thread 0 adds the 32 warp
//      sums in order and finds the warp where u * total is crossed, and
//      that warp walks its range again, summing steps the same way, until
//      the step that crosses, whose 128 weights lane 0 adds one by one.
//      Rounding leftovers fall back to the last surviving token (of the
//      crossing step, of the warp, of the row).
//   5. Logprobs from the raw row: log-sum-exp (per-thread double sums in a
//      fixed id order, fixed tree), the n-th largest as a boundary, then
//      one pass counts the logits above the chosen token (rank) and
//      gathers the n entries at or before the boundary, sorted by thread 0.
//
// Weights are the host sampler's exp((x - max) * (1 / T)) bit for bit
// (ExpNonPositive in cuda_sampling_primitives.cuh), so an untruncated row
// draws the host's token unless a cumulative sum lands within rounding of a
// boundary. Passes over the row: 1 for greedy, 2 for temperature alone,
// 2 more per top-k or top-p, 2-3 for logprobs; a 128k-token row is 512 KB.
#include <cmath>

#include "kernels/cuda/cuda_sample_row_view.cuh"
#include "kernels/cuda/cuda_sample_rows.h"
#include "kernels/cuda/cuda_sample_select.cuh"
#include "kernels/cuda/cuda_sampling_primitives.cuh"
#include "kernels/philox.h"

namespace alignserve::cuda {
namespace {

using namespace sampling;

constexpr int kStepIds = 128;  // ids a warp covers per step of the draw

struct DrawState {
  double warp_total[kSampleWarps];
  int32_t warp_last[kSampleWarps];  // each warp's last id with weight, -1 if none
  float step_weights[kStepIds];     // the crossing step's weights
  double uniform;                   // PhiloxUniform(seed, step)
  double local_target;              // u * total minus the warps before the crossing one
  int32_t argmax;                   // the token when the row has no mass
  int32_t cross_warp;
  int32_t token;
};

struct LogprobState {
  u64 top[kMaxDeviceLogprobs];  // OrderComp of the top entries, then sorted
  uint32_t top_count;
};

// Row parameters live here rather than in registers between the passes.
struct SampleShared {
  SelectShared select;
  BlockScratch reduce;
  DrawState draw;
  LogprobState logprobs;
  DeviceSamplingRow row;
  AdjustContext adjust;
};

// Step 4's survivor test and weight: 0 for tokens truncation removes.
// Top-k (keys below the k-th largest's are out) and top-p (OrderComp below
// the last kept token's is out) are one threshold on OrderComp: keep
// OrderComp >= max(cut, min_key << 32). NaN (key 0) is always out.
struct Truncation {
  static constexpr u64 kNone = u64{1} << 32;
  SoftmaxWeight weight;
  u64 threshold = kNone;
  float min_p = 0.0f;

  // NaN weighs 0 anyway (ExpNonPositive), so rows without top-k or top-p
  // skip the order test.
  __device__ __forceinline__ float SurvivorWeight(float x, int32_t id) const {
    if (threshold != kNone && OrderComp(OrderKey(x), id) < threshold) return 0.0f;
    const float w = weight(x);
    return w >= min_p ? w : 0.0f;
  }
};

// This lane's 4 ids [first, first + 4) of a draw step (ids >= end weigh 0):
// their weights' sum in id order and the last id with weight; the weights
// go to weights_out[0, 4) when it is given. One id at a time (the values
// rotate through registers), which keeps register pressure low.
__device__ __forceinline__ double LaneWeights(const float* row, bool aligned,
                                              const AdjustedRow& adjust, const Truncation& tr,
                                              int32_t first, int32_t end, float* weights_out,
                                              int32_t* last) {
  float x[4];
  LoadGroup(row, end, first, aligned, x);
  double sum = 0.0;
  float x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3];
#pragma unroll 1
  for (int k = 0; k < 4; ++k) {
    const int32_t id = first + k;
    const float w = id < end ? tr.SurvivorWeight(adjust(id, x0), id) : 0.0f;
    if (w > 0.0f) {
      sum += w;
      *last = id;
    }
    if (weights_out != nullptr) weights_out[k] = w;
    x0 = x1;
    x1 = x2;
    x2 = x3;
  }
  return sum;
}

// Thread 0: the warp where u * total is crossed, the target left for it,
// and the token when no warp needs to walk (no mass: argmax; rounding: the
// last survivor).
__device__ void FindCrossingWarp(DrawState& st) {
  double total = 0.0;
  int32_t last = -1;
  for (int w = 0; w < kSampleWarps; ++w) {
    total += st.warp_total[w];
    last = max(last, st.warp_last[w]);
  }
  st.cross_warp = -1;
  st.token = st.argmax;
  if (!(total > 0.0) || !isfinite(total)) return;
  st.token = last;
  const double target = st.uniform * total;
  double before = 0.0;
  for (int w = 0; w < kSampleWarps; ++w) {
    if (before + st.warp_total[w] > target) {
      st.cross_warp = w;
      st.local_target = target - before;
      return;
    }
    before += st.warp_total[w];
  }
}

// Step 4's draw; st.uniform and st.argmax are set.
// Inlined: its hot loops then keep adjust and tr in registers.
__device__ __forceinline__ int32_t DrawToken(const float* row, int32_t vocab,
                                             const AdjustedRow& adjust, const Truncation& tr,
                                             DrawState& st) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int32_t span = (vocab + kSampleWarps * kStepIds - 1) / (kSampleWarps * kStepIds) * kStepIds;
  const int32_t begin = min(vocab, warp * span), end = min(vocab, begin + span);
  const bool aligned = Aligned16(row);
  double running = 0.0;
  int32_t last = -1;
  for (int32_t base = begin; base < end; base += kStepIds) {
    running += WarpSumBroadcast(
        LaneWeights(row, aligned, adjust, tr, base + 4 * lane, end, nullptr, &last));
  }
  last = WarpMax(last);
  __syncthreads();  // earlier readers of st are done
  if (lane == 0) {
    st.warp_total[warp] = running;
    st.warp_last[warp] = last;
  }
  __syncthreads();
  if (threadIdx.x == 0) FindCrossingWarp(st);
  __syncthreads();
  if (warp == st.cross_warp) {
    // Walk the range again, step sums added in the same order, to the step
    // whose sum crosses; lane 0 walks that step's 128 weights one by one.
    const double target = st.local_target;
    double walked = 0.0;
    int32_t unused = -1;
    bool crossed = false;
    for (int32_t base = begin; base < end && !crossed; base += kStepIds) {
      const double step = WarpSumBroadcast(LaneWeights(row, aligned, adjust, tr, base + 4 * lane,
                                                       end, st.step_weights + 4 * lane, &unused));
      if (walked + step > target) {  // the same bits in every lane
        crossed = true;
        __syncwarp();
        if (lane == 0) {
          double cumulative = walked;
          int32_t pick = -1, last_in_step = -1;
          for (int i = 0; i < kStepIds && pick < 0; ++i) {
            const float wi = st.step_weights[i];
            if (wi > 0.0f) {
              cumulative += wi;
              last_in_step = i;
              if (cumulative > target) pick = i;
            }
          }
          st.token = base + (pick >= 0 ? pick : last_in_step);
        }
      } else {
        walked += step;
      }
    }
    if (!crossed && lane == 0) st.token = st.warp_last[warp];
  }
  __syncthreads();
  return st.token;
}

// Step 4 for a row with a finite max (`best` is its argmax).
__device__ int32_t SampleToken(const float* logits, int32_t vocab, const AdjustedRow& adjust,
                               Best best, SampleShared& sh) {
  const DeviceSamplingRow& row = sh.row;
  Truncation tr;
  tr.weight = SoftmaxWeight{best.value, __fdiv_rn(1.0f, row.temperature)};
  SelectQuery q{logits, vocab, adjust, best.value, 1u, tr.weight};
  if (row.top_k > 0 && row.top_k < vocab) {
    const Boundary kth =
        SelectBoundary<false>(q, 1.0f, static_cast<u64>(row.top_k), sh.select, sh.reduce);
    if (kth.found) tr.threshold = kth.comp >> 32 << 32;  // the k-th's key, any id
  }
  if (row.top_p < 1.0f) {
    q.min_key = static_cast<uint32_t>(tr.threshold >> 32);
    const Boundary last_kept = SelectBoundary<true>(q, row.top_p, 0, sh.select, sh.reduce);
    if (last_kept.found) tr.threshold = last_kept.comp;  // inside the top-k survivors
  }
  tr.min_p = row.min_p;
  if (threadIdx.x == 0) {
    sh.draw.uniform = PhiloxUniform(row.seed, row.step);
    sh.draw.argmax = best.id;
  }
  return DrawToken(logits, vocab, adjust, tr, sh.draw);  // its first barrier publishes them
}

__device__ void WriteResult(DeviceSampleResult* out, int32_t token, float logprob, int32_t rank,
                            uint32_t num_top, const u64* top, double log_norm) {
  out->token = token;
  out->logprob = logprob;
  out->rank = rank;
  out->num_top = static_cast<int32_t>(num_top);
  for (uint32_t i = 0; i < static_cast<uint32_t>(kMaxDeviceLogprobs); ++i) {
    const bool used = i < num_top;
    out->top_tokens[i] = used ? CompId(top[i]) : 0;
    out->top_logprobs[i] =
        used ? static_cast<float>(static_cast<double>(KeyValue(top[i] >> 32)) - log_norm) : 0.0f;
  }
}

// Step 1 of the semantics for `token` (n = sh.row.num_logprobs >= 0), and
// the row's result.
__device__ void WriteWithLogprobs(const float* logits, int32_t vocab, int32_t token, float max_raw,
                                  SampleShared& sh, DeviceSampleResult* out) {
  const int32_t n = sh.row.num_logprobs;
  const bool finite = isfinite(max_raw);
  const SoftmaxWeight unit{max_raw, 1.0f};
  double partial = 0.0;  // this thread's share of sum(exp(x - max)), in its id order
  u64 cut = 1;           // the top list: OrderComp >= cut (1: every logit but NaN)
  if (n > 0) {
    const SelectQuery q{logits, vocab, AdjustedRow{}, max_raw, 1u, unit};
    const Boundary nth =
        SelectBoundary<false, true>(q, 1.0f, static_cast<u64>(n), sh.select, sh.reduce);
    if (nth.found) cut = nth.comp;
    partial = nth.weight_sum;
  } else {
    ForEachLogit(logits, vocab, [&](float raw, int32_t) { partial += unit(raw); });
  }
  if (!finite) partial = 0.0;  // the log-sum-exp is max_raw itself
  const double sum = BlockSum(partial, sh.reduce);
  const double log_norm =
      finite ? static_cast<double>(max_raw) + log(sum) : static_cast<double>(max_raw);
  LogprobState& lp = sh.logprobs;
  if (threadIdx.x == 0) lp.top_count = 0;
  __syncthreads();
  const float chosen = __ldg(logits + token);
  int32_t higher = 0;
  ForEachLogit(logits, vocab, [&](float x, int32_t id) {
    higher += x > chosen;
    const uint32_t key = OrderKey(x);
    if (n > 0 && key != 0 && OrderComp(key, id) >= cut) {
      const uint32_t slot = atomicAdd(&lp.top_count, 1u);
      if (slot < kMaxDeviceLogprobs) lp.top[slot] = OrderComp(key, id);
    }
  });
  const int32_t rank = BlockSum(higher, sh.reduce) + 1;  // its barriers publish lp
  if (threadIdx.x != 0) return;
  const uint32_t num_top = min(lp.top_count, static_cast<uint32_t>(kMaxDeviceLogprobs));
  for (uint32_t i = 1; i < num_top; ++i) {  // at most 20: insertion sort, descending
    const u64 v = lp.top[i];
    uint32_t j = i;
    for (; j > 0 && lp.top[j - 1] < v; --j) lp.top[j] = lp.top[j - 1];
    lp.top[j] = v;
  }
  WriteResult(out, token, static_cast<float>(static_cast<double>(chosen) - log_norm), rank, num_top,
              lp.top, log_norm);
}

__global__ void __launch_bounds__(kSampleThreads, 1) SampleRowsKernel(SampleRowsArgs args) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  SampleShared& sh = *reinterpret_cast<SampleShared*>(shared_bytes);
  uint32_t* bitmap = reinterpret_cast<uint32_t*>(shared_bytes + sizeof(SampleShared));
  DeviceSampleResult* out = args.results + blockIdx.x;
  const int32_t vocab = args.vocab;
  if (threadIdx.x == 0) sh.row = args.rows[blockIdx.x];
  __syncthreads();
  const DeviceSamplingRow& row = sh.row;
  if (row.logits_row < 0 || row.logits_row >= args.num_logit_rows) {  // checked on the host
    if (threadIdx.x == 0) WriteResult(out, 0, 0.0f, 0, 0, nullptr, 0.0);
    return;
  }
  const float* logits = args.logits + static_cast<int64_t>(row.logits_row) * vocab;
  const AdjustedRow adjust = BuildAdjustedRow(row, args.adjustments, bitmap, &sh.adjust, vocab);
  Best best{-INFINITY, -1};
  float max_raw = -INFINITY;
  ForEachLogit(logits, vocab, [&](float raw, int32_t id) {
    max_raw = fmaxf(max_raw, raw);  // NaN ignored
    const float x = adjust(id, raw);
    // Ids arrive ascending: strict '>' keeps the lowest id; NaN fails both.
    if (x > best.value || (best.id < 0 && x == best.value)) best = Best{x, id};
  });
  best = BlockBest(best, sh.reduce);
  best.id = best.id < 0 ? 0 : best.id;  // all NaN: 0, as on the host
  int32_t token = best.id;
  if (!(row.temperature < kDeviceGreedyEpsilon) && vocab > 1 && isfinite(best.value)) {
    token = SampleToken(logits, vocab, adjust, best, sh);
  }
  if (row.num_logprobs >= 0) {
    max_raw = BlockMax(max_raw, sh.reduce);
    WriteWithLogprobs(logits, vocab, token, max_raw, sh, out);
  } else if (threadIdx.x == 0) {
    WriteResult(out, token, 0.0f, 0, 0, nullptr, 0.0);
  }
}

}  // namespace

size_t SampleRowsSharedBytes(int32_t vocab) {
  return sizeof(SampleShared) + static_cast<size_t>((vocab + 31) / 32) * sizeof(uint32_t);
}

cudaError_t LaunchSampleRows(const SampleRowsArgs& args, cudaStream_t stream) {
  if (args.num_rows <= 0) return cudaSuccess;
  const size_t shared = SampleRowsSharedBytes(args.vocab);
  if (shared > 48 * 1024) {
    const cudaError_t err = cudaFuncSetAttribute(
        SampleRowsKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared));
    if (err != cudaSuccess) return err;
  }
  SampleRowsKernel<<<static_cast<unsigned>(args.num_rows), kSampleThreads, shared, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace alignserve::cuda
