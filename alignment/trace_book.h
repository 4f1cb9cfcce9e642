// TraceBook: the per-sequence bookkeeping that the voting policies
// (self-consistency, DeepConf) share: which sample each sequence is, whether
// it runs, waits paused, finished (with the answer it votes for) or was
// pruned, and the token figures of the policy report.
//
// Sample order. A voting policy expands its request into n sequences at
// admission (PolicySpec::num_sequences); the engine creates them in one step
// and gives them increasing seq ids, so the i-th smallest id is sample i
// (it draws with the request's seed + i). The book registers the sequences
// of the first OnTokens batch in that order; an id first seen later (a fork)
// is appended after them.
//
// Figures. tokens_generated counts every token a hook saw (OnTokens views),
// so it is exact. tokens_saved is an estimate, and an upper bound: each
// pruned sequence is charged its unused max_tokens budget (max_tokens minus
// the tokens it had), as if it would have run to max_tokens; a sample that
// would have stopped earlier on its own saved less.
//
// Answers are extracted once, when a sequence finishes, from the raw text
// the engine decoded for it (PolicyContext::text: before stop strings are
// cut). Extraction runs on the engine thread; a regex extractor's cost is
// bounded by answer_extractor.h's limits.
//
// Thread-safety: a plain value owned by one policy (the engine thread).
#ifndef ALIGNSERVE_ALIGNMENT_TRACE_BOOK_H_
#define ALIGNSERVE_ALIGNMENT_TRACE_BOOK_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "alignment/answer_extractor.h"
#include "alignment/vote.h"
#include "engine/decoding_policy.h"

namespace alignserve {

enum class TraceState {
  kRunning,
  kPaused,    // held by the policy (ctx.Pause / TokenDecision::kPause)
  kFinished,  // ended by the engine (stop checker, length) or a policy stop
  kPruned,    // aborted by the policy
};

struct Trace {
  int64_t seq_id = 0;
  int32_t index = 0;  // sample order, from 0
  TraceState state = TraceState::kRunning;
  int32_t tokens = 0;  // output tokens seen so far
  FinishReason reason = FinishReason::kNone;
  std::optional<std::string> answer;  // set once finished, if the text names one
};

class TraceBook {
 public:
  // Registers the views' unseen sequences (ascending id) and counts each
  // view's token. Returns how many traces were registered by this call.
  int32_t Observe(std::span<const TokenView> views, const PolicyContext& ctx);

  // Null when the id was never registered.
  Trace* Find(int64_t seq_id);
  std::vector<Trace>& traces() { return traces_; }
  const std::vector<Trace>& traces() const { return traces_; }

  // Records a sequence's end as the engine reported it. Ends of traces the
  // policy already pruned are ignored; any other abort counts as pruned.
  void Ended(const SequenceEnd& end, const AnswerExtractor& extractor, const PolicyContext& ctx);
  // Marks a trace pruned (the caller aborts it: TokenDecision or ctx) and
  // charges its unused budget to tokens_saved.
  void MarkPruned(Trace& trace);
  // Aborts through ctx and marks pruned; false if the engine refused.
  bool Prune(Trace& trace, PolicyContext& ctx);
  // Fills in ends Finalize sees that no OnFinished reported.
  void Reconcile(std::span<const SequenceResult> seqs, const AnswerExtractor& extractor);

  // Answers of the longest run of finished traces from sample 0 (the
  // samples a stopping rule may judge, in sample order).
  std::vector<std::optional<std::string>> JudgedPrefix() const;
  // True when no trace of index in [begin, end) is running or paused.
  bool AllEnded(int32_t begin, int32_t end) const;

  int32_t size() const { return static_cast<int32_t>(traces_.size()); }
  int32_t Count(TraceState state) const;
  int64_t tokens_generated() const { return tokens_generated_; }
  int64_t tokens_saved() const { return tokens_saved_; }
  // The request's max_tokens (0 until a live sequence was seen).
  int32_t max_tokens() const { return max_tokens_; }

 private:
  Trace& Register(int64_t seq_id);

  std::vector<Trace> traces_;                        // by index
  absl::flat_hash_map<int64_t, int32_t> by_seq_id_;  // seq id -> index
  int64_t tokens_generated_ = 0;
  int64_t tokens_saved_ = 0;
  int32_t max_tokens_ = 0;
};

// Report figures of a vote: "votes:<answer>" = the answer's weight (its
// count in an unweighted vote), per distinct answer in order of first
// occurrence. Answers are cut to 64 bytes at a UTF-8 character boundary.
void AppendVoteFigures(const VoteResult& vote, std::vector<std::pair<std::string, double>>* report);

// The first trace (sample order) in `voters` whose answer won, else the
// first of `voters`; -1 when `voters` is empty.
int64_t ChooseWinnerTrace(const VoteResult& vote, std::span<const Trace* const> voters);

}  // namespace alignserve

#endif  // ALIGNSERVE_ALIGNMENT_TRACE_BOOK_H_
