#include "kernels/cuda/batch_uploader.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/status_macros.h"

namespace alignserve::cuda {
namespace {

absl::Status Invalid(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("batch layout: ", what));
}

absl::Status CheckSizes(const BatchLayout& l) {
  const size_t n = l.token_ids.size();
  const size_t seqs = l.context_lens.size();
  if (l.positions.size() != n || l.slot_mapping.size() != n) {
    return Invalid(absl::StrCat(n, " tokens but ", l.positions.size(), " positions and ",
                                l.slot_mapping.size(), " slots"));
  }
  const bool empty = n == 0 && seqs == 0 && l.query_start.size() <= 1;
  if (!empty && (l.query_start.size() != seqs + 1 || l.query_start.front() != 0 ||
                 l.query_start.back() != static_cast<int32_t>(n))) {
    return Invalid(
        absl::StrCat("query_start must be [", seqs + 1, "] from 0 to the token count ", n));
  }
  if (l.max_blocks_per_seq < 0 ||
      l.block_tables.size() != seqs * static_cast<size_t>(l.max_blocks_per_seq)) {
    return Invalid(absl::StrCat("block_tables has ", l.block_tables.size(), " entries, expected ",
                                seqs, " x ", l.max_blocks_per_seq));
  }
  return absl::OkStatus();
}

// Per-sequence checks: rows in order, every position inside its context.
absl::Status CheckSequences(const BatchLayout& l, StepBounds& b) {
  for (int s = 0; s < l.num_seqs(); ++s) {
    const int32_t q0 = l.query_start[s], q1 = l.query_start[s + 1];
    if (q1 < q0) return Invalid("query_start is not monotone");
    const int32_t ctx = l.context_lens[s];
    b.max_query_len = std::max(b.max_query_len, q1 - q0);
    b.max_context_len = std::max(b.max_context_len, ctx);
    for (int32_t t = q0; t < q1; ++t) {
      if (l.positions[t] < 0 || l.positions[t] >= ctx) {
        return Invalid(absl::StrCat("token ", t, " at position ", l.positions[t],
                                    " is outside its sequence's context of ", ctx));
      }
      b.max_position = std::max(b.max_position, l.positions[t]);
    }
  }
  return absl::OkStatus();
}

// Byte offsets of the packed arrays, each 16-byte aligned, in this order:
// token_ids, positions, query_start, context_lens, block_tables,
// slot_mapping, logits_indices; the last entry is the total.
struct Packing {
  size_t offset[8];
};

Packing PackingOf(const BatchLayout& l) {
  const size_t bytes[7] = {
      l.token_ids.size() * sizeof(int32_t),     l.positions.size() * sizeof(int32_t),
      l.query_start.size() * sizeof(int32_t),   l.context_lens.size() * sizeof(int32_t),
      l.block_tables.size() * sizeof(int32_t),  l.slot_mapping.size() * sizeof(int64_t),
      l.logits_indices.size() * sizeof(int32_t)};
  Packing p;
  p.offset[0] = 0;
  for (int i = 0; i < 7; ++i) p.offset[i + 1] = p.offset[i] + (bytes[i] + 15) / 16 * 16;
  return p;
}

}  // namespace

absl::StatusOr<StepBounds> ValidateLayout(const BatchLayout& l) {
  RETURN_IF_ERROR(CheckSizes(l));
  StepBounds b;
  if (!l.token_ids.empty()) {
    const auto [lo, hi] = std::minmax_element(l.token_ids.begin(), l.token_ids.end());
    b.min_token = *lo;
    b.max_token = *hi;
    const auto [slo, shi] = std::minmax_element(l.slot_mapping.begin(), l.slot_mapping.end());
    b.min_slot = *slo;
    b.max_slot = *shi;
  }
  if (!l.block_tables.empty()) {
    const auto [lo, hi] = std::minmax_element(l.block_tables.begin(), l.block_tables.end());
    b.min_block = *lo;
    b.max_block = *hi;
  }
  RETURN_IF_ERROR(CheckSequences(l, b));
  for (int32_t row : l.logits_indices) {
    if (row < 0 || row >= l.num_tokens()) {
      return Invalid(
          absl::StrCat("logits index ", row, " outside the batch of ", l.num_tokens(), " tokens"));
    }
  }
  return b;
}

