// FakeTreeEngine: drives one DecodingPolicy that pauses at boundaries,
// scores through PolicyContext::Score and forks (what FakePolicyEngine's
// fixed traces cannot show), in decoding_policy.h's hook order, with no
// model. A script says what each sequence generates: every token is one
// piece of text, chosen by (the sequence's creation index, its output
// length so far, its text so far), so fork children, which draw with their
// own index, diverge from their parent.
//
// Steps, as LlmEngine runs them: OnScores with the results that arrived,
// OnStep (while a sequence is unfinished), scores queued so far are
// "scheduled" and come back at the next step's OnScores (so a Score from
// OnTokens or OnFinished is delivered two steps later), every live unpaused
// sequence gets its next piece, OnTokens, its decisions, then OnFinished with
// the step's ends (ends that OnFinished itself causes are reported at the
// next step). At step 0 all PolicySpec::num_sequences sequences (the expand
// group) get their first token. Finalize runs at the end of the step in
// which every sequence has finished and no score is queued or undelivered.
// Boundaries: the piece is not empty and the text now ends with
// PolicySpec::boundary_delimiter. Seq ids are 100 + creation index.
//
// log: every command and end, in order, e.g. "pause 101 @0",
// "fork 101 -> 104 @2", "end 104 stop @3"; `events` holds the same parsed,
// with the sequence's text at that moment, and a "hook" event opening each
// policy hook call.
// FindSequence returns null: no engine Sequence stands behind the fake.
// Thread-safety: single-threaded test helper.
#ifndef ALIGNSERVE_TESTS_ALIGNMENT_FAKE_TREE_ENGINE_H_
#define ALIGNSERVE_TESTS_ALIGNMENT_FAKE_TREE_ENGINE_H_

#include <catch2/catch.hpp>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/decoding_policy.h"
#include "engine/sequence.h"

namespace alignserve::testing {

// One token's text and whether the sequence ends with it.
struct Piece {
  std::string text;
  FinishReason end = FinishReason::kNone;
};
using TreeScript = std::function<Piece(int32_t index, int32_t depth, std::string_view text)>;

class FakeTreeEngine : public PolicyContext {
 public:
  static constexpr int64_t kFirstId = 100;

  struct Seq {
    int64_t id = 0;
    int64_t parent = -1;  // the forked sequence, -1 for the expand group
    std::string text;
    std::vector<int32_t> out;
    bool paused = false;
    FinishReason reason = FinishReason::kNone;
    int32_t sampled = 0;  // tokens it drew itself (not inherited from its parent)
  };

  FakeTreeEngine(DecodingPolicy& policy, TreeScript script)
      : policy_(policy), script_(std::move(script)), spec_(policy.Spec()) {
    // Views point into seqs_: it never reallocates, even for forks in OnTokens.
    seqs_.reserve(PolicySpec::kMaxSequences);
    for (int i = 0; i < spec_.num_sequences; ++i) {
      seqs_.emplace_back();
      seqs_.back().id = Id(i);
    }
  }

  // Runs to the end; Finalize's result.
  PolicyResult Run(int64_t max_steps = 10000) {
    for (step_ = 0; step_ < max_steps; ++step_) {
      if (StepOnce()) return *result_;
    }
    FAIL("the policy never finished its group");
    return {};
  }

  static int64_t Id(size_t index) { return kFirstId + static_cast<int64_t>(index); }
  const std::vector<Seq>& seqs() const { return seqs_; }
  const Seq& seq(int64_t id) const { return seqs_.at(static_cast<size_t>(id - kFirstId)); }
  int64_t tokens_sampled() const {
    int64_t n = 0;
    for (const Seq& s : seqs_) n += s.sampled;
    return n;
  }
  // One line of the log, parsed: kind "hook" (text = the hook's name),
  // "pause", "resume", "fork" (id = parent, other = child), "end" (reason).
  struct Event {
    std::string kind;
    int64_t id = -1;
    int64_t other = -1;
    FinishReason reason = FinishReason::kNone;
    std::string text;  // the sequence's text at that moment
    int64_t step = 0;
  };
  std::vector<std::string> log;                   // every event but the hook lines
  std::vector<Event> events;                      // every event
  int max_sequences = PolicySpec::kMaxSequences;  // at most kMaxSequences

