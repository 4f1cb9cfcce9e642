// LlmEngine's decoding-policy phase (engine/decoding_policy.h): the glue
// between one engine step and the hooks of the live policy requests. Kept
// apart from llm_engine.cc so that the plain sampling path reads on its
// own; every function here runs only while a policy request is live.
#include <algorithm>
#include <optional>
#include <span>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/llm_engine.h"
#include "engine/logprobs.h"
#include "kernels/status_macros.h"

namespace alignserve {
namespace {

// The policy of an internal scoring request (the Score hook): its one
// sample reads the row after the scoring prompt and keeps the
// log-probabilities (or raw logits) of the requested ids; the token itself
// is forced (no draw) and max_tokens 1 ends the request in that same step.
class ScoringPolicy final : public DecodingPolicy {
 public:
  ScoringPolicy(int64_t score_id, std::vector<int32_t> token_ids, ScoreRequest::Output output)
      : token_ids_(std::move(token_ids)), output_(output) {
    result_.score_id = score_id;
    result_.status = absl::AbortedError(
        absl::StrCat("scoring request ", score_id, " ended before its forward pass"));
  }

  PolicySpec Spec() const override {
    PolicySpec s;
    s.wants_logits = true;
    return s;
  }

  void OnLogits(std::span<LogitsView> seqs, PolicyContext& ctx) override {
    if (seqs.empty()) return;
    LogitsView& view = seqs.front();
    // As ComputePositionLogprobs: float logit minus the double normaliser.
    const double log_norm =
        output_ == ScoreRequest::Output::kLogprobs ? LogSumExp(view.logits) : 0.0;
    result_.values.clear();
    for (const int32_t id : token_ids_) {
      result_.values.push_back(static_cast<float>(view.logits[id] - log_norm));
    }
    result_.status = absl::OkStatus();
    result_.step = ctx.step();
    view.force_token = token_ids_.front();
  }

  ScoreResult TakeResult() { return std::move(result_); }

 private:
  const std::vector<int32_t> token_ids_;
  const ScoreRequest::Output output_;
  ScoreResult result_;
};

}  // namespace

// The engine as one policy sees it. Commands act at once on the scheduler;
// `in_flight` (OnLogits) refuses them, as the scheduler would.
class LlmEngine::EnginePolicyContext final : public PolicyContext {
 public:
  EnginePolicyContext(LlmEngine& engine, PolicyEntry& entry, bool in_flight)
      : engine_(engine), entry_(entry), in_flight_(in_flight) {}

  int64_t request_id() const override { return entry_.group->request_id(); }
  int64_t step() const override { return engine_.num_steps_; }
  double free_block_fraction() const override { return engine_.scheduler_->FreeBlockFraction(); }

  const Sequence* FindSequence(int64_t seq_id) const override {
    const Sequence* seq = engine_.scheduler_->FindSequence(seq_id);
    return seq != nullptr && seq->request_id() == request_id() ? seq : nullptr;
  }

  std::string_view text(int64_t seq_id) const override {
    const auto it = engine_.seqs_.find(seq_id);
    if (it == engine_.seqs_.end() || it->second.entry != &entry_) return {};
    return it->second.policy->raw_text;
  }
  std::string_view completion(int64_t seq_id) const override {
    const auto it = engine_.seqs_.find(seq_id);
    if (it == engine_.seqs_.end() || it->second.entry != &entry_) return {};
    return it->second.policy->text;
  }
  std::span<const int32_t> prompt_token_ids() const override {
    const Sequence& root = *entry_.group->sequences().front();
    return std::span<const int32_t>(root.token_ids().data(), root.num_prompt_tokens());
  }
  std::span<const int32_t> output_token_ids(int64_t seq_id) const override {
    for (const auto& seq : entry_.group->sequences()) {
      if (seq->seq_id() == seq_id) return seq->output_token_ids();
    }
    return {};
  }
  uint64_t seed() const override { return entry_.seed; }

  absl::StatusOr<int64_t> Score(ScoreRequest request) override {
    const LlmEngine* target = request.scorer == 0 ? &engine_ : engine_.scorer(request.scorer);
    if (target == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("no scorer ", request.scorer,
                                                     ": this engine has ", engine_.num_scorers(),
                                                     " (0 is the served model itself)"));
    }
    RETURN_IF_ERROR(target->ValidateScore(request));
    const int64_t score_id = engine_.next_score_id_--;
    entry_.score_queue.emplace_back(score_id, std::move(request));
    return score_id;
  }

