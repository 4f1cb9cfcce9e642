#include "engine/stop_checker.h"

#include <algorithm>
#include <utility>

namespace alignserve {
namespace {

bool Contains(std::span<const int32_t> ids, int32_t token) {
  return std::find(ids.begin(), ids.end(), token) != ids.end();
}

}  // namespace

StopChecker::StopChecker(const SamplingParams& params, std::vector<int32_t> eos_token_ids,
                         int32_t prompt_len, int32_t max_model_len)
    : params_(params),
      eos_token_ids_(std::move(eos_token_ids)),
      prompt_len_(prompt_len),
      max_model_len_(max_model_len) {
  for (const std::string& s : params_.stop) max_stop_bytes_ = std::max(max_stop_bytes_, s.size());
}

StopDecision StopChecker::Append(int32_t token, std::string_view text_delta) {
  if (reason_ != FinishReason::kNone) return {reason_, ""};
  ++num_output_;
  const bool may_stop = num_output_ > params_.min_tokens;
  const bool is_eos = !params_.ignore_eos && Contains(eos_token_ids_, token);
  if (may_stop && (is_eos || Contains(params_.stop_token_ids, token))) {
    if (!is_eos) stop_token_ = token;
    if (params_.include_stop_str_in_output) pending_.append(text_delta);
    return Finish(FinishReason::kStop, pending_.size());
  }
  const size_t new_from = pending_.size();
  pending_.append(text_delta);
  if (may_stop && !text_delta.empty()) {
    size_t end = 0;
    if (std::optional<size_t> hit = FindStopString(new_from, &end)) {
      stop_string_ = params_.stop[*hit];
      return Finish(FinishReason::kStop, end);
    }
  }
  if (num_output_ >= params_.max_tokens ||
      int64_t{prompt_len_} + num_output_ >= int64_t{max_model_len_}) {
    return Finish(FinishReason::kLength, pending_.size());
  }
  const size_t hold = params_.include_stop_str_in_output ? 0 : HoldBackLength();
  StopDecision decision;
  decision.text = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, decision.text.size());
  output_text_ += decision.text;
  return decision;
}

std::optional<size_t> StopChecker::FindStopString(size_t new_from, size_t* release) const {
  if (params_.stop.empty()) return std::nullopt;
  // With include_stop_str_in_output nothing is held back, so a match may
  // start in text already released: search its tail too.
  const size_t lookback = std::min(output_text_.size(), max_stop_bytes_ - 1);
  const std::string window = output_text_.substr(output_text_.size() - lookback) + pending_;
  const size_t new_start = lookback + new_from;  // first byte of the new delta
  std::optional<size_t> best;
  size_t best_pos = 0, best_end = 0;
  for (size_t i = 0; i < params_.stop.size(); ++i) {
    const std::string& s = params_.stop[i];
    // Only matches that end inside the new delta: earlier ones were either
    // seen already or fell under min_tokens.
    const size_t from = new_start + 1 > s.size() ? new_start + 1 - s.size() : 0;
    const size_t pos = window.find(s, from);
    if (pos == std::string::npos) continue;
    const size_t end = pos + s.size();
    if (!best || end < best_end || (end == best_end && pos < best_pos)) {
      best = i;
      best_pos = pos;
      best_end = end;
    }
  }
  if (!best) return std::nullopt;
  const size_t cut = params_.include_stop_str_in_output ? best_end : best_pos;
  *release = cut > lookback ? cut - lookback : 0;
  return best;
}

size_t StopChecker::HoldBackLength() const {
  size_t hold = 0;
  const std::string_view text = pending_;
  for (const std::string& s : params_.stop) {
    for (size_t len = std::min(s.size() - 1, text.size()); len > hold; --len) {
      if (text.substr(text.size() - len) == std::string_view(s).substr(0, len)) {
        hold = len;
        break;
      }
    }
  }
  return hold;
}

StopDecision StopChecker::Finish(FinishReason reason, size_t release_bytes) {
  reason_ = reason;
  StopDecision decision;
  decision.reason = reason;
  decision.text = pending_.substr(0, release_bytes);
  pending_.clear();
  output_text_ += decision.text;
  return decision;
}

}  // namespace alignserve
