// FakePolicyEngine: drives one DecodingPolicy through scripted sequences the
// way LlmEngine does (decoding_policy.h's hook order), with no model, so a
// policy's decisions can be checked token by token against an oracle.
//
// Each scripted trace is the whole path sample i would generate: its tokens,
// the top logprobs of each, its text and how it ends (at its last token).
// Step: every running, unpaused trace gets its next token; at the first
// step all traces (the expand group) get their first token. Then OnTokens,
// its decisions, OnFinished with the step's ends, and Finalize when every
// trace ended. Commands from OnFinished are reported at the next step, as
// the engine does. Seq ids are 100 + sample index.
//
// RecordingPolicy forwards every hook to a policy under test and records
// what the engine showed it (for end-to-end tests on the real engine).
// Thread-safety: single-threaded test helpers.
#ifndef ALIGNSERVE_TESTS_ALIGNMENT_FAKE_POLICY_ENGINE_H_
#define ALIGNSERVE_TESTS_ALIGNMENT_FAKE_POLICY_ENGINE_H_

#include <catch2/catch.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/decoding_policy.h"
#include "engine/sequence.h"

namespace alignserve::testing {

struct ScriptedTrace {
  std::vector<int32_t> tokens;
  std::vector<std::vector<float>> top;  // [tokens] top logprobs, optional
  std::string text;                     // the text once it ended normally
  FinishReason end = FinishReason::kLength;
};

class FakePolicyEngine : public PolicyContext {
 public:
  static constexpr int64_t kFirstId = 100;

  FakePolicyEngine(DecodingPolicy& policy, std::vector<ScriptedTrace> traces, int32_t max_tokens)
      : policy_(policy), traces_(std::move(traces)) {
    RequestParams params;
    params.sampling.max_tokens = max_tokens;
    group_ = std::make_unique<SequenceGroup>(1, params, 0);
    for (size_t i = 0; i < traces_.size(); ++i) {
      group_->AddSequence(std::make_unique<Sequence>(kFirstId + static_cast<int64_t>(i),
                                                     group_.get(), std::vector<int32_t>{1, 2}));
    }
    states_.resize(traces_.size());
  }

  struct State {
    std::vector<int32_t> out;
    bool paused = false;
    FinishReason reason = FinishReason::kNone;
    int64_t end_step = -1;
    std::vector<int64_t> token_steps;  // the step of each token
  };

  // Runs to the end; Finalize's result.
  PolicyResult Run(int64_t max_steps = 100000) {
    for (step_ = 0; step_ < max_steps; ++step_) {
      if (StepOnce()) return *result_;
    }
    FAIL("the policy never finished its group");
    return {};
  }

  const State& state(size_t i) const { return states_[i]; }
  static int64_t Id(size_t i) { return kFirstId + static_cast<int64_t>(i); }
  std::vector<std::string> log;  // "pause 101 @0", "resume 104 @5", ...

  // PolicyContext.
  int64_t request_id() const override { return 1; }
  int64_t step() const override { return step_; }
  double free_block_fraction() const override { return 1.0; }
  const Sequence* FindSequence(int64_t id) const override {
    const State* s = Find(id);
    return s != nullptr && s->reason == FinishReason::kNone
               ? group_->sequences()[static_cast<size_t>(id - kFirstId)].get()
               : nullptr;
  }
  std::string_view text(int64_t id) const override {
    const State* s = Find(id);
    if (s == nullptr || s->reason == FinishReason::kNone || s->reason == FinishReason::kAbort) {
      return {};
    }
    return traces_[static_cast<size_t>(id - kFirstId)].text;
  }
  absl::StatusOr<std::vector<int64_t>> Fork(int64_t, int) override {
    return absl::UnimplementedError("no forks in the fake");
  }
  absl::Status Stop(int64_t id) override { return End(id, FinishReason::kStop); }
  absl::Status Abort(int64_t id) override { return End(id, FinishReason::kAbort); }
  absl::Status Pause(int64_t id) override { return SetPaused(id, true); }
  absl::Status Resume(int64_t id) override { return SetPaused(id, false); }

 private:
  State* Find(int64_t id) {
    return id >= kFirstId && id < kFirstId + static_cast<int64_t>(states_.size())
               ? &states_[static_cast<size_t>(id - kFirstId)]
               : nullptr;
  }
  const State* Find(int64_t id) const { return const_cast<FakePolicyEngine*>(this)->Find(id); }

  absl::Status End(int64_t id, FinishReason reason) {
    State* s = Find(id);
    if (s == nullptr || s->reason != FinishReason::kNone) return absl::NotFoundError("not live");
    s->reason = reason;
    s->end_step = step_;
    log.push_back(std::string(ToString(reason)) + " " + std::to_string(id) + " @" +
                  std::to_string(step_));
    pending_.push_back(SequenceEnd{id, reason});
    return absl::OkStatus();
  }
  absl::Status SetPaused(int64_t id, bool paused) {
    State* s = Find(id);
    if (s == nullptr || s->reason != FinishReason::kNone) return absl::NotFoundError("not live");
    if (s->paused != paused) {
      log.push_back(std::string(paused ? "pause " : "resume ") + std::to_string(id) + " @" +
                    std::to_string(step_));
    }
    s->paused = paused;
    return absl::OkStatus();
  }