  absl::StatusOr<std::vector<int64_t>> Fork(int64_t seq_id, int count) override {
    RETURN_IF_ERROR(Check(seq_id));
    return engine_.ForkPolicySequence(entry_, seq_id, count);
  }
  absl::Status Stop(int64_t seq_id) override {
    RETURN_IF_ERROR(Check(seq_id));
    return engine_.FinishPolicySequence(entry_, seq_id, FinishReason::kStop);
  }
  absl::Status Abort(int64_t seq_id) override {
    RETURN_IF_ERROR(Check(seq_id));
    return engine_.FinishPolicySequence(entry_, seq_id, FinishReason::kAbort);
  }
  absl::Status Pause(int64_t seq_id) override {
    RETURN_IF_ERROR(Check(seq_id));
    return engine_.scheduler_->Pause(seq_id);
  }
  absl::Status Resume(int64_t seq_id) override {
    RETURN_IF_ERROR(Check(seq_id));
    return engine_.scheduler_->Resume(seq_id);
  }

 private:
  absl::Status Check(int64_t seq_id) const {
    if (in_flight_) {
      return absl::FailedPreconditionError(
          "policy commands are refused in OnLogits (the step is in flight); use OnTokens or "
          "OnStep");
    }
    if (FindSequence(seq_id) == nullptr) {
      return absl::NotFoundError(
          absl::StrCat("no unfinished sequence ", seq_id, " in request ", request_id()));
    }
    return absl::OkStatus();
  }

  LlmEngine& engine_;
  PolicyEntry& entry_;
  const bool in_flight_;
};

absl::Status LlmEngine::ValidateScore(const ScoreRequest& request) const {
  const int32_t vocab = model_.config().vocab_size;
  const int32_t width = model_.config().logits_size();
  const int32_t max_len = scheduler_->config().max_model_len;
  if (request.prompt_token_ids.empty()) {
    return absl::InvalidArgumentError("a scoring request needs a non-empty prompt");
  }
  if (request.token_ids.empty() ||
      request.token_ids.size() > static_cast<size_t>(ScoreRequest::kMaxTokenIds)) {
    return absl::InvalidArgumentError(absl::StrCat("a scoring request asks for 1 to ",
                                                   ScoreRequest::kMaxTokenIds, " token ids, got ",
                                                   request.token_ids.size()));
  }
  if (request.prompt_token_ids.size() + 1 > static_cast<size_t>(max_len)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "scoring prompt of ", request.prompt_token_ids.size(),
        " tokens does not fit the context (max_model_len ", max_len, ", one token to sample)"));
  }
  for (const int32_t t : request.prompt_token_ids) {
    if (t < 0 || t >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("scoring prompt token id ", t, " outside the vocabulary [0, ", vocab, ")"));
    }
  }
  for (const int32_t t : request.token_ids) {
    if (t < 0 || t >= width) {
      return absl::InvalidArgumentError(absl::StrCat("scoring request asks for row index ", t,
                                                     " outside the logits row [0, ", width, ")"));
    }
  }
  return absl::OkStatus();
}

void LlmEngine::AddPolicy(int64_t request_id, int64_t seq_id,
                          std::shared_ptr<DecodingPolicy> policy, const PolicySpec& spec,
                          uint64_t seed) {
  PolicyEntry& entry = policies_[request_id];
  entry.policy = std::move(policy);
  entry.spec = spec;
  entry.group = &scheduler_->FindSequence(seq_id)->group();
  entry.seed = seed;
}

bool LlmEngine::PolicyWantsHidden(const StepPlan& plan) {
  for (const ScheduledSequence& s : plan.seqs) {
    if (!s.sample) continue;
    const auto it = seqs_.find(s.seq_id);
    if (it != seqs_.end() && it->second.entry != nullptr && it->second.entry->spec.wants_hidden) {
      return true;
    }
  }
  return false;
}

void LlmEngine::RunStepHooks() {
  DeliverScores();
  for (auto& [request_id, entry] : policies_) {
    if (entry.group->is_finished()) continue;  // awaiting Finalize
    EnginePolicyContext ctx(*this, entry, /*in_flight=*/false);
    entry.policy->OnStep(ctx);
  }
  AddQueuedScores();
}

