#include "engine/llm_engine.h"

#include <algorithm>
#include <span>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"

namespace alignserve {

absl::StatusOr<std::unique_ptr<LlmEngine>> LlmEngine::Create(Model& model, const ModelText& text,
                                                             const EngineConfig& config) {
  EngineConfig cfg = config;
  cfg.scheduler.max_model_len = std::min(cfg.scheduler.max_model_len, model.max_model_len());
  RETURN_IF_ERROR(cfg.scheduler.Validate());
  ASSIGN_OR_RETURN(std::unique_ptr<Scheduler> scheduler, Scheduler::Create(cfg.scheduler));
  ASSIGN_OR_RETURN(std::unique_ptr<KvCache> cache,
                   model.AllocateKvCache(cfg.scheduler.num_blocks, cfg.scheduler.block_size));
  return std::unique_ptr<LlmEngine>(
      new LlmEngine(model, text, cfg, std::move(scheduler), std::move(cache)));
}

absl::StatusOr<std::unique_ptr<LlmEngine>> LlmEngine::Create(std::unique_ptr<Backend> backend,
                                                             std::unique_ptr<LoadedModel> loaded,
                                                             const EngineConfig& config) {
  if (loaded == nullptr || loaded->model == nullptr) {
    return absl::InvalidArgumentError("LlmEngine::Create: no model");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<LlmEngine> engine, Create(*loaded->model, loaded->text, config));
  engine->owned_backend_ = std::move(backend);
  engine->owned_model_ = std::move(loaded);
  return engine;
}

LlmEngine::LlmEngine(Model& model, const ModelText& text, const EngineConfig& config,
                     std::unique_ptr<Scheduler> scheduler, std::unique_ptr<KvCache> cache)
    : model_(model),
      text_(text),
      config_(config),
      scheduler_(std::move(scheduler)),
      cache_(std::move(cache)),
      runner_(model, *cache_),
      sampler_(text.stop_token_ids),
      device_sampling_(config.device_sampling && model.SupportsDeviceSampling()),
      next_seed_(config.seed) {}

LlmEngine::~LlmEngine() = default;

absl::Status LlmEngine::AddRequest(int64_t request_id, std::vector<int32_t> prompt,
                                   const SamplingParams& params) {
  RequestParams request;
  request.sampling = params;
  return AddRequest(request_id, std::move(prompt), std::move(request));
}

absl::Status LlmEngine::AddRequest(int64_t request_id, std::vector<int32_t> prompt,
                                   RequestParams params) {
  const int vocab = model_.config().vocab_size;
  RETURN_IF_ERROR(params.sampling.Validate(vocab));
  std::shared_ptr<DecodingPolicy> policy = params.policy;
  PolicySpec spec;
  if (policy != nullptr) {
    if (params.sampling.n != 1) {
      return absl::InvalidArgumentError(
          "a request with a decoding policy takes n = 1: the policy decides how many sequences "
          "run and how many choices return");
    }
    spec = policy->Spec();
    RETURN_IF_ERROR(spec.Validate());
  }
  if (text_.tokenizer == nullptr && !params.sampling.stop.empty()) {
    return absl::InvalidArgumentError(
        "stop strings need a tokenizer; this engine runs on token ids only "
        "(the model was loaded without its tokenizer): use stop_token_ids");
  }
  for (const int32_t t : prompt) {
    if (t < 0 || t >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt token id ", t, " outside the vocabulary [0, ", vocab, ")"));
    }
  }
  // Resolve the seed now so that it follows arrival order, not scheduling.
  const bool seeded = params.sampling.seed.has_value();
  // A policy may fork up to kMaxSequences sequences, each with its own seed.
  const int num_choices = policy ? PolicySpec::kMaxSequences : params.sampling.n;
  const uint64_t seed = seeded ? *params.sampling.seed : next_seed_;
  ASSIGN_OR_RETURN(const int64_t seq_id,
                   scheduler_->AddRequest(request_id, std::move(prompt), std::move(params)));
  // An unseeded request reserves one counter seed per choice, so no two
  // choices of any requests share a seed.
  if (!seeded) next_seed_ += static_cast<uint64_t>(num_choices);
  request_seeds_[request_id] = seed;
  if (policy != nullptr) AddPolicy(request_id, seq_id, std::move(policy), spec, seed);
  return absl::OkStatus();
}

LlmEngine::SeqState LlmEngine::NewState(const Sequence& seq, int index, uint64_t seed) {
  const SamplingParams& p = seq.group().params().sampling;
  SeqState s;
  s.request_id = seq.request_id();
  s.index = index;
  s.seed = seed;
  // The stop checker counts outputs from its creation: a sequence gets its
  // state before its first sampled token, so the counts agree.
  s.stop = std::make_unique<StopChecker>(p, text_.stop_token_ids, seq.num_prompt_tokens(),
                                         scheduler_->config().max_sequence_len());
  if (text_.tokenizer != nullptr) {
    s.detok = std::make_unique<IncrementalDetokenizer>(*text_.tokenizer, p.skip_special_tokens);
  }
  if (!policies_.empty()) {
    const auto entry = policies_.find(seq.request_id());
    if (entry != policies_.end()) {
      s.entry = &entry->second;
      s.policy = std::make_unique<PolicySeqState>();
    }
  }
  return s;
}

int LlmEngine::ExpandCount(const SeqState& state, const Sequence& seq) {
  return state.entry != nullptr ? state.entry->spec.num_sequences : seq.group().params().sampling.n;
}

LlmEngine::SeqState& LlmEngine::StateFor(const Sequence& seq) {
  auto it = seqs_.find(seq.seq_id());
  if (it != seqs_.end()) return it->second;
  // First sample of a request's first sequence (fork children are
  // registered by FinishOutputs before they can be sampled).
  const auto seed = request_seeds_.find(seq.request_id());
  SeqState s = NewState(seq, 0, seed != request_seeds_.end() ? seed->second : config_.seed);
  s.fork_pending = ExpandCount(s, seq) > 1 && seq.group().sequences().size() == 1;
  return seqs_.emplace(seq.seq_id(), std::move(s)).first->second;
}

StopDecision LlmEngine::Advance(SeqState& state, int32_t token, std::string* raw_delta) {
  // Token-ids-only engines (no tokenizer) stream ids and no text.
  std::string delta = state.detok ? state.detok->Append(token) : std::string();
  if (raw_delta != nullptr) *raw_delta = delta;
  StopDecision d = state.stop->Append(token, delta);
  if (d.reason == FinishReason::kLength && state.detok) {
    // Finished without a stop string: release a cut UTF-8 tail too.
    d.text += state.detok->Flush();
  }
  return d;
}

RequestOutput LlmEngine::Emit(SeqState& state, int32_t token, FinishReason& decision) {
  StopDecision d = Advance(state, token, nullptr);
  decision = d.reason;
  RequestOutput ro;
  ro.request_id = state.request_id;
  ro.index = state.index;
  ro.new_token_ids.push_back(token);
  ro.text = std::move(d.text);
  if (!state.prompt_logprobs_sent && !state.prompt_logprobs.empty()) {
    ro.prompt_logprobs = std::move(state.prompt_logprobs);
    state.prompt_logprobs.clear();
    state.prompt_logprobs_sent = true;
  }
  return ro;
}

void LlmEngine::MarkPromptLogprobs(StepPlan& plan) {
  for (ScheduledSequence& s : plan.seqs) {
    const Sequence* seq = scheduler_->FindSequence(s.seq_id);
    if (seq == nullptr || !seq->group().params().sampling.prompt_logprobs) continue;
    // Positions p < num_prompt_tokens - 1 predict a prompt token; a
    // recomputed prefill (after preemption) has them already.
    const SeqState& state = StateFor(*seq);
    const int32_t wanted = seq->num_prompt_tokens() - 1;
    s.all_logits =
        s.start_pos < wanted && static_cast<int32_t>(state.prompt_logprobs.size()) < wanted;
  }
}

void LlmEngine::CollectPromptLogprobs(const ScheduledSequence& s, const ForwardOutput& out,
                                      int first_row) {
  const Sequence* seq = scheduler_->FindSequence(s.seq_id);
  if (seq == nullptr) return;
  SeqState& state = StateFor(*seq);
  const int k = *seq->group().params().sampling.prompt_logprobs;
  const int vocab = model_.config().logits_size();
  for (int i = 0; i < s.num_tokens(); ++i) {
    const int32_t p = s.start_pos + i;
    // Row i predicts the token at p + 1; only prompt tokens, each once.
    if (p + 1 >= seq->num_prompt_tokens()) break;
    if (p != static_cast<int32_t>(state.prompt_logprobs.size())) continue;
    PositionLogprobs lp;
    ComputePositionLogprobs(ModelRunner::Row(out, first_row + i, vocab), seq->token_ids()[p + 1], k,
                            &lp);
    state.prompt_logprobs.push_back(std::move(lp));
  }
}

void LlmEngine::PlanLogitsRows(const StepPlan& plan) {
  std::vector<uint8_t>& rows = scratch_.host_rows;
  std::vector<int>& device_first = scratch_.device_first;
  rows.clear();
  device_first.clear();
  scratch_.device_rows.clear();
  scratch_.device_adjustments.clear();
  for (const ScheduledSequence& s : plan.seqs) {
    if (s.all_logits) {
      rows.insert(rows.end(), static_cast<size_t>(s.num_tokens()), 1);
      device_first.insert(device_first.end(), static_cast<size_t>(s.num_tokens()), -1);
      continue;
    }
    if (!s.sample) continue;
    const Sequence* seq = scheduler_->FindSequence(s.seq_id);
    bool host = true;
    int first = -1;
    if (seq != nullptr) {
      SeqState& state = StateFor(*seq);
      const SamplingParams& params = seq->group().params().sampling;
      // A closed choice samples nothing; a fork step draws n tokens; a
      // policy request is sampled on the host (it may read the row, force
      // tokens or bias the draw).
      const bool closed = state.deferred_finish != FinishReason::kNone;
      const bool needs_row = state.entry != nullptr && state.entry->NeedsRow();
      const bool argmax = !state.fork_pending && !needs_row &&
                          BatchSampler::ArgmaxSuffices(
                              params, static_cast<int64_t>(seq->output_token_ids().size()));
      host = !closed && !argmax && (state.entry != nullptr || !device_sampling_);
      if (!closed && !argmax && !host) {
        // The device draws this row: a fork step's n draws (seeds seed + i)
        // share it.
        first = static_cast<int>(scratch_.device_rows.size());
        std::span<const int32_t> prompt(seq->token_ids().data(), seq->num_prompt_tokens());
        const PenaltyHistory* history = nullptr;
        if (params.has_penalties()) {
          state.penalty_history.Sync(prompt, seq->output_token_ids());
          history = &state.penalty_history;
        }
        const int draws = state.fork_pending ? ExpandCount(state, *seq) : 1;
        for (int i = 0; i < draws; ++i) {
          AppendDeviceSamplingRow(params, prompt, seq->output_token_ids(), sampler_.eos_token_ids(),
                                  model_.config().logits_size(),
                                  state.seed + static_cast<uint64_t>(i),
                                  static_cast<int32_t>(rows.size()), &scratch_.device_rows,
                                  &scratch_.device_adjustments, history);
        }
      }
    }
    rows.push_back(host ? 1 : 0);
    device_first.push_back(first);
  }
}

void LlmEngine::SampleAndCheck(const StepPlan& plan, const ForwardOutput& out, StepOutput& step_out,
                               std::vector<RequestOutput>& outputs, StepRecord& record) {
  const int vocab = model_.config().logits_size();
  // Scratch kept across steps (no allocation in a steady decode).
  std::vector<const Sequence*>& sampled = scratch_.sampled;
  std::vector<int>& sample_rows = scratch_.sample_rows;  // the logits row of each
  std::vector<SamplingRow>& rows = scratch_.rows;
  std::vector<SampleResult>& host_results = scratch_.host_results;
  std::vector<SampleResult>& results = scratch_.results;
  std::vector<int>& draw_source = scratch_.draw_source;
  sampled.clear();
  sample_rows.clear();
  rows.clear();
  draw_source.clear();
  host_results.clear();  // SampleBatch default-constructs each result, as for a new vector
  results.clear();
  step_out.outputs.reserve(plan.seqs.size());
  outputs.reserve(plan.seqs.size());
  record.output_seqs.reserve(plan.seqs.size());
  int next_row = 0;
  for (const ScheduledSequence& s : plan.seqs) {
    const int first_row = next_row;
    next_row += s.all_logits ? s.num_tokens() : (s.sample ? 1 : 0);
    if (s.all_logits) CollectPromptLogprobs(s, out, first_row);
    if (!s.sample) continue;
    const int row = next_row - 1;
    const Sequence* seq = scheduler_->FindSequence(s.seq_id);
    sampled.push_back(seq);
    sample_rows.push_back(row);
    if (seq == nullptr) continue;  // cannot happen in a synchronous step; be safe
    const SeqState& state = StateFor(*seq);
    if (state.deferred_finish != FinishReason::kNone) continue;  // closed, not sampled
    const int device_first = scratch_.device_first[row];
    if (device_first >= 0) {
      // Drawn on the device (PlanLogitsRows): one draw per choice.
      const int draws = state.fork_pending ? ExpandCount(state, *seq) : 1;
      for (int i = 0; i < draws; ++i) draw_source.push_back(device_first + i);
      continue;
    }
    if (!out.has_logits[row]) continue;  // greedy: the device's argmax is the token
    std::span<const int32_t> prompt(seq->token_ids().data(), seq->num_prompt_tokens());
    // A fork step draws one token per choice from the same logits row; a
    // token forced by a policy takes no draw of its own.
    const int draws = state.fork_pending ? ExpandCount(state, *seq) : 1;
    for (int i = Forced(state) ? 1 : 0; i < draws; ++i) {
      if (ExpandForced(state, i)) continue;
      draw_source.push_back(-1 - static_cast<int>(rows.size()));
      rows.push_back(SamplingRow{ModelRunner::Row(out, row, vocab), &seq->group().params().sampling,
                                 prompt, seq->output_token_ids(),
                                 state.seed + static_cast<uint64_t>(i)});
    }
  }
  sampler_.SampleBatch(rows, &host_results);
  // Every draw in plan order, as EmitForks and the loop below consume them.
  results.resize(draw_source.size());
  for (size_t d = 0; d < draw_source.size(); ++d) {
    const int source = draw_source[d];
    if (source < 0) {
      results[d] = std::move(host_results[static_cast<size_t>(-1 - source)]);
    } else {
      const DeviceSamplingRow& drawn = scratch_.device_rows[static_cast<size_t>(source)];
      ToSampleResult(out.sampled[static_cast<size_t>(source)], drawn.num_logprobs >= 0,
                     &results[d]);
    }
  }
  size_t r = 0;
  for (size_t i = 0; i < sampled.size(); ++i) {
    const Sequence* seq = sampled[i];
    const int row = sample_rows[i];
    if (seq == nullptr) continue;
    SeqState& state = seqs_.at(seq->seq_id());
    if (state.deferred_finish != FinishReason::kNone) {
      step_out.outputs.push_back(SequenceOutput{seq->seq_id(), 0, FinishReason::kAbort, {}});
      record.closed.push_back(seq);
      continue;
    }
    const bool forced = Forced(state);
    const bool drawn = out.has_logits[row] || scratch_.device_first[row] >= 0;
    const SampleResult* sampled_first = drawn && !forced ? &results[r++] : nullptr;
    const int32_t first = forced          ? state.policy->force_token
                          : sampled_first ? sampled_first->token
                                          : out.argmax[row];
    SequenceOutput so{seq->seq_id(), first, FinishReason::kNone, {}};
    if (state.entry != nullptr) {
      EmitPolicyToken(state, first, row, sampled_first, so.finish);
      record.policy_sampled.push_back(seq);
    } else {
      outputs.push_back(Emit(state, so.token_id, so.finish));
      if (sampled_first && seq->group().params().sampling.logprobs) {
        outputs.back().logprobs.push_back(sampled_first->logprobs);
      }
      record.output_seqs.push_back(seq);
    }
    if (state.fork_pending) {
      state.fork_pending = false;
      record.forks.push_back(EmitForks(*seq, state, row, results, r, so, outputs, record));
      if (state.policy != nullptr) state.policy->expand_tokens.clear();
    }
    step_out.outputs.push_back(std::move(so));
  }
}

LlmEngine::ForkRecord LlmEngine::EmitForks(const Sequence& seq, const SeqState& parent, int row,
                                           const std::vector<SampleResult>& results, size_t& r,
                                           SequenceOutput& so, std::vector<RequestOutput>& outputs,
                                           StepRecord& record) {
  ForkRecord fork;
  fork.group = &seq.group();
  fork.policy = parent.entry != nullptr;
  const bool logprobs = seq.group().params().sampling.logprobs.has_value();
  const int n = ExpandCount(parent, seq);
  for (int i = 1; i < n; ++i) {
    // Only a policy forces expand tokens (LogitsView::expand_tokens).
    const bool forced = ExpandForced(parent, i);
    const SampleResult* drawn = forced ? nullptr : &results[r++];
    const int32_t token = forced ? parent.policy->expand_tokens[i - 1] : drawn->token;
    fork.children.push_back(NewState(seq, i, parent.seed + static_cast<uint64_t>(i)));
    SeqState& child = fork.children.back();
    FinishReason decision = FinishReason::kNone;
    if (fork.policy) {
      EmitPolicyToken(child, token, row, drawn, decision);
    } else {
      fork.output_rows.push_back(outputs.size());
      outputs.push_back(Emit(child, token, decision));
      if (logprobs) outputs.back().logprobs.push_back(drawn->logprobs);
      record.output_seqs.push_back(nullptr);
    }
    child.deferred_finish = decision;  // settled in FinishOutputs
    so.fork_tokens.push_back(token);
  }
  return fork;
}

void LlmEngine::FinishOutputs(StepRecord& record,
                              const std::vector<std::unique_ptr<SequenceGroup>>& finished,
                              std::vector<RequestOutput>& outputs) {
  // Fork children: the scheduler appended them to the group in fork order.
  absl::flat_hash_map<const Sequence*, FinishReason> decided;
  for (ForkRecord& fork : record.forks) {
    if (fork.policy) {
      BindPolicyForks(fork, record);
      continue;
    }
    const auto& seqs = fork.group->sequences();
    for (size_t i = 0; i < fork.children.size() && i + 1 < seqs.size(); ++i) {
      const Sequence* child = seqs[i + 1].get();
      SeqState& state = fork.children[i];
      record.output_seqs[fork.output_rows[i]] = child;
      // The StopChecker's reason wins, as the scheduler's would for a
      // sampled token (it checks length only after the requested reason).
      if (state.deferred_finish != FinishReason::kNone) decided[child] = state.deferred_finish;
      if (child->is_finished()) continue;  // ended by the scheduler (length)
      seqs_.emplace(child->seq_id(), std::move(state));
    }
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Sequence* seq = record.output_seqs[i];
    if (seq == nullptr) continue;
    const auto d = decided.find(seq);
    if (d != decided.end()) {
      outputs[i].finish_reason = d->second;
    } else if (seq->is_finished()) {
      outputs[i].finish_reason = seq->finish_reason();
    }
  }
  // The request-level flag goes on each finished request's last output.
  for (const auto& group : finished) {
    if (group->params().policy != nullptr) continue;  // finalized by its policy
    const int64_t id = group->request_id();
    auto last = std::find_if(outputs.rbegin(), outputs.rend(),
                             [id](const RequestOutput& o) { return o.request_id == id; });
    if (last != outputs.rend()) {
      last->finished = true;
      continue;
    }
    // Only closures of choices already reported finished ran this step.
    for (const Sequence* seq : record.closed) {
      if (seq->request_id() != id) continue;
      const SeqState& state = seqs_.at(seq->seq_id());
      RequestOutput ro;
      ro.request_id = id;
      ro.index = state.index;
      ro.finished = true;
      ro.finish_reason = state.deferred_finish;
      outputs.push_back(std::move(ro));
      break;
    }
  }
}

void LlmEngine::ForgetGroup(const SequenceGroup& group) {
  scheduler_->ReleaseRetainedOf(group.request_id());
  for (const auto& seq : group.sequences()) seqs_.erase(seq->seq_id());
  request_seeds_.erase(group.request_id());
  if (!policies_.empty()) ForgetPolicy(group.request_id());
}

absl::StatusOr<std::vector<RequestOutput>> LlmEngine::Step() {
  std::vector<RequestOutput> outputs;
  // Policies first: a paused sequence can only be resumed from OnStep.
  if (!policies_.empty()) RunStepHooks();
  StepPlan plan = scheduler_->Schedule();
  MarkPromptLogprobs(plan);
  if (!plan.empty()) RETURN_IF_ERROR(RunPlan(plan, outputs));
  scheduler_->Recycle(std::move(plan));
  if (!scorers_.empty()) StepScorers();
  if (!policies_.empty()) EndPolicyStep(outputs);
  scheduler_->ReleaseRetained();  // also when the step's policies all ended
  return outputs;
}

absl::Status LlmEngine::RunPlan(const StepPlan& plan, std::vector<RequestOutput>& outputs) {
  ++num_steps_;
  num_preemptions_ += static_cast<int64_t>(plan.preempted.size());
  for (const ScheduledSequence& s : plan.seqs) {
    num_computed_tokens_ += static_cast<int64_t>(s.token_ids.size());
  }
  PlanLogitsRows(plan);
  const bool want_hidden = !policies_.empty() && PolicyWantsHidden(plan);
  const absl::Status run =
      runner_.Execute(plan,
                      ForwardOptions{.want_hidden = want_hidden,
                                     .host_logits_rows = scratch_.host_rows,
                                     .device_rows = scratch_.device_rows,
                                     .device_adjustments = scratch_.device_adjustments},
                      forward_out_);
  if (!run.ok()) {
    // Abandon the step: abort its requests (freeing their blocks) so the
    // engine stays usable, and close the plan.
    for (const ScheduledSequence& s : plan.seqs) {
      auto aborted = scheduler_->Abort(s.request_id);
      if (aborted.ok()) ForgetGroup(**aborted);
    }
    (void)scheduler_->Update(StepOutput{});
    return run;
  }
  if (!policies_.empty()) RunLogitsHooks(plan);
  StepOutput step_out;
  StepRecord record;
  SampleAndCheck(plan, forward_out_, step_out, outputs, record);
  ASSIGN_OR_RETURN(auto finished, scheduler_->Update(step_out));
  FinishOutputs(record, finished, outputs);
  if (!policies_.empty()) RunTokenHooks(record);
  for (auto& group : finished) {
    // A policy group is finalized (and forgotten) at the end of the step.
    if (group->params().policy != nullptr) {
      policy_finished_.push_back(std::move(group));
    } else {
      ForgetGroup(*group);
    }
  }
  return absl::OkStatus();
}

absl::Status LlmEngine::Abort(int64_t request_id) {
  if (!policies_.empty() && AbortAwaitingPolicy(request_id)) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::unique_ptr<SequenceGroup> group, scheduler_->Abort(request_id));
  ForgetGroup(*group);
  return absl::OkStatus();
}

EngineStats LlmEngine::stats() const {
  EngineStats s;
  s.num_steps = num_steps_;
  s.num_preemptions = num_preemptions_;
  s.num_computed_tokens = num_computed_tokens_;
  const PrefixCacheStats& pc = scheduler_->kv_cache().pool().stats();
  s.prefix_cache_queried_blocks = pc.queried_blocks;
  s.prefix_cache_hit_blocks = pc.hit_blocks;
  s.num_free_blocks = scheduler_->kv_cache().NumFreeBlocks();
  s.num_total_blocks = scheduler_->kv_cache().num_blocks();
  s.num_unfinished_requests = scheduler_->num_unfinished_requests();
  s.num_pruned_sequences = num_pruned_sequences_;
  s.pruned_blocks_freed = pruned_blocks_freed_;
  return s;
}

}  // namespace alignserve
