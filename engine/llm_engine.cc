#include "engine/llm_engine.h"

#include <algorithm>
#include <span>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"

namespace alignserve {

absl::StatusOr<std::unique_ptr<LlmEngine>> LlmEngine::Create(Model& model, const ModelText& text,
                                                             const EngineConfig& config) {
  if (text.tokenizer == nullptr) {
    return absl::InvalidArgumentError("LlmEngine needs a model loaded with its tokenizer");
  }
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
  for (const int32_t t : prompt) {
    if (t < 0 || t >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt token id ", t, " outside the vocabulary [0, ", vocab, ")"));
    }
  }
  // Resolve the seed now so that it follows arrival order, not scheduling.
  const bool seeded = params.sampling.seed.has_value();
  const uint64_t seed = seeded ? *params.sampling.seed : next_seed_;
  RETURN_IF_ERROR(
      scheduler_->AddRequest(request_id, std::move(prompt), std::move(params)).status());
  if (!seeded) ++next_seed_;
  request_seeds_[request_id] = seed;
  return absl::OkStatus();
}

LlmEngine::SeqState& LlmEngine::StateFor(const Sequence& seq) {
  auto [it, inserted] = seqs_.try_emplace(seq.seq_id());
  if (inserted) {
    SeqState& s = it->second;
    const SamplingParams& p = seq.group().params().sampling;
    s.request_id = seq.request_id();
    const auto seed = request_seeds_.find(s.request_id);
    s.seed = seed != request_seeds_.end() ? seed->second : config_.seed;
    // The stop checker counts outputs from its creation: a sequence gets its
    // state before its first sampled token, so the counts agree.
    s.stop = std::make_unique<StopChecker>(p, text_.stop_token_ids, seq.num_prompt_tokens(),
                                           scheduler_->config().max_sequence_len());
    s.detok =
        std::make_unique<IncrementalDetokenizer>(*text_.tokenizer, config_.skip_special_tokens);
  }
  return it->second;
}

void LlmEngine::SampleAndCheck(const StepPlan& plan, const ForwardOutput& out, StepOutput& step_out,
                               std::vector<RequestOutput>& outputs) {
  const int vocab = model_.config().vocab_size;
  std::vector<const Sequence*> sampled;
  std::vector<SamplingRow> rows;
  for (const ScheduledSequence& s : plan.seqs) {
    if (!s.sample) continue;
    const int row = static_cast<int>(sampled.size());
    const Sequence* seq = scheduler_->FindSequence(s.seq_id);
    sampled.push_back(seq);
    if (seq == nullptr) continue;  // cannot happen in a synchronous step; be safe
    const SeqState& state = StateFor(*seq);
    std::span<const int32_t> prompt(seq->token_ids().data(), seq->num_prompt_tokens());
    rows.push_back(SamplingRow{ModelRunner::Row(out, row, vocab), &seq->group().params().sampling,
                               prompt, seq->output_token_ids(), state.seed});
  }
  std::vector<SampleResult> results;
  sampler_.SampleBatch(rows, &results);
  size_t r = 0;
  for (const Sequence* seq : sampled) {
    if (seq == nullptr) continue;
    const int32_t token = results[r++].token;
    SeqState& state = seqs_.at(seq->seq_id());
    std::string delta = state.detok->Append(token);
    StopDecision decision = state.stop->Append(token, delta);
    if (decision.reason == FinishReason::kLength) {
      // Finished without a stop string: release a cut UTF-8 tail too.
      decision.text += state.detok->Flush();
    }
    step_out.outputs.push_back(SequenceOutput{seq->seq_id(), token, decision.reason, {}});
    RequestOutput ro;
    ro.request_id = seq->request_id();
    ro.new_token_ids.push_back(token);
    ro.text = std::move(decision.text);
    outputs.push_back(std::move(ro));
  }
}

void LlmEngine::ForgetGroup(const SequenceGroup& group) {
  for (const auto& seq : group.sequences()) seqs_.erase(seq->seq_id());
  request_seeds_.erase(group.request_id());
}

absl::StatusOr<std::vector<RequestOutput>> LlmEngine::Step() {
  std::vector<RequestOutput> outputs;
  const StepPlan plan = scheduler_->Schedule();
  if (plan.empty()) return outputs;
  ++num_steps_;
  num_preemptions_ += static_cast<int64_t>(plan.preempted.size());
  const absl::Status run = runner_.Execute(plan, forward_out_);
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
  StepOutput step_out;
  SampleAndCheck(plan, forward_out_, step_out, outputs);
  ASSIGN_OR_RETURN(auto finished, scheduler_->Update(step_out));
  absl::flat_hash_map<int64_t, FinishReason> done;
  for (const auto& group : finished) {
    // n = 1: the request's reason is its sequence's.
    FinishReason reason = FinishReason::kNone;
    for (const auto& seq : group->sequences()) reason = seq->finish_reason();
    done[group->request_id()] = reason;
    ForgetGroup(*group);
  }
  for (RequestOutput& o : outputs) {
    const auto it = done.find(o.request_id);
    if (it == done.end()) continue;
    o.finished = true;
    o.finish_reason = it->second;
  }
  return outputs;
}

absl::Status LlmEngine::Abort(int64_t request_id) {
  ASSIGN_OR_RETURN(std::unique_ptr<SequenceGroup> group, scheduler_->Abort(request_id));
  ForgetGroup(*group);
  return absl::OkStatus();
}

EngineStats LlmEngine::stats() const {
  EngineStats s;
  s.num_steps = num_steps_;
  s.num_preemptions = num_preemptions_;
  const PrefixCacheStats& pc = scheduler_->kv_cache().pool().stats();
  s.prefix_cache_queried_blocks = pc.queried_blocks;
  s.prefix_cache_hit_blocks = pc.hit_blocks;
  s.num_free_blocks = scheduler_->kv_cache().NumFreeBlocks();
  s.num_total_blocks = scheduler_->kv_cache().num_blocks();
  s.num_unfinished_requests = scheduler_->num_unfinished_requests();
  return s;
}

}  // namespace alignserve
