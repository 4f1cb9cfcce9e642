// CudaBackend, part 3: SampleRows, sampling on the device
// (kernels/device_sampling.h). The host validates every row, packs the rows
// and their adjustments (each row's sorted by token, which the kernel's
// lookup needs) into one upload, launches one block per row
// (cuda_sample_rows.h) and copies the results back: one upload, one
// launch, one download and one synchronization per call, through the
// backend's sampling workspace (device) and pinned staging buffer (host),
// both grown on demand and then reused.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_memory.h"
#include "kernels/cuda/cuda_sample_rows.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/status_macros.h"

namespace alignserve {
namespace {

absl::Status Invalid(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("cuda backend: sample_rows: ", what));
}

absl::Status CheckLogits(const Tensor& logits) {
  if (logits.dtype != DType::kF32 || logits.rank != 2) {
    return Invalid(absl::StrCat("logits must be F32 [rows, vocab], got ",
                                std::string(DTypeName(logits.dtype)), " ", logits.ShapeString()));
  }
  if (logits.cols() < 1 || logits.cols() > cuda::kMaxSampleRowsVocab) {
    return Invalid(absl::StrCat("logits have ", logits.cols(),
                                " columns; the device sampler takes 1 to ",
                                cuda::kMaxSampleRowsVocab));
  }
  return absl::OkStatus();
}

absl::Status CheckRow(const DeviceSamplingRow& row, size_t i, int64_t logit_rows,
                      size_t num_adjustments) {
  const std::string name = absl::StrCat("rows[", i, "].");
  if (row.logits_row < 0 || row.logits_row >= logit_rows) {
    return Invalid(absl::StrCat(name, "logits_row ", row.logits_row, " is outside the ", logit_rows,
                                " logits rows"));
  }
  if (row.adjust_begin < 0 || row.adjust_count < 0 ||
      static_cast<size_t>(row.adjust_begin) + static_cast<size_t>(row.adjust_count) >
          num_adjustments) {
    return Invalid(absl::StrCat(name, "adjust_begin ", row.adjust_begin, " + adjust_count ",
                                row.adjust_count, " is outside the ", num_adjustments,
                                " adjustments"));
  }
  if (row.num_logprobs < -1 || row.num_logprobs > kMaxDeviceLogprobs) {
    return Invalid(absl::StrCat(name, "num_logprobs must be -1 or in [0, ", kMaxDeviceLogprobs,
                                "], got ", row.num_logprobs));
  }
  if (!std::isfinite(row.temperature) || row.temperature < 0.0f) {
    return Invalid(
        absl::StrCat(name, "temperature must be finite and >= 0, got ", row.temperature));
  }
  if (!(row.top_p > 0.0f && row.top_p <= 1.0f)) {
    return Invalid(absl::StrCat(name, "top_p must be in (0, 1], got ", row.top_p));
  }
  if (!(row.min_p >= 0.0f && row.min_p <= 1.0f)) {
    return Invalid(absl::StrCat(name, "min_p must be in [0, 1], got ", row.min_p));
  }
  if (!std::isfinite(row.repetition_penalty) || row.repetition_penalty <= 0.0f ||
      !std::isfinite(row.presence_penalty) || !std::isfinite(row.frequency_penalty)) {
    return Invalid(absl::StrCat(name, "penalties must be finite (repetition_penalty > 0), got ",
                                row.repetition_penalty, ", ", row.presence_penalty, ", ",
                                row.frequency_penalty));
  }
  return absl::OkStatus();
}

// Sorts row i's adjustments (a copy, in the staging buffer) by token and
// checks them: tokens in the vocabulary and distinct, counts >= 0.
absl::Status SortAndCheckAdjustments(std::span<LogitAdjustment> mine, size_t i, int64_t vocab) {
  const auto by_token = [](const LogitAdjustment& a, const LogitAdjustment& b) {
    return a.token < b.token;
  };
  if (!std::is_sorted(mine.begin(), mine.end(), by_token)) {
    std::sort(mine.begin(), mine.end(), by_token);
  }
  for (size_t k = 0; k < mine.size(); ++k) {
    const LogitAdjustment& a = mine[k];
    if (a.token < 0 || a.token >= vocab) {
      return Invalid(absl::StrCat("rows[", i, "]: adjustment token ", a.token,
                                  " is outside the vocabulary [0, ", vocab, ")"));
    }
    if (a.output_count < 0) {
      return Invalid(absl::StrCat("rows[", i, "]: adjustment of token ", a.token,
                                  " has output_count ", a.output_count));
    }
    if (k > 0 && mine[k - 1].token == a.token) {
      return Invalid(absl::StrCat("rows[", i, "]: token ", a.token, " is adjusted twice"));
    }
  }
  return absl::OkStatus();
}

size_t AlignUp(size_t bytes) { return (bytes + 255) / 256 * 256; }

}  // namespace

