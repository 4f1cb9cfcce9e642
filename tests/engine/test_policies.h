// Small DecodingPolicies for the engine's policy tests, one hook each:
// they record what they saw so that a test can compare it with an oracle.
// Thread-safety: engine thread only, as every policy.
#ifndef ALIGNSERVE_TESTS_ENGINE_TEST_POLICIES_H_
#define ALIGNSERVE_TESTS_ENGINE_TEST_POLICIES_H_

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "engine/decoding_policy.h"
#include "engine/sampler.h"

namespace alignserve::testing {

class NoopPolicy : public DecodingPolicy {};

// Asks for everything (logits, top-5 logprobs, hidden states, boundaries)
// and changes nothing; records what it saw.
class ObserverPolicy : public DecodingPolicy {
 public:
  PolicySpec Spec() const override {
    PolicySpec s;
    s.wants_logits = true;
    s.top_logprobs = 5;
    s.wants_hidden = true;
    s.boundary_every = 3;
    return s;
  }
  void OnLogits(std::span<LogitsView> seqs, PolicyContext& ctx) override {
    for (LogitsView& v : seqs) argmax.push_back(Argmax(v.logits));
    // The plan is in flight: commands are refused.
    fork_in_logits = ctx.Fork(seqs[0].seq_id, 1).status();
  }
  void OnTokens(std::span<TokenView> seqs, PolicyContext& ctx) override {
    for (const TokenView& v : seqs) {
      tokens.push_back(v.token);
      logprobs.push_back(v.logprob);
      top.emplace_back(v.top_logprobs.begin(), v.top_logprobs.end());
      hidden_sizes.push_back(static_cast<int>(v.hidden.size()));
      if (v.boundary) boundaries.push_back(static_cast<int>(v.output_token_ids.size()));
    }
  }
  std::vector<int32_t> argmax, tokens;
  std::vector<float> logprobs;
  std::vector<std::vector<TokenLogprob>> top;
  std::vector<int> hidden_sizes, boundaries;
  absl::Status fork_in_logits;
};

// Forces a fixed token sequence.
class ForcePolicy : public DecodingPolicy {
 public:
  explicit ForcePolicy(std::vector<int32_t> forced) : forced_(std::move(forced)) {}
  PolicySpec Spec() const override {
    PolicySpec s;
    s.wants_logits = true;
    return s;
  }
  void OnLogits(std::span<LogitsView> seqs, PolicyContext& ctx) override {
    for (LogitsView& v : seqs) v.force_token = forced_[v.output_token_ids.size()];
  }

 private:
  std::vector<int32_t> forced_;
};

// Expands to 3; at the first sample forces the root's token and expand
// child 1's, leaving child 2 to draw. Records the expand_tokens span sizes.
class ForceExpandPolicy : public DecodingPolicy {
 public:
  ForceExpandPolicy(int32_t root, int32_t child1) : root_(root), child1_(child1) {}
  PolicySpec Spec() const override {
    PolicySpec s;
    s.num_sequences = 3;
    s.wants_logits = true;
    return s;
  }
  void OnLogits(std::span<LogitsView> seqs, PolicyContext& ctx) override {
    for (LogitsView& v : seqs) {
      expand_sizes.push_back(static_cast<int>(v.expand_tokens.size()));
      if (v.expand_tokens.empty()) continue;
      v.force_token = root_;
      v.expand_tokens[0] = child1_;
    }
  }
  std::vector<int> expand_sizes;

 private:
  int32_t root_, child1_;
};

// Masks the greedy token at the first position only.
class MaskFirstPolicy : public DecodingPolicy {
 public:
  PolicySpec Spec() const override {
    PolicySpec s;
    s.wants_logits = true;
    return s;
  }
  void OnLogits(std::span<LogitsView> seqs, PolicyContext& ctx) override {
    for (LogitsView& v : seqs) {
      if (!v.output_token_ids.empty()) continue;
      masked = Argmax(v.logits);
      v.logits[masked] = -std::numeric_limits<float>::infinity();
    }
  }
  int32_t masked = -1;
};

// Stops every sequence at exactly k tokens.
class StopAfterPolicy : public DecodingPolicy {
 public:
  explicit StopAfterPolicy(size_t k) : k_(k) {}
  void OnTokens(std::span<TokenView> seqs, PolicyContext& ctx) override {
    for (TokenView& v : seqs) {
      if (v.output_token_ids.size() == k_) v.decision = TokenDecision::kStop;
    }
  }

