#include "alignment/deepconf_policy.h"

#include <array>
#include <limits>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "alignment/policy_report_keys.h"
#include "alignment/vote.h"
#include "engine/sampling_params.h"
#include "kernels/status_macros.h"

namespace alignserve {
namespace {

// C_i from a view's top logprobs (at most SamplingParams::kMaxLogprobs).
double ViewConfidence(const TokenView& v) {
  std::array<float, SamplingParams::kMaxLogprobs> lps;
  const size_t k = std::min(v.top_logprobs.size(), lps.size());
  for (size_t j = 0; j < k; ++j) lps[j] = v.top_logprobs[j].logprob;
  return TokenConfidence(std::span<const float>(lps.data(), k));
}

}  // namespace

absl::StatusOr<std::shared_ptr<DeepConfPolicy>> DeepConfPolicy::Create(
    const DeepConfParams& params) {
  const bool ok =
      params.n >= 1 && params.n <= kMaxPolicyN && params.n_init >= 1 && params.n_init <= params.n &&
      params.window >= 1 && params.window <= kMaxPolicyWindow && params.percentile > 0 &&
      params.percentile < 100 && params.top_k >= 1 && params.top_k <= SamplingParams::kMaxLogprobs;
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "deepconf parameters out of range: n ", params.n, ", n_init ", params.n_init, ", window ",
        params.window, ", percentile ", params.percentile, ", top_k ", params.top_k));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<AnswerExtractor> extractor, MakeAnswerExtractor(params.answer));
  return std::shared_ptr<DeepConfPolicy>(new DeepConfPolicy(params, std::move(extractor)));
}

DeepConfPolicy::DeepConfPolicy(const DeepConfParams& params,
                               std::unique_ptr<AnswerExtractor> extractor)
    : params_(params), extractor_(std::move(extractor)) {}

PolicySpec DeepConfPolicy::Spec() const {
  PolicySpec spec;
  spec.num_sequences = params_.n;
  spec.top_logprobs = params_.top_k;
  return spec;
}

void DeepConfPolicy::OnTokens(std::span<TokenView> seqs, PolicyContext& ctx) {
  book_.Observe(seqs, ctx);
  while (windows_.size() < static_cast<size_t>(book_.size())) windows_.emplace_back(params_.window);
  for (TokenView& v : seqs) {
    Trace* trace = book_.Find(v.seq_id);
    if (trace == nullptr) continue;
    GroupConfidenceWindow& window = windows_[static_cast<size_t>(trace->index)];
    window.Add(ViewConfidence(v));
    if (v.finish_reason != FinishReason::kNone || IsWarmup(*trace)) continue;
    if (!threshold_.has_value()) {
      // A later trace waits for the threshold after its first token.
      if (trace->state == TraceState::kRunning) {
        v.decision = TokenDecision::kPause;
        trace->state = TraceState::kPaused;
      }
    } else if (window.ShouldStop(*threshold_)) {
      v.decision = TokenDecision::kAbort;
      book_.MarkPruned(*trace);
    }
  }
}

void DeepConfPolicy::OnFinished(std::span<const SequenceEnd> ended, PolicyContext& ctx) {
  for (const SequenceEnd& end : ended) book_.Ended(end, *extractor_, ctx);
  MaybeEndWarmup(ctx);
  MaybeStopAtConsensus(ctx);
}

void DeepConfPolicy::MaybeStopAtConsensus(PolicyContext& ctx) {
  if (!params_.consensus.has_value() || !threshold_.has_value() || consensus_reached_) return;
  const VoteResult vote = Vote(nullptr);
  if (!vote.winner.has_value() || vote.share < *params_.consensus) return;
  consensus_reached_ = true;
  for (Trace& trace : book_.traces()) {
    if (trace.state != TraceState::kRunning && trace.state != TraceState::kPaused) continue;
    if (book_.Prune(trace, ctx)) ++stopped_at_consensus_;
  }
}

VoteResult DeepConfPolicy::Vote(std::vector<const Trace*>* voters) const {
  std::vector<VoteEntry> entries;
  for (const Trace& trace : book_.traces()) {
    if (!Votes(trace)) continue;
    if (voters != nullptr) voters->push_back(&trace);
    entries.push_back(VoteEntry{
        trace.answer, windows_[static_cast<size_t>(trace.index)].LowestGroupConfidence()});
  }
  return WeightedMajorityVote(entries);
}

void DeepConfPolicy::MaybeEndWarmup(PolicyContext& ctx) {
  if (threshold_.has_value() || book_.size() < params_.n_init ||
      !book_.AllEnded(0, params_.n_init)) {
    return;
  }
  std::vector<double> lowest;
  for (const Trace& trace : book_.traces()) {
    if (IsWarmup(trace) && trace.state == TraceState::kFinished) {
      lowest.push_back(windows_[static_cast<size_t>(trace.index)].LowestGroupConfidence());
    }
  }
  // No usable warm-up trace (none finished): prune nothing.
  const absl::StatusOr<double> s = DeepConfThreshold(lowest, params_.percentile);
  threshold_ = s.ok() ? *s : std::numeric_limits<double>::lowest();
  for (Trace& trace : book_.traces()) {
    if (trace.state != TraceState::kPaused || !ctx.Resume(trace.seq_id).ok()) continue;
    trace.state = TraceState::kRunning;
    if (windows_[static_cast<size_t>(trace.index)].ShouldStop(*threshold_)) book_.Prune(trace, ctx);
  }
}

bool DeepConfPolicy::Votes(const Trace& trace) const {
  if (trace.state != TraceState::kFinished) return false;
  if (!threshold_.has_value()) return true;
  return windows_[static_cast<size_t>(trace.index)].LowestGroupConfidence() >= *threshold_;
}

PolicyResult DeepConfPolicy::Finalize(std::span<const SequenceResult> seqs) {
  book_.Reconcile(seqs, *extractor_);
  const Trace* first_finished = nullptr;
  for (const Trace& trace : book_.traces()) {
    if (trace.state == TraceState::kFinished && first_finished == nullptr) first_finished = &trace;
  }
  std::vector<const Trace*> voters;
  const VoteResult vote = Vote(&voters);
  PolicyResult result;
  if (!voters.empty()) {
    result.choices.push_back(ChooseWinnerTrace(vote, voters));
  } else if (first_finished != nullptr) {
    result.choices.push_back(first_finished->seq_id);
  }
  result.report = {
      {"threshold", threshold_.value_or(0.0)},
      {"warmup_traces", static_cast<double>(std::min(params_.n_init, book_.size()))},
      {kReportTracesPruned, static_cast<double>(book_.Count(TraceState::kPruned))},
      {"traces_voting", static_cast<double>(voters.size())},
      {kReportTokensGenerated, static_cast<double>(book_.tokens_generated())},
      {kReportTokensSaved, static_cast<double>(book_.tokens_saved())},
      {"winner_share", vote.share},
  };
  if (params_.consensus.has_value()) {
    result.report.emplace_back("consensus_reached", consensus_reached_ ? 1.0 : 0.0);
    result.report.emplace_back("traces_stopped_at_consensus",
                               static_cast<double>(stopped_at_consensus_));
  }
  AppendVoteFigures(vote, &result.report);
  return result;
}

}  // namespace alignserve
