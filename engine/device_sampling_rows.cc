// Building DeviceSamplingRows from SamplingParams and token histories, and
// reading DeviceSampleResults back (engine/device_sampling_rows.h).
#include "engine/device_sampling_rows.h"

#include <algorithm>
#include <limits>

namespace alignserve {
namespace {

// Folds entries of one token (sorted runs of *first..*end) into one:
// bias from the bias map (others carry 0), flags or-ed, counts added.
using Iter = std::vector<LogitAdjustment>::iterator;

bool ByToken(const LogitAdjustment& a, const LogitAdjustment& b) { return a.token < b.token; }

// Folds runs of one token of a range sorted by token into one entry.
Iter FoldByToken(Iter first, Iter end) {
  auto out = first;
  for (auto it = first; it != end; ++it) {
    if (out != first && (out - 1)->token == it->token) {
      LogitAdjustment& merged = *(out - 1);
      if (it->bias != 0.0f) merged.bias = it->bias;
      merged.output_count += it->output_count;
      merged.masked |= it->masked;
      merged.repeated |= it->repeated;
    } else {
      *out++ = *it;
    }
  }
  return out;
}

// Sorts then folds.
Iter MergeByToken(Iter first, Iter end) {
  std::sort(first, end, ByToken);
  return FoldByToken(first, end);
}

}  // namespace

void AppendDeviceSamplingRow(const SamplingParams& params, std::span<const int32_t> prompt,
                             std::span<const int32_t> output, std::span<const int32_t> eos_ids,
                             int32_t vocab_size, uint64_t seed, int32_t logits_row,
                             std::vector<DeviceSamplingRow>* rows,
                             std::vector<LogitAdjustment>* adjustments,
                             const PenaltyHistory* history) {
  const size_t begin = adjustments->size();
  for (const auto& [token, bias] : params.logit_bias) {
    adjustments->push_back(LogitAdjustment{.token = token, .bias = bias});
  }
  if (static_cast<int64_t>(output.size()) < params.min_tokens) {
    for (int32_t token : params.stop_token_ids) {
      adjustments->push_back(LogitAdjustment{.token = token, .masked = 1});
    }
    if (!params.ignore_eos) {
      for (int32_t token : eos_ids) {
        adjustments->push_back(LogitAdjustment{.token = token, .masked = 1});
      }
    }
  }
  const bool repetition = params.repetition_penalty != 1.0f;
  const bool counted = params.presence_penalty != 0.0f || params.frequency_penalty != 0.0f;
  Iter end;
  if (history == nullptr) {
    if (repetition) {
      for (int32_t token : prompt) {
        adjustments->push_back(LogitAdjustment{.token = token, .repeated = 1});
      }
    }
    if (repetition || counted) {
      for (int32_t token : output) {
        adjustments->push_back(LogitAdjustment{.token = token, .output_count = 1, .repeated = 1});
      }
    }
    end =
        MergeByToken(adjustments->begin() + static_cast<std::ptrdiff_t>(begin), adjustments->end());
  } else {
    // The bias and mask entries (few) sorted; the history's two sorted
    // lists appended and merged in, linear in their length.
    std::sort(adjustments->begin() + static_cast<std::ptrdiff_t>(begin), adjustments->end(),
              ByToken);
    size_t mid = adjustments->size();
    if (repetition) {
      for (int32_t token : history->prompt_distinct()) {
        adjustments->push_back(LogitAdjustment{.token = token, .repeated = 1});
      }
      std::inplace_merge(adjustments->begin() + static_cast<std::ptrdiff_t>(begin),
                         adjustments->begin() + static_cast<std::ptrdiff_t>(mid),
                         adjustments->end(), ByToken);
    }
    mid = adjustments->size();
    if (repetition || counted) {
      for (const auto& [token, count] : history->output_counts()) {
        adjustments->push_back(
            LogitAdjustment{.token = token, .output_count = count, .repeated = 1});
      }
      std::inplace_merge(adjustments->begin() + static_cast<std::ptrdiff_t>(begin),
                         adjustments->begin() + static_cast<std::ptrdiff_t>(mid),
                         adjustments->end(), ByToken);
    }
    end =
        FoldByToken(adjustments->begin() + static_cast<std::ptrdiff_t>(begin), adjustments->end());
  }
  end = std::remove_if(
      adjustments->begin() + static_cast<std::ptrdiff_t>(begin), end,
      [vocab_size](const LogitAdjustment& a) { return a.token < 0 || a.token >= vocab_size; });
  adjustments->erase(end, adjustments->end());

  DeviceSamplingRow row;
  row.logits_row = logits_row;
  row.temperature = params.temperature;
  row.top_k = params.top_k;
  row.top_p = params.top_p;
  row.min_p = params.min_p;
  row.repetition_penalty = params.repetition_penalty;
  row.presence_penalty = params.presence_penalty;
  row.frequency_penalty = params.frequency_penalty;
  row.seed = seed;
  row.step = output.size();
  row.adjust_begin = static_cast<int32_t>(begin);
  row.adjust_count = static_cast<int32_t>(adjustments->size() - begin);
  row.num_logprobs = params.logprobs ? *params.logprobs : -1;
  rows->push_back(row);
}

void PenaltyHistory::Sync(std::span<const int32_t> prompt, std::span<const int32_t> output) {
  auto same = [](std::span<const int32_t> a, std::span<const int32_t> b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
  };
  const bool extends = synced_ && same(prompt, prompt_) && output.size() >= output_.size() &&
                       same(output.first(output_.size()), output_);
  if (!extends) {
    prompt_.assign(prompt.begin(), prompt.end());
    prompt_distinct_ = prompt_;
    std::sort(prompt_distinct_.begin(), prompt_distinct_.end());
    prompt_distinct_.erase(std::unique(prompt_distinct_.begin(), prompt_distinct_.end()),
                           prompt_distinct_.end());
    output_.clear();
    output_counts_.clear();
    synced_ = true;
  }
  for (size_t i = output_.size(); i < output.size(); ++i) {
    const int32_t token = output[i];
    auto it = std::lower_bound(output_counts_.begin(), output_counts_.end(),
                               std::pair<int32_t, int32_t>{token, 0},
                               [](const auto& x, const auto& y) { return x.first < y.first; });
    if (it != output_counts_.end() && it->first == token) {
      ++it->second;
    } else {
      output_counts_.insert(it, {token, 1});
    }
    output_.push_back(token);
  }
}

void ToSampleResult(const DeviceSampleResult& drawn, bool want_logprobs, SampleResult* out) {
  out->token = drawn.token;
  if (!want_logprobs) return;
  PositionLogprobs& lp = out->logprobs;
  lp.logprob = drawn.logprob;
  lp.rank = drawn.rank;
  const int num_top = std::clamp(drawn.num_top, 0, kMaxDeviceLogprobs);
  lp.top.resize(static_cast<size_t>(num_top));
  for (int i = 0; i < num_top; ++i) {
    lp.top[static_cast<size_t>(i)] = TokenLogprob{drawn.top_tokens[i], drawn.top_logprobs[i]};
  }
}

void ApplyLogitAdjustments(const DeviceSamplingRow& row,
                           std::span<const LogitAdjustment> adjustments, std::span<float> logits) {
  const auto mine = adjustments.subspan(static_cast<size_t>(row.adjust_begin),
                                        static_cast<size_t>(row.adjust_count));
  const float penalty = row.repetition_penalty;
  const bool counted = row.presence_penalty != 0.0f || row.frequency_penalty != 0.0f;
  for (const LogitAdjustment& a : mine) {
    float& x = logits[static_cast<size_t>(a.token)];
    x += a.bias;
    if (a.masked) x = -std::numeric_limits<float>::infinity();
    if (a.repeated && penalty != 1.0f) x = x > 0.0f ? x / penalty : x * penalty;
    if (a.output_count > 0 && counted) {
      x -= row.frequency_penalty * static_cast<float>(a.output_count) + row.presence_penalty;
    }
  }
}

}  // namespace alignserve
