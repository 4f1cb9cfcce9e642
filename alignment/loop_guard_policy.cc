#include "alignment/loop_guard_policy.h"

#include <algorithm>
#include <utility>

#include "alignment/policy_report_keys.h"
#include "kernels/status_macros.h"

namespace alignserve {

absl::StatusOr<SequenceLoopGuards> SequenceLoopGuards::Create(const LoopGuardConfig& config) {
  RETURN_IF_ERROR(LoopGuard::Create(config).status());
  return SequenceLoopGuards(config);
}

bool SequenceLoopGuards::Add(int64_t seq_id, std::span<const int32_t> output_token_ids) {
  if (output_token_ids.empty()) return false;
  auto it = guards_.find(seq_id);
  if (it == guards_.end()) {
    absl::StatusOr<LoopGuard> guard = LoopGuard::Create(config_);  // validated in Create
    if (!guard.ok()) return false;
    it = guards_.emplace(seq_id, std::move(*guard)).first;
    // A fork arrives with its parent's tokens: the guard sees the whole path.
    for (size_t i = 0; i + 1 < output_token_ids.size(); ++i) it->second.Add(output_token_ids[i]);
  }
  const bool was_looping = it->second.looping();
  const bool looping = it->second.Add(output_token_ids.back());
  if (looping && !was_looping) ++loops_detected_;
  return looping;
}

absl::StatusOr<std::shared_ptr<LoopGuardPolicy>> LoopGuardPolicy::Create(
    const LoopGuardParams& params) {
  LoopGuardConfig config;
  config.ngram = params.ngram;
  config.window = params.window;
  ASSIGN_OR_RETURN(SequenceLoopGuards guards, SequenceLoopGuards::Create(config));
  return std::shared_ptr<LoopGuardPolicy>(new LoopGuardPolicy(std::move(guards)));
}

void LoopGuardPolicy::OnTokens(std::span<TokenView> seqs, PolicyContext& ctx) {
  for (TokenView& v : seqs) {
    ++tokens_generated_;
    if (!guards_.Add(v.seq_id, v.output_token_ids) || v.finish_reason != FinishReason::kNone) {
      continue;
    }
    v.decision = TokenDecision::kStop;  // a looping sequence gets no further token
    loop_at_token_ = static_cast<int64_t>(v.output_token_ids.size());
    const Sequence* seq = ctx.FindSequence(v.seq_id);
    if (seq != nullptr) {
      tokens_saved_ = std::max<int64_t>(
          0, seq->group().params().sampling.max_tokens - static_cast<int64_t>(loop_at_token_));
    }
  }
}

PolicyResult LoopGuardPolicy::Finalize(std::span<const SequenceResult> seqs) {
  PolicyResult result = DecodingPolicy::Finalize(seqs);
  result.report = {
      {"loop_detected", loop_detected() ? 1.0 : 0.0},
      {kReportTokensGenerated, static_cast<double>(tokens_generated_)},
      {kReportTokensSaved, static_cast<double>(tokens_saved_)},
  };
  if (loop_detected()) {
    result.report.emplace_back("loop_detected_at_token", static_cast<double>(loop_at_token_));
  }
  return result;
}

}  // namespace alignserve