 private:
  size_t k_;
};

// N sequences; at `at` tokens prunes all but the keep-th created.
class PrunePolicy : public DecodingPolicy {
 public:
  PrunePolicy(int n, size_t at, int keep) : n_(n), at_(at), keep_(keep) {}
  PolicySpec Spec() const override {
    PolicySpec s;
    s.num_sequences = n_;
    return s;
  }
  void OnTokens(std::span<TokenView> seqs, PolicyContext& ctx) override {
    for (const TokenView& v : seqs) {
      if (v.parent_seq_id >= 0 || ids.empty()) {
        if (std::find(ids.begin(), ids.end(), v.seq_id) == ids.end()) ids.push_back(v.seq_id);
      }
    }
    for (TokenView& v : seqs) {
      if (v.output_token_ids.size() != at_ || v.seq_id == ids[keep_]) continue;
      v.decision = TokenDecision::kAbort;
      pruned_at_step = ctx.step();
    }
  }
  void OnFinished(std::span<const SequenceEnd> ended, PolicyContext& ctx) override {
    for (const SequenceEnd& e : ended) ends.push_back(e);
  }
  std::vector<int64_t> ids;  // creation order
  int64_t pruned_at_step = -1;
  std::vector<SequenceEnd> ends;

 private:
  int n_;
  size_t at_;
  int keep_;
};

// One sequence; at `at` tokens forks it `count` ways.
class ForkPolicy : public DecodingPolicy {
 public:
  ForkPolicy(size_t at, int count) : at_(at), count_(count) {}
  void OnTokens(std::span<TokenView> seqs, PolicyContext& ctx) override {
    for (const TokenView& v : seqs) {
      if (v.output_token_ids.size() != at_ || !children.empty()) continue;
      auto forked = ctx.Fork(v.seq_id, count_);
      REQUIRE(forked.ok());
      children = *forked;
      forked_at_step = ctx.step();
      parent = v.seq_id;
    }
  }
  std::vector<int64_t> children;
  int64_t parent = -1;
  int64_t forked_at_step = -1;

 private:
  size_t at_;
  int count_;
};

// Records boundaries and the text deltas of one sequence.
class BoundaryPolicy : public DecodingPolicy {
 public:
  BoundaryPolicy(int32_t every, std::string delimiter) : every_(every), delim_(delimiter) {}
  PolicySpec Spec() const override {
    PolicySpec s;
    s.boundary_every = every_;
    s.boundary_delimiter = delim_;
    return s;
  }
  void OnTokens(std::span<TokenView> seqs, PolicyContext& ctx) override {
    for (const TokenView& v : seqs) {
      flags.push_back(v.boundary);
      tokens.push_back(v.token);
    }
  }
  std::vector<bool> flags;
  std::vector<int32_t> tokens;

 private:
  int32_t every_;
  std::string delim_;
};

// Pauses its sequence at `at` tokens for `steps` engine steps.
class PausePolicy : public DecodingPolicy {
 public:
  PausePolicy(size_t at, int64_t steps) : at_(at), steps_(steps) {}
  void OnStep(PolicyContext& ctx) override {
    if (paused_at_step < 0 || resumed_at_step >= 0) return;
    if (ctx.step() - paused_at_step >= steps_) {
      REQUIRE(ctx.Resume(seq_id).ok());
      resumed_at_step = ctx.step();
    }
  }
  void OnTokens(std::span<TokenView> seqs, PolicyContext& ctx) override {
    for (TokenView& v : seqs) {
      token_steps.push_back(ctx.step());
      if (v.output_token_ids.size() == at_) {
        v.decision = TokenDecision::kPause;
        paused_at_step = ctx.step();
        seq_id = v.seq_id;
      }
    }
  }
  int64_t seq_id = -1, paused_at_step = -1, resumed_at_step = -1;
  std::vector<int64_t> token_steps;

 private:
  size_t at_;
  int64_t steps_;
};

// Best-of-N with a simple reward: the number of output tokens below 500.
class BestOfNPolicy : public DecodingPolicy {
 public:
  explicit BestOfNPolicy(int n) : n_(n) {}
  PolicySpec Spec() const override {
    PolicySpec s;
    s.num_sequences = n_;
    return s;
  }
  static double Score(std::span<const int32_t> tokens) {
    return static_cast<double>(
        std::count_if(tokens.begin(), tokens.end(), [](int32_t t) { return t < 500; }));
  }
  PolicyResult Finalize(std::span<const SequenceResult> seqs) override {
    PolicyResult r;
    size_t best = 0;
    for (size_t i = 1; i < seqs.size(); ++i) {
      if (Score(seqs[i].output_token_ids) > Score(seqs[best].output_token_ids)) best = i;
    }
    r.choices.push_back(seqs[best].seq_id);
    r.report = {{"best_score", Score(seqs[best].output_token_ids)},
                {"num_sequences", static_cast<double>(seqs.size())}};
    return r;
  }

 private:
  int n_;
};

}  // namespace alignserve::testing

#endif  // ALIGNSERVE_TESTS_ENGINE_TEST_POLICIES_H_