bool CudaBackend::SupportsDeviceSampling(int64_t vocab_size) const {
  return vocab_size >= 1 && vocab_size <= cuda::kMaxSampleRowsVocab;
}

absl::Status CudaBackend::SampleRows(const Tensor& logits, std::span<const DeviceSamplingRow> rows,
                                     std::span<const LogitAdjustment> adjustments,
                                     std::span<DeviceSampleResult> results) {
  RETURN_IF_ERROR(CheckLogits(logits));
  if (results.size() != rows.size()) {
    return Invalid(absl::StrCat(results.size(), " results for ", rows.size(), " rows"));
  }
  if (rows.empty()) return absl::OkStatus();
  if (rows.size() > static_cast<size_t>(INT32_MAX)) {
    return Invalid(absl::StrCat(rows.size(), " rows; at most ", INT32_MAX));
  }
  size_t num_adjustments = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    RETURN_IF_ERROR(CheckRow(rows[i], i, logits.rows(), adjustments.size()));
    num_adjustments += static_cast<size_t>(rows[i].adjust_count);
  }
  if (num_adjustments > static_cast<size_t>(INT32_MAX)) {
    return Invalid(absl::StrCat(num_adjustments, " adjustments in all; at most ", INT32_MAX));
  }
  // One layout on both sides, each part 256-byte aligned: [rows][each
  // row's adjustments, sorted][results]. The first two go up in one copy.
  const size_t rows_bytes = AlignUp(rows.size() * sizeof(DeviceSamplingRow));
  const size_t upload_bytes = rows_bytes + AlignUp(num_adjustments * sizeof(LogitAdjustment));
  const size_t result_bytes = results.size() * sizeof(DeviceSampleResult);
  ASSIGN_OR_RETURN(void* staging, sampling_staging_->Reserve(upload_bytes + result_bytes, stream_));
  auto* staged_rows = static_cast<DeviceSamplingRow*>(staging);
  auto* staged_adjustments =
      reinterpret_cast<LogitAdjustment*>(static_cast<char*>(staging) + rows_bytes);
  size_t next = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto begin = static_cast<size_t>(rows[i].adjust_begin);
    const auto count = static_cast<size_t>(rows[i].adjust_count);
    staged_rows[i] = rows[i];
    staged_rows[i].adjust_begin = static_cast<int32_t>(next);
    std::span<LogitAdjustment> mine(staged_adjustments + next, count);
    std::copy_n(adjustments.begin() + static_cast<std::ptrdiff_t>(begin), count, mine.begin());
    RETURN_IF_ERROR(SortAndCheckAdjustments(mine, i, logits.cols()));
    next += count;
  }
  ASSIGN_OR_RETURN(void* workspace,
                   sampling_workspace_->Reserve(upload_bytes + result_bytes, stream_));
  char* base = static_cast<char*>(workspace);
  CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(base, staging, upload_bytes, cudaMemcpyHostToDevice, stream_));
  cuda::SampleRowsArgs args;
  args.logits = logits.as<float>();
  args.num_logit_rows = logits.rows();
  args.vocab = static_cast<int32_t>(logits.cols());
  args.rows = reinterpret_cast<const DeviceSamplingRow*>(base);
  args.num_rows = static_cast<int32_t>(rows.size());
  args.adjustments = reinterpret_cast<const LogitAdjustment*>(base + rows_bytes);
  args.results = reinterpret_cast<DeviceSampleResult*>(base + upload_bytes);
  CUDA_RETURN_IF_ERROR(cuda::LaunchSampleRows(args, stream_));
  char* staged_results = static_cast<char*>(staging) + upload_bytes;
  CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(staged_results, args.results, result_bytes, cudaMemcpyDeviceToHost, stream_));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  std::memcpy(static_cast<void*>(results.data()), staged_results, result_bytes);
  return absl::OkStatus();
}

}  // namespace alignserve