  // Appends the next token of every runnable trace; their views.
  std::vector<TokenView> Sample(std::vector<std::vector<TokenLogprob>>& tops) {
    std::vector<TokenView> views;
    tops.assign(traces_.size(), {});
    for (size_t i = 0; i < traces_.size(); ++i) {
      State& s = states_[i];
      if (s.reason != FinishReason::kNone || s.paused) continue;
      const ScriptedTrace& t = traces_[i];
      REQUIRE(s.out.size() < t.tokens.size());
      const size_t pos = s.out.size();
      s.out.push_back(t.tokens[pos]);
      s.token_steps.push_back(step_);
      TokenView v;
      v.seq_id = Id(i);
      v.parent_seq_id = (step_ == 0 && i > 0) ? Id(0) : -1;
      v.token = t.tokens[pos];
      v.output_token_ids = s.out;
      if (pos < t.top.size()) {
        for (size_t j = 0; j < t.top[pos].size(); ++j) {
          tops[i].push_back(TokenLogprob{static_cast<int32_t>(j), t.top[pos][j]});
        }
        v.top_logprobs = tops[i];
        v.logprob = t.top[pos].empty() ? 0.0f : t.top[pos][0];
      }
      if (s.out.size() == t.tokens.size()) v.finish_reason = t.end;
      views.push_back(v);
    }
    return views;
  }

  bool StepOnce() {
    policy_.OnStep(*this);
    std::vector<std::vector<TokenLogprob>> tops;
    std::vector<TokenView> views = Sample(tops);
    std::vector<SequenceEnd> ended = std::move(pending_);
    pending_.clear();
    if (!views.empty()) policy_.OnTokens(views, *this);
    for (const SequenceEnd& e : pending_) ended.push_back(e);  // ctx commands in OnTokens
    pending_.clear();
    for (const TokenView& v : views) ApplyDecision(v, ended);
    if (!ended.empty()) policy_.OnFinished(ended, *this);
    for (const State& s : states_) {
      if (s.reason == FinishReason::kNone) return false;
    }
    std::vector<SequenceResult> results;
    for (size_t i = 0; i < traces_.size(); ++i) {
      results.push_back(SequenceResult{Id(i), states_[i].out, text(Id(i)), states_[i].reason});
    }
    result_ = policy_.Finalize(results);
    return true;
  }

  void ApplyDecision(const TokenView& v, std::vector<SequenceEnd>& ended) {
    State& s = *Find(v.seq_id);
    if (v.finish_reason != FinishReason::kNone) {
      if (s.reason != FinishReason::kNone) return;  // a ctx command ended it already
      s.reason = v.finish_reason;
      s.end_step = step_;
      ended.push_back(SequenceEnd{v.seq_id, v.finish_reason});
      return;
    }
    if (s.reason != FinishReason::kNone) return;
    if (v.decision == TokenDecision::kPause) (void)SetPaused(v.seq_id, true);
    const FinishReason reason = v.decision == TokenDecision::kStop    ? FinishReason::kStop
                                : v.decision == TokenDecision::kAbort ? FinishReason::kAbort
                                                                      : FinishReason::kNone;
    if (reason == FinishReason::kNone) return;
    (void)End(v.seq_id, reason);
    ended.push_back(pending_.back());
    pending_.pop_back();
  }

  DecodingPolicy& policy_;
  std::vector<ScriptedTrace> traces_;
  std::unique_ptr<SequenceGroup> group_;
  std::vector<State> states_;
  std::vector<SequenceEnd> pending_;  // ends caused by ctx commands
  int64_t step_ = 0;
  std::optional<PolicyResult> result_;
};

// Forwards every hook to `inner` and records the views it was shown.
class RecordingPolicy : public DecodingPolicy {
 public:
  explicit RecordingPolicy(std::shared_ptr<DecodingPolicy> inner) : inner_(std::move(inner)) {}

  struct Seen {
    std::vector<int32_t> tokens;
    std::vector<std::vector<float>> top;  // top logprobs per token
    std::vector<TokenDecision> decisions;
  };
  std::map<int64_t, Seen> seen;  // by seq id
  std::map<int64_t, std::vector<int32_t>> final_tokens;
  std::map<int64_t, FinishReason> final_reasons;
  PolicyResult result;

  PolicySpec Spec() const override { return inner_->Spec(); }
  void OnScores(std::span<const ScoreResult> scores, PolicyContext& ctx) override {
    inner_->OnScores(scores, ctx);
  }
  void OnStep(PolicyContext& ctx) override { inner_->OnStep(ctx); }
  void OnLogits(std::span<LogitsView> seqs, PolicyContext& ctx) override {
    inner_->OnLogits(seqs, ctx);
  }
  void OnTokens(std::span<TokenView> seqs, PolicyContext& ctx) override {
    inner_->OnTokens(seqs, ctx);
    for (const TokenView& v : seqs) {
      Seen& s = seen[v.seq_id];
      s.tokens.push_back(v.token);
      std::vector<float> top;
      for (const TokenLogprob& t : v.top_logprobs) top.push_back(t.logprob);
      s.top.push_back(std::move(top));
      s.decisions.push_back(v.decision);
    }
  }
  void OnFinished(std::span<const SequenceEnd> ended, PolicyContext& ctx) override {
    inner_->OnFinished(ended, ctx);
  }
  PolicyResult Finalize(std::span<const SequenceResult> seqs) override {
    result = inner_->Finalize(seqs);
    for (const SequenceResult& r : seqs) {
      final_tokens[r.seq_id].assign(r.output_token_ids.begin(), r.output_token_ids.end());
      final_reasons[r.seq_id] = r.finish_reason;
    }
    return result;
  }

 private:
  std::shared_ptr<DecodingPolicy> inner_;
};

// A report figure by name; nullopt when absent.
inline std::optional<double> Figure(const PolicyResult& result, const std::string& name) {
  for (const auto& [key, value] : result.report) {
    if (key == name) return value;
  }
  return std::nullopt;
}

}  // namespace alignserve::testing

#endif  // ALIGNSERVE_TESTS_ALIGNMENT_FAKE_POLICY_ENGINE_H_