void LlmEngine::DeliverScores() {
  std::vector<ScoreResult> ready;
  for (auto& [request_id, entry] : policies_) {
    if (entry.scores_ready.empty()) continue;
    ready.swap(entry.scores_ready);
    // Ids count down from -1: descending id is the order Score was called.
    std::sort(ready.begin(), ready.end(),
              [](const ScoreResult& a, const ScoreResult& b) { return a.score_id > b.score_id; });
    EnginePolicyContext ctx(*this, entry, /*in_flight=*/false);
    entry.policy->OnScores(ready, ctx);
    ready.clear();
  }
}

// Adding a request inserts into policies_, so the queues are emptied first;
// the requests are added in the order Score was called.
void LlmEngine::AddQueuedScores() {
  struct Queued {
    int64_t owner;
    int64_t score_id;
    ScoreRequest request;
  };
  std::vector<Queued> queued;
  for (auto& [request_id, entry] : policies_) {
    for (auto& [score_id, request] : entry.score_queue) {
      queued.push_back(Queued{request_id, score_id, std::move(request)});
    }
    entry.score_queue.clear();
  }
  std::sort(queued.begin(), queued.end(),
            [](const Queued& a, const Queued& b) { return a.score_id > b.score_id; });
  for (Queued& q : queued) AddScoreRequest(q.owner, q.score_id, std::move(q.request));
}

void LlmEngine::AddScoreRequest(int64_t owner, int64_t score_id, ScoreRequest request) {
  // policies_ is a node map: the owner's entry stays put while AddRequest
  // inserts the scoring request's own.
  PolicyEntry& owner_entry = policies_.at(owner);
  const RequestParams& owner_params = owner_entry.group->params();
  const int k = request.scorer;
  const int64_t extends = request.extends_seq_id;
  const absl::Status added =
      k == 0 ? AddScoringRequest(score_id, std::move(request), owner_params.priority,
                                 owner_params.cache_salt, owner)
             : scorers_[k - 1]->SubmitScore(score_id, std::move(request), owner_params.priority,
                                            owner_params.cache_salt);
  if (!added.ok()) {
    owner_entry.scores_ready.push_back(ScoreResult{score_id, added, {}, -1});
    return;
  }
  owner_entry.scores_running.insert(score_id);
  if (k != 0) remote_scores_[score_id] = {owner, k};
  if (k == 0 && extends >= 0) {
    for (const auto& source : owner_entry.group->sequences()) {
      if (source->seq_id() != extends) continue;
      scheduler_->ShareComputedKv(*source,
                                  policies_.at(score_id).group->sequences().front()->seq_id());
    }
  }
}

absl::Status LlmEngine::AddScoringRequest(int64_t score_id, ScoreRequest request, int priority,
                                          const std::string& cache_salt, int64_t owner) {
  RequestParams params;
  params.priority = priority;
  params.cache_salt = cache_salt;
  params.sampling.temperature = 0.0f;
  params.sampling.max_tokens = 1;
  params.sampling.ignore_eos = true;
  params.sampling.seed = 0;  // seeded: takes no engine seed from later requests
  params.policy =
      std::make_shared<ScoringPolicy>(score_id, std::move(request.token_ids), request.output);
  RETURN_IF_ERROR(AddRequest(score_id, std::move(request.prompt_token_ids), std::move(params)));
  policies_.at(score_id).score_owner = owner;
  return absl::OkStatus();
}

void LlmEngine::HarvestScore(PolicyEntry& scorer) {
  if (*scorer.score_owner == kRemoteOwner) {
    remote_results_.push_back(static_cast<ScoringPolicy&>(*scorer.policy).TakeResult());
    return;
  }
  const auto owner = policies_.find(*scorer.score_owner);
  if (owner == policies_.end()) return;  // the owner is gone
  ScoreResult result = static_cast<ScoringPolicy&>(*scorer.policy).TakeResult();
  if (owner->second.scores_running.erase(result.score_id) == 0) return;  // delivered already
  owner->second.scores_ready.push_back(std::move(result));
}

int LlmEngine::AttachScorer(std::unique_ptr<LlmEngine> scorer) {
  scorers_.push_back(std::move(scorer));
  return num_scorers();
}