  // PolicyContext.
  int64_t request_id() const override { return 1; }
  int64_t step() const override { return step_; }
  double free_block_fraction() const override { return 1.0; }
  const Sequence* FindSequence(int64_t) const override { return nullptr; }
  std::string_view text(int64_t id) const override {
    const Seq* s = Find(id);
    return s == nullptr ? std::string_view() : std::string_view(s->text);
  }
  std::span<const int32_t> prompt_token_ids() const override { return prompt_; }
  absl::StatusOr<int64_t> Score(ScoreRequest) override {
    queued_.push_back(next_score_id_);
    return next_score_id_++;
  }
  absl::StatusOr<std::vector<int64_t>> Fork(int64_t id, int count) override {
    Seq* s = Live(id);
    if (s == nullptr || s->out.empty()) return absl::FailedPreconditionError("cannot fork");
    if (seqs_.size() + static_cast<size_t>(count) > static_cast<size_t>(max_sequences)) {
      return absl::ResourceExhaustedError("group cap");
    }
    std::vector<int64_t> children;
    for (int k = 0; k < count; ++k) {
      Seq child = *s;
      child.id = Id(seqs_.size());
      child.parent = id;
      child.paused = false;  // a fork starts unpaused
      child.sampled = 0;
      Record(MakeEvent("fork", id, child.id),
             "fork " + std::to_string(id) + " -> " + std::to_string(child.id));
      children.push_back(child.id);
      seqs_.push_back(std::move(child));
    }
    return children;
  }
  absl::Status Stop(int64_t id) override { return End(id, FinishReason::kStop); }
  absl::Status Abort(int64_t id) override { return End(id, FinishReason::kAbort); }
  absl::Status Pause(int64_t id) override { return SetPaused(id, true); }
  absl::Status Resume(int64_t id) override { return SetPaused(id, false); }

 private:
  Seq* Find(int64_t id) {
    const int64_t i = id - kFirstId;
    return i >= 0 && i < static_cast<int64_t>(seqs_.size()) ? &seqs_[static_cast<size_t>(i)]
                                                            : nullptr;
  }
  const Seq* Find(int64_t id) const { return const_cast<FakeTreeEngine*>(this)->Find(id); }
  Seq* Live(int64_t id) {
    Seq* s = Find(id);
    return s != nullptr && s->reason == FinishReason::kNone ? s : nullptr;
  }
  void Record(Event e, const std::string& line) {
    e.step = step_;
    if (const Seq* s = Find(e.id); s != nullptr) e.text = s->text;
    events.push_back(std::move(e));
    log.push_back(line + " @" + std::to_string(step_));
  }
  static Event MakeEvent(std::string kind, int64_t id, int64_t other = -1,
                         FinishReason reason = FinishReason::kNone) {
    Event e;
    e.kind = std::move(kind);
    e.id = id;
    e.other = other;
    e.reason = reason;
    return e;
  }
  void Hook(const char* name) {
    events.push_back(Event{"hook", -1, -1, FinishReason::kNone, name, step_});
  }

  absl::Status End(int64_t id, FinishReason reason) {
    Seq* s = Live(id);
    if (s == nullptr) return absl::NotFoundError("not live");
    s->reason = reason;
    Record(MakeEvent("end", id, -1, reason),
           "end " + std::to_string(id) + " " + std::string(ToString(reason)));
    ends_.push_back(SequenceEnd{id, reason});
    return absl::OkStatus();
  }
  absl::Status SetPaused(int64_t id, bool paused) {
    Seq* s = Live(id);
    if (s == nullptr) return absl::NotFoundError("not live");
    if (s->paused != paused) {
      const std::string kind = paused ? "pause" : "resume";
      Record(MakeEvent(kind, id), kind + " " + std::to_string(id));
    }
    s->paused = paused;
    return absl::OkStatus();
  }