absl::StatusOr<std::unique_ptr<BatchUploader>> BatchUploader::Create(cudaStream_t stream) {
  cudaEvent_t event = nullptr;
  CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  return std::unique_ptr<BatchUploader>(new BatchUploader(stream, event));
}

BatchUploader::~BatchUploader() {
  cudaEventSynchronize(staging_free_);
  cudaEventDestroy(staging_free_);
}

absl::StatusOr<DeviceBatch> BatchUploader::Upload(const BatchLayout& l) {
  has_current_ = false;
  ASSIGN_OR_RETURN(const StepBounds bounds, ValidateLayout(l));
  const Packing pack = PackingOf(l);
  const size_t total = pack.offset[7];
  // The previous upload's copy may still be reading the staging buffer.
  CUDA_RETURN_IF_ERROR(cudaEventSynchronize(staging_free_));
  ASSIGN_OR_RETURN(void* staging, staging_.Reserve(total, stream_));
  ASSIGN_OR_RETURN(void* device, device_.Reserve(total, stream_));
  char* host = static_cast<char*>(staging);
  const void* sources[7] = {l.token_ids.data(),     l.positions.data(),    l.query_start.data(),
                            l.context_lens.data(),  l.block_tables.data(), l.slot_mapping.data(),
                            l.logits_indices.data()};
  for (int i = 0; i < 7; ++i) {
    const size_t bytes = pack.offset[i + 1] - pack.offset[i];
    if (bytes > 0) std::memcpy(host + pack.offset[i], sources[i], bytes);
  }
  if (total > 0) {
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(device, staging, total, cudaMemcpyHostToDevice, stream_));
  }
  CUDA_RETURN_IF_ERROR(cudaEventRecord(staging_free_, stream_));

  const char* d = static_cast<const char*>(device);
  DeviceBatch b;
  b.num_tokens = l.num_tokens();
  b.num_seqs = l.num_seqs();
  b.num_logits = static_cast<int32_t>(l.logits_indices.size());
  b.max_blocks_per_seq = l.max_blocks_per_seq;
  b.max_query_len = bounds.max_query_len;
  b.max_context_len = bounds.max_context_len;
  b.token_ids = reinterpret_cast<const int32_t*>(d + pack.offset[0]);
  b.positions = reinterpret_cast<const int32_t*>(d + pack.offset[1]);
  b.query_start = reinterpret_cast<const int32_t*>(d + pack.offset[2]);
  b.context_lens = reinterpret_cast<const int32_t*>(d + pack.offset[3]);
  b.block_tables = reinterpret_cast<const int32_t*>(d + pack.offset[4]);
  b.slot_mapping = reinterpret_cast<const int64_t*>(d + pack.offset[5]);
  b.logits_indices = reinterpret_cast<const int32_t*>(d + pack.offset[6]);
  current_ = b;
  bounds_ = bounds;
  has_current_ = true;
  return b;
}

absl::StatusOr<StepBounds> BatchUploader::BoundsOf(const DeviceBatch& batch) const {
  const bool same =
      has_current_ && batch.token_ids == current_.token_ids &&
      batch.num_tokens == current_.num_tokens && batch.num_seqs == current_.num_seqs &&
      batch.num_logits == current_.num_logits && batch.block_tables == current_.block_tables &&
      batch.max_blocks_per_seq == current_.max_blocks_per_seq;
  if (!same) {
    return absl::FailedPreconditionError(
        "cuda backend: the DeviceBatch is not the one the last UploadBatch returned");
  }
  return bounds_;
}

}  // namespace alignserve::cuda