absl::Status LlmEngine::SubmitScore(int64_t ticket, ScoreRequest request, int priority,
                                    const std::string& cache_salt) {
  if (ticket >= 0) return absl::InvalidArgumentError("a scoring ticket is a negative id");
  RETURN_IF_ERROR(ValidateScore(request));
  request.scorer = 0;
  return AddScoringRequest(ticket, std::move(request), priority, cache_salt, kRemoteOwner);
}

absl::Status LlmEngine::AbortScore(int64_t ticket) {
  const auto it = policies_.find(ticket);
  if (it == policies_.end() || it->second.score_owner != kRemoteOwner) {
    return absl::NotFoundError(absl::StrCat("no scoring request ", ticket));
  }
  return Abort(ticket);
}

void LlmEngine::StepScorers() {
  for (const auto& scorer : scorers_) {
    // A failed forward pass aborts the scorer's requests of that step; each
    // then reports its failure as a result, so the error needs no routing.
    if (scorer->HasUnfinished()) (void)scorer->Step();
    for (ScoreResult& result : scorer->TakeScoreResults()) {
      const auto route = remote_scores_.find(result.score_id);
      if (route == remote_scores_.end()) continue;  // its owner dropped it
      const auto owner = policies_.find(route->second.first);
      remote_scores_.erase(route);
      if (owner == policies_.end() || owner->second.scores_running.erase(result.score_id) == 0) {
        continue;
      }
      owner->second.scores_ready.push_back(std::move(result));
    }
  }
}

void LlmEngine::ForgetPolicy(int64_t request_id) {
  const auto it = policies_.find(request_id);
  if (it == policies_.end()) return;
  if (it->second.score_owner.has_value()) {
    HarvestScore(it->second);  // a failure, if it ended without a result
    policies_.erase(it);
    return;
  }
  const absl::flat_hash_set<int64_t> running = std::move(it->second.scores_running);
  policies_.erase(it);
  for (const int64_t score_id : running) {
    const auto remote = remote_scores_.find(score_id);
    if (remote != remote_scores_.end()) {
      (void)scorers_[remote->second.second - 1]->AbortScore(score_id);
      remote_scores_.erase(remote);
      continue;
    }
    // NotFound: it finished this step and waits in policy_finished_, where
    // EndPolicyStep forgets it.
    auto aborted = scheduler_->Abort(score_id);
    if (aborted.ok()) ForgetGroup(**aborted);
  }
}

bool LlmEngine::AbortAwaitingPolicy(int64_t request_id) {
  const auto it =
      std::find_if(policy_finished_.begin(), policy_finished_.end(),
                   [request_id](const auto& group) { return group->request_id() == request_id; });
  if (it == policy_finished_.end()) return false;
  const std::unique_ptr<SequenceGroup> group = std::move(*it);
  policy_finished_.erase(it);
  ForgetGroup(*group);
  return true;
}

// Rows follow the plan as in SampleAndCheck; only policies that asked for
// logits see them, and only rows already on the host (PlanLogitsRows).
void LlmEngine::RunLogitsHooks(const StepPlan& plan) {
  const int vocab = model_.config().logits_size();
  active_entries_.clear();
  int next_row = 0;
  for (const ScheduledSequence& s : plan.seqs) {
    next_row += s.all_logits ? s.num_tokens() : (s.sample ? 1 : 0);
    if (!s.sample) continue;
    const int row = next_row - 1;
    const auto it = seqs_.find(s.seq_id);
    if (it == seqs_.end() || it->second.entry == nullptr) continue;
    SeqState& state = it->second;
    const Sequence* seq = scheduler_->FindSequence(s.seq_id);
    if (seq == nullptr || !state.entry->spec.wants_logits ||
        state.deferred_finish != FinishReason::kNone || !forward_out_.has_logits[row]) {
      continue;
    }
    PolicyEntry& entry = *state.entry;
    if (entry.logits_views.empty()) active_entries_.push_back(&entry);
    LogitsView view;
    view.seq_id = s.seq_id;
    view.prompt_token_ids =
        std::span<const int32_t>(seq->token_ids().data(), seq->num_prompt_tokens());
    view.output_token_ids = seq->output_token_ids();
    view.logits = std::span<float>(forward_out_.logits.data() + static_cast<size_t>(row) * vocab,
                                   static_cast<size_t>(vocab));
    if (state.fork_pending) {
      std::vector<int32_t>& expand = state.policy->expand_tokens;
      expand.assign(static_cast<size_t>(ExpandCount(state, *seq) - 1), -1);
      view.expand_tokens = std::span<int32_t>(expand);
    }
    entry.logits_views.push_back(view);
  }
  for (PolicyEntry* entry : active_entries_) {
    EnginePolicyContext ctx(*this, *entry, /*in_flight=*/true);
    entry->policy->OnLogits(std::span<LogitsView>(entry->logits_views), ctx);
    for (const LogitsView& view : entry->logits_views) {
      // An id outside the row is ignored: the token is sampled.
      PolicySeqState& ps = *seqs_.at(view.seq_id).policy;
      if (view.force_token >= 0 && view.force_token < vocab) ps.force_token = view.force_token;
      for (int32_t& t : ps.expand_tokens) {
        if (t >= vocab) t = -1;
      }
    }
    entry->logits_views.clear();
  }
}