  // Appends the next piece of every runnable sequence; their views.
  std::vector<TokenView> Sample() {
    std::vector<TokenView> views;
    for (size_t i = 0; i < seqs_.size(); ++i) {
      Seq& s = seqs_[i];
      if (s.reason != FinishReason::kNone || s.paused) continue;
      const Piece piece =
          script_(static_cast<int32_t>(i), static_cast<int32_t>(s.out.size()), s.text);
      s.text += piece.text;
      s.out.push_back(static_cast<int32_t>(s.out.size()));
      ++s.sampled;
      TokenView v;
      v.seq_id = s.id;
      v.parent_seq_id = step_ == 0 && i > 0 ? Id(0) : -1;
      v.token = s.out.back();
      v.output_token_ids = s.out;
      v.text_delta = std::string_view(s.text).substr(s.text.size() - piece.text.size());
      const std::string& d = spec_.boundary_delimiter;
      v.boundary = !piece.text.empty() && !d.empty() && s.text.ends_with(d);
      v.finish_reason = piece.end;
      views.push_back(v);
    }
    return views;
  }

  void Apply(const TokenView& v) {
    Seq& s = *Find(v.seq_id);
    if (s.reason != FinishReason::kNone) return;  // a ctx command ended it already
    if (v.finish_reason != FinishReason::kNone) {
      (void)End(v.seq_id, v.finish_reason);
    } else if (v.decision == TokenDecision::kPause) {
      (void)SetPaused(v.seq_id, true);
    } else if (v.decision == TokenDecision::kStop || v.decision == TokenDecision::kAbort) {
      (void)End(v.seq_id,
                v.decision == TokenDecision::kStop ? FinishReason::kStop : FinishReason::kAbort);
    }
  }

  bool AllEnded() const {
    for (const Seq& s : seqs_) {
      if (s.reason == FinishReason::kNone) return false;
    }
    return true;
  }

  bool StepOnce() {
    if (!ready_.empty()) {
      std::vector<ScoreResult> results;
      for (const int64_t id : ready_)
        results.push_back(ScoreResult{id, absl::OkStatus(), {}, step_});
      ready_.clear();
      Hook("OnScores");
      policy_.OnScores(results, *this);
    }
    if (!AllEnded()) {
      Hook("OnStep");
      policy_.OnStep(*this);
    }
    std::vector<int64_t> running = std::move(queued_);
    queued_.clear();
    std::vector<TokenView> views = Sample();
    if (!views.empty()) {
      Hook("OnTokens");
      policy_.OnTokens(views, *this);
    }
    for (const TokenView& v : views) Apply(v);
    std::vector<SequenceEnd> ended = std::move(ends_);
    ends_.clear();
    if (!ended.empty()) {
      Hook("OnFinished");
      policy_.OnFinished(ended, *this);
    }
    ready_.insert(ready_.end(), running.begin(), running.end());
    if (!AllEnded() || !queued_.empty() || !ready_.empty()) return false;
    std::vector<SequenceResult> results;
    for (const Seq& s : seqs_) results.push_back(SequenceResult{s.id, s.out, s.text, s.reason});
    result_ = policy_.Finalize(results);
    return true;
  }

  DecodingPolicy& policy_;
  TreeScript script_;
  const PolicySpec spec_;
  const std::vector<int32_t> prompt_ = {1, 2};
  std::vector<Seq> seqs_;          // by creation index
  std::vector<SequenceEnd> ends_;  // not yet reported to OnFinished
  std::vector<int64_t> queued_;    // score ids not yet scheduled
  std::vector<int64_t> ready_;     // computed, delivered at the next step
  int64_t next_score_id_ = 1;
  int64_t step_ = 0;
  std::optional<PolicyResult> result_;
};

}  // namespace alignserve::testing

#endif  // ALIGNSERVE_TESTS_ALIGNMENT_FAKE_TREE_ENGINE_H_
