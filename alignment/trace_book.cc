#include "alignment/trace_book.h"

#include <algorithm>

namespace alignserve {
namespace {

constexpr size_t kMaxAnswerInKey = 64;

// `text` cut to at most `max_bytes` without splitting a UTF-8 character.
std::string_view CutUtf8(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  size_t end = max_bytes;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end);
}

}  // namespace

Trace& TraceBook::Register(int64_t seq_id) {
  const int32_t index = size();
  by_seq_id_.emplace(seq_id, index);
  Trace& trace = traces_.emplace_back();
  trace.seq_id = seq_id;
  trace.index = index;
  return trace;
}

int32_t TraceBook::Observe(std::span<const TokenView> views, const PolicyContext& ctx) {
  std::vector<int64_t> unseen;
  for (const TokenView& v : views) {
    if (!by_seq_id_.contains(v.seq_id)) unseen.push_back(v.seq_id);
    if (max_tokens_ == 0) {
      const Sequence* seq = ctx.FindSequence(v.seq_id);
      if (seq != nullptr) max_tokens_ = seq->group().params().sampling.max_tokens;
    }
  }
  std::sort(unseen.begin(), unseen.end());
  for (const int64_t id : unseen) Register(id);
  for (const TokenView& v : views) {
    Trace& trace = traces_[static_cast<size_t>(by_seq_id_.at(v.seq_id))];
    trace.tokens = static_cast<int32_t>(v.output_token_ids.size());
    ++tokens_generated_;
  }
  return static_cast<int32_t>(unseen.size());
}

Trace* TraceBook::Find(int64_t seq_id) {
  const auto it = by_seq_id_.find(seq_id);
  return it == by_seq_id_.end() ? nullptr : &traces_[static_cast<size_t>(it->second)];
}

void TraceBook::Ended(const SequenceEnd& end, const AnswerExtractor& extractor,
                      const PolicyContext& ctx) {
  Trace* trace = Find(end.seq_id);
  if (trace == nullptr || trace->state == TraceState::kPruned ||
      trace->state == TraceState::kFinished) {
    return;
  }
  if (end.reason == FinishReason::kAbort) {
    MarkPruned(*trace);
    return;
  }
  trace->state = TraceState::kFinished;
  trace->reason = end.reason;
  trace->answer = extractor.Extract(ctx.text(end.seq_id));
}

void TraceBook::MarkPruned(Trace& trace) {
  if (trace.state == TraceState::kPruned || trace.state == TraceState::kFinished) return;
  trace.state = TraceState::kPruned;
  trace.reason = FinishReason::kAbort;
  tokens_saved_ += std::max(0, max_tokens_ - trace.tokens);
}

bool TraceBook::Prune(Trace& trace, PolicyContext& ctx) {
  if (!ctx.Abort(trace.seq_id).ok()) return false;
  MarkPruned(trace);
  return true;
}

void TraceBook::Reconcile(std::span<const SequenceResult> seqs, const AnswerExtractor& extractor) {
  for (const SequenceResult& s : seqs) {
    Trace* trace = Find(s.seq_id);
    if (trace == nullptr || trace->state == TraceState::kPruned ||
        trace->state == TraceState::kFinished) {
      continue;
    }
    if (s.finish_reason == FinishReason::kAbort) {
      MarkPruned(*trace);
      continue;
    }
    trace->state = TraceState::kFinished;
    trace->reason = s.finish_reason;
    trace->answer = extractor.Extract(s.text);
  }
}

std::vector<std::optional<std::string>> TraceBook::JudgedPrefix() const {
  std::vector<std::optional<std::string>> answers;
  for (const Trace& trace : traces_) {
    if (trace.state != TraceState::kFinished) break;
    answers.push_back(trace.answer);
  }
  return answers;
}

bool TraceBook::AllEnded(int32_t begin, int32_t end) const {
  for (int32_t i = std::max(begin, 0); i < std::min(end, size()); ++i) {
    const TraceState state = traces_[static_cast<size_t>(i)].state;
    if (state == TraceState::kRunning || state == TraceState::kPaused) return false;
  }
  return true;
}

int32_t TraceBook::Count(TraceState state) const {
  return static_cast<int32_t>(std::count_if(traces_.begin(), traces_.end(),
                                            [state](const Trace& t) { return t.state == state; }));
}

void AppendVoteFigures(const VoteResult& vote,
                       std::vector<std::pair<std::string, double>>* report) {
  for (const AnswerTally& tally : vote.tallies) {
    report->emplace_back(std::string("votes:").append(CutUtf8(tally.answer, kMaxAnswerInKey)),
                         tally.weight);
  }
}

int64_t ChooseWinnerTrace(const VoteResult& vote, std::span<const Trace* const> voters) {
  if (voters.empty()) return -1;
  if (vote.winner.has_value()) {
    for (const Trace* trace : voters) {
      if (trace->answer == vote.winner) return trace->seq_id;
    }
  }
  return voters.front()->seq_id;
}

}  // namespace alignserve