void LlmEngine::EmitPolicyToken(SeqState& state, int32_t token, int row, const SampleResult* drawn,
                                FinishReason& decision) {
  PolicySeqState& ps = *state.policy;
  const StopDecision d = Advance(state, token, &ps.delta);
  decision = d.reason;
  ps.text += d.text;
  ps.raw_text += ps.delta;
  ps.row = row;
  ps.force_token = -1;
  const bool has_row = forward_out_.has_logits[row] != 0;
  const std::span<const float> logits =
      has_row ? ModelRunner::Row(forward_out_, row, model_.config().logits_size())
              : std::span<const float>();
  const std::optional<int>& asked = state.entry->group->params().sampling.logprobs;
  if (asked.has_value()) {
    if (drawn != nullptr) {
      ps.logprobs.push_back(drawn->logprobs);
    } else if (has_row) {  // a forced token: the sampler drew nothing
      ps.logprobs.emplace_back();
      ComputePositionLogprobs(logits, token, *asked, &ps.logprobs.back());
    }
  }
  if (state.entry->spec.top_logprobs >= 0 && has_row) {
    ComputePositionLogprobs(logits, token, state.entry->spec.top_logprobs, &ps.hook_logprobs);
  }
}

// Expand children exist once Update ran: bind their states, and close at
// once (freeing their blocks this step) those the stop checker finished at
// their first token, instead of the plain path's close at the next step.
void LlmEngine::BindPolicyForks(ForkRecord& fork, StepRecord& record) {
  const auto& seqs = fork.group->sequences();
  const int64_t parent = seqs[0]->seq_id();
  for (size_t i = 0; i < fork.children.size() && i + 1 < seqs.size(); ++i) {
    const Sequence* child = seqs[i + 1].get();
    SeqState& state = fork.children[i];
    state.policy->parent = parent;
    if (state.deferred_finish != FinishReason::kNone && !child->is_finished()) {
      record.policy_closes.emplace_back(child->seq_id(), state.deferred_finish);
    }
    state.deferred_finish = FinishReason::kNone;
    record.policy_sampled.push_back(child);
    seqs_.emplace(child->seq_id(), std::move(state));
  }
}

void LlmEngine::RunTokenHooks(StepRecord& record) {
  for (const auto& [seq_id, reason] : record.policy_closes) {
    auto done = scheduler_->FinishSequence(seq_id, reason);
    if (done.ok() && *done != nullptr) policy_finished_.push_back(std::move(*done));
  }
  active_entries_.clear();
  for (const Sequence* seq : record.policy_sampled) {
    SeqState& state = seqs_.at(seq->seq_id());
    PolicyEntry& entry = *state.entry;
    if (entry.token_views.empty()) active_entries_.push_back(&entry);
    entry.token_views.push_back(MakeTokenView(*seq, state));
  }
  // Views point into Sequences and heap-held PolicySeqStates, which stay
  // put while the hook forks (seqs_ may rehash) or finishes sequences.
  for (PolicyEntry* entry : active_entries_) {
    EnginePolicyContext ctx(*this, *entry, /*in_flight=*/false);
    entry->policy->OnTokens(std::span<TokenView>(entry->token_views), ctx);
    for (const TokenView& view : entry->token_views) ApplyDecision(*entry, view);
    entry->token_views.clear();
  }
}

TokenView LlmEngine::MakeTokenView(const Sequence& seq, SeqState& state) {
  PolicySeqState& ps = *state.policy;
  const PolicySpec& spec = state.entry->spec;
  TokenView view;
  view.seq_id = seq.seq_id();
  view.parent_seq_id = ps.parent;
  ps.parent = -1;
  view.output_token_ids = seq.output_token_ids();
  view.token = view.output_token_ids.back();
  view.text_delta = ps.delta;
  if (spec.top_logprobs >= 0) {
    view.logprob = ps.hook_logprobs.logprob;
    view.top_logprobs = ps.hook_logprobs.top;
  }
  const size_t hidden_size = static_cast<size_t>(model_.config().hidden_size);
  const size_t row = static_cast<size_t>(ps.row);
  if (spec.wants_hidden && ps.row >= 0 && forward_out_.hidden.size() >= (row + 1) * hidden_size) {
    view.hidden =
        std::span<const float>(forward_out_.hidden.data() + row * hidden_size, hidden_size);
  }
  const int32_t n = seq.num_output_tokens();
  view.boundary = (spec.boundary_every > 0 && n % spec.boundary_every == 0) ||
                  (!spec.boundary_delimiter.empty() && !ps.delta.empty() &&
                   ps.raw_text.ends_with(spec.boundary_delimiter));
  view.finish_reason = seq.finish_reason();
  return view;
}

void LlmEngine::ApplyDecision(PolicyEntry& entry, const TokenView& view) {
  if (view.finish_reason != FinishReason::kNone) {
    entry.ended.push_back(SequenceEnd{view.seq_id, view.finish_reason});
    return;
  }
  // A sequence the hook already finished through ctx is NotFound here.
  switch (view.decision) {
    case TokenDecision::kContinue:
      return;
    case TokenDecision::kStop:
      (void)FinishPolicySequence(entry, view.seq_id, FinishReason::kStop);
      return;
    case TokenDecision::kAbort:
      (void)FinishPolicySequence(entry, view.seq_id, FinishReason::kAbort);
      return;
    case TokenDecision::kPause:
      (void)scheduler_->Pause(view.seq_id);
      return;
  }
}

absl::Status LlmEngine::FinishPolicySequence(PolicyEntry& entry, int64_t seq_id,
                                             FinishReason reason) {
  const int32_t free_before = scheduler_->kv_cache().NumFreeBlocks();
  ASSIGN_OR_RETURN(std::unique_ptr<SequenceGroup> done, scheduler_->FinishSequence(seq_id, reason));
  if (reason == FinishReason::kAbort) {
    ++num_pruned_sequences_;
    pruned_blocks_freed_ += scheduler_->kv_cache().NumFreeBlocks() - free_before;
  }
  const auto it = seqs_.find(seq_id);
  if (reason == FinishReason::kStop && it != seqs_.end()) {
    // The completion keeps what the stop checker and detokenizer held back.
    SeqState& state = it->second;
    state.policy->text += state.stop->held_back_text();
    if (state.detok) state.policy->text += state.detok->Flush();
  }
  entry.ended.push_back(SequenceEnd{seq_id, reason});
  if (done != nullptr) policy_finished_.push_back(std::move(done));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int64_t>> LlmEngine::ForkPolicySequence(PolicyEntry& entry,
                                                                   int64_t seq_id, int count) {
  if (count < 1) return absl::InvalidArgumentError("Fork count must be >= 1");
  const Sequence* parent = scheduler_->FindSequence(seq_id);
  if (parent == nullptr || parent->num_output_tokens() == 0 || !seqs_.contains(seq_id)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "sequence ", seq_id,
        " has no output token yet: expand at admission with PolicySpec::num_sequences"));
  }
  const size_t total = entry.group->sequences().size() + static_cast<size_t>(count);
  if (total > static_cast<size_t>(PolicySpec::kMaxSequences)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("a policy group holds at most ", PolicySpec::kMaxSequences, " sequences"));
  }
  std::vector<int64_t> children;
  for (int k = 0; k < count; ++k) {
    ASSIGN_OR_RETURN(const int64_t child_id, scheduler_->Fork(seq_id));
    SeqState child = CloneState(seqs_.at(seq_id));
    child.index = static_cast<int>(entry.group->sequences().size()) - 1;  // creation order
    child.seed = entry.seed + static_cast<uint64_t>(child.index);
    seqs_.emplace(child_id, std::move(child));
    children.push_back(child_id);
  }
  return children;
}

LlmEngine::SeqState LlmEngine::CloneState(const SeqState& parent) const {
  SeqState s;
  s.request_id = parent.request_id;
  s.index = parent.index;
  s.seed = parent.seed;
  s.stop = std::make_unique<StopChecker>(*parent.stop);
  if (parent.detok) s.detok = std::make_unique<IncrementalDetokenizer>(*parent.detok);
  s.prompt_logprobs_sent = true;  // the request's prompt logprobs live in its root
  s.entry = parent.entry;
  s.policy = std::make_unique<PolicySeqState>(*parent.policy);
  s.policy->parent = -1;
  s.policy->force_token = -1;
  return s;
}

void LlmEngine::EndPolicyStep(std::vector<RequestOutput>& outputs) {
  std::vector<SequenceEnd> ended;
  for (auto& [request_id, entry] : policies_) {
    if (entry.ended.empty()) continue;
    // Ends the hook itself causes are reported at the next step (or not at
    // all if the group finalizes now): it knows of them already.
    ended.swap(entry.ended);
    EnginePolicyContext ctx(*this, entry, /*in_flight=*/false);
    entry.policy->OnFinished(ended, ctx);
    ended.clear();
  }
  // Scores queued just now are added while the finished sequences still
  // hold their blocks (ScoreRequest::extends_seq_id), then those go.
  AddQueuedScores();
  scheduler_->ReleaseRetained();
  std::sort(policy_finished_.begin(), policy_finished_.end(),
            [](const auto& a, const auto& b) { return a->request_id() < b->request_id(); });
  // Scoring requests come first (negative ids): their results reach their
  // owners before the owners are considered. A group with scores
  // outstanding waits; OnScores delivers them at the next step.
  std::vector<std::unique_ptr<SequenceGroup>> waiting;
  for (auto& group : policy_finished_) {
    const auto entry = policies_.find(group->request_id());
    if (entry != policies_.end()) {
      if (entry->second.score_owner.has_value()) {
        HarvestScore(entry->second);
      } else if (entry->second.AwaitsScores()) {
        waiting.push_back(std::move(group));
        continue;
      } else {
        FinalizeGroup(*group, outputs);
      }
    }
    ForgetGroup(*group);
  }
  policy_finished_.swap(waiting);
}

void LlmEngine::FinalizeGroup(const SequenceGroup& group, std::vector<RequestOutput>& outputs) {
  PolicyEntry& entry = policies_.at(group.request_id());
  std::vector<SequenceResult> results;
  for (const auto& seq : group.sequences()) {
    const auto it = seqs_.find(seq->seq_id());
    const std::string_view text =
        it != seqs_.end() ? std::string_view(it->second.policy->text) : std::string_view();
    results.push_back(
        SequenceResult{seq->seq_id(), seq->output_token_ids(), text, seq->finish_reason()});
  }
  PolicyResult result = entry.policy->Finalize(results);
  const size_t first = outputs.size();
  for (const int64_t id : result.choices) {
    const auto chosen = std::find_if(results.begin(), results.end(),
                                     [id](const SequenceResult& r) { return r.seq_id == id; });
    if (chosen == results.end()) continue;
    RequestOutput ro;
    ro.request_id = group.request_id();
    ro.index = static_cast<int>(outputs.size() - first);
    ro.new_token_ids.assign(chosen->output_token_ids.begin(), chosen->output_token_ids.end());
    ro.text = std::string(chosen->text);
    const auto state = seqs_.find(id);
    if (state != seqs_.end()) ro.logprobs = state->second.policy->logprobs;
    ro.finish_reason = chosen->finish_reason;
    outputs.push_back(std::move(ro));
  }
  if (outputs.size() == first) {
    RequestOutput ro;
    ro.request_id = group.request_id();
    ro.finish_reason = FinishReason::kAbort;
    outputs.push_back(std::move(ro));
  }
  const auto root = seqs_.find(group.sequences()[0]->seq_id());
  if (root != seqs_.end()) outputs[first].prompt_logprobs = std::move(root->second.prompt_logprobs);
  outputs.back().finished = true;
  outputs.back().policy_report = std::move(result.report);
}

}  // namespace alignserve
