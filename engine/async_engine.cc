#include "engine/async_engine.h"

#include <utility>

#include "absl/container/flat_hash_set.h"

namespace alignserve {

using Clock = std::chrono::steady_clock;

absl::StatusOr<std::unique_ptr<AsyncEngine>> AsyncEngine::Create(
    std::unique_ptr<LlmEngine> engine) {
  if (engine == nullptr) return absl::InvalidArgumentError("AsyncEngine::Create: no engine");
  if (engine->HasUnfinished()) {
    return absl::FailedPreconditionError("AsyncEngine::Create: the engine already has requests");
  }
  std::unique_ptr<AsyncEngine> async(new AsyncEngine(std::move(engine)));
  // Started here, not in the constructor, so the object is complete first.
  async->thread_ = std::thread([raw = async.get()] { raw->Loop(); });
  return async;
}

AsyncEngine::AsyncEngine(std::unique_ptr<LlmEngine> engine) : engine_(std::move(engine)) {
  PublishStats();
}

AsyncEngine::~AsyncEngine() { Shutdown(std::chrono::milliseconds(0)); }

absl::StatusOr<std::shared_ptr<RequestStream>> AsyncEngine::Submit(std::vector<int32_t> prompt,
                                                                   const SamplingParams& params) {
  RequestParams request;
  request.sampling = params;
  return Submit(std::move(prompt), std::move(request));
}

absl::StatusOr<std::shared_ptr<RequestStream>> AsyncEngine::Submit(std::vector<int32_t> prompt,
                                                                   RequestParams params) {
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt is empty");
  std::shared_ptr<RequestStream> stream;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!accepting_) return absl::UnavailableError("the engine is shutting down");
    stream = std::make_shared<RequestStream>(next_request_id_++);
    adds_.push_back(PendingAdd{std::move(prompt), std::move(params), stream});
  }
  wake_.notify_one();
  return stream;
}

void AsyncEngine::Abort(int64_t request_id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    aborts_.push_back(request_id);
  }
  wake_.notify_one();
}

void AsyncEngine::Shutdown(std::chrono::milliseconds drain_timeout) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    accepting_ = false;
    const Clock::time_point deadline = Clock::now() + drain_timeout;
    if (!drain_deadline_ || deadline < *drain_deadline_) drain_deadline_ = deadline;
  }
  wake_.notify_all();
  std::lock_guard<std::mutex> join_lock(join_mu_);
  if (thread_.joinable()) thread_.join();
}

AsyncEngineStats AsyncEngine::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void AsyncEngine::Loop() {
  std::vector<PendingAdd> adds;
  std::vector<int64_t> aborts;
  while (TakeWork(adds, aborts)) {
    ApplyAdds(adds);
    ApplyAborts(aborts);
    if (past_deadline_) AbortAll();
    if (engine_->HasUnfinished()) RunStep();
    PublishStats();
  }
  // Normally empty by now; whatever is left must not hang its consumer.
  AbortAll();
  PublishStats();
}

bool AsyncEngine::TakeWork(std::vector<PendingAdd>& adds, std::vector<int64_t>& aborts) {
  adds.clear();
  aborts.clear();
  std::unique_lock<std::mutex> lock(mu_);
  if (!engine_->HasUnfinished()) {
    wake_.wait(lock, [this] { return !adds_.empty() || !aborts_.empty() || drain_deadline_; });
  }
  adds.swap(adds_);
  aborts.swap(aborts_);
  if (drain_deadline_) {
    past_deadline_ = Clock::now() >= *drain_deadline_;
    // Queued adds were accepted before Shutdown: they still get a stream end.
    if (adds.empty() && !engine_->HasUnfinished()) return false;
  }
  return true;
}

void AsyncEngine::ApplyAdds(std::vector<PendingAdd>& adds) {
  for (PendingAdd& add : adds) {
    const int64_t id = add.stream->request_id();
    absl::Status s = engine_->AddRequest(id, std::move(add.prompt), std::move(add.params));
    if (!s.ok()) {
      StreamEvent e;
      e.status = std::move(s);
      add.stream->Push(std::move(e));
      continue;
    }
    live_[id] = std::move(add.stream);
  }
}

void AsyncEngine::ApplyAborts(const std::vector<int64_t>& aborts) {
  for (int64_t id : aborts) {
    auto it = live_.find(id);
    if (it == live_.end()) continue;  // unknown, finished or failed
    // NotFound here would mean the engine already dropped it; the stream
    // still must end.
    engine_->Abort(id).IgnoreError();
    StreamEvent e;
    e.finished = true;
    e.finish_reason = FinishReason::kAbort;
    it->second->Push(std::move(e));
    live_.erase(it);
  }
}

void AsyncEngine::AbortAll() {
  std::vector<int64_t> ids;
  ids.reserve(live_.size());
  for (const auto& [id, stream] : live_) ids.push_back(id);
  ApplyAborts(ids);
}

StreamEvent ToStreamEvent(RequestOutput&& o) {
  StreamEvent e;
  e.index = o.index;
  e.token_ids = std::move(o.new_token_ids);
  e.text = std::move(o.text);
  e.logprobs = std::move(o.logprobs);
  e.prompt_logprobs = std::move(o.prompt_logprobs);
  e.finished = o.finished;
  e.finish_reason = o.finish_reason;
  e.policy_report = std::move(o.policy_report);
  return e;
}

void AsyncEngine::RunStep() {
  absl::StatusOr<std::vector<RequestOutput>> outputs = engine_->Step();
  last_step_failed_ = !outputs.ok();
  if (!outputs.ok()) {
    ++num_step_errors_;
    last_step_failure_ = Clock::now();
    FailRequestsLostInStep(outputs.status());
    return;
  }
  for (RequestOutput& o : *outputs) {
    auto it = live_.find(o.request_id);
    if (it == live_.end()) continue;
    const bool finished = o.finished;
    it->second->Push(ToStreamEvent(std::move(o)));
    if (finished) live_.erase(it);
  }
}

// LlmEngine::Step aborts every request of a failed step; those are the live
// streams the scheduler no longer knows.
void AsyncEngine::FailRequestsLostInStep(const absl::Status& error) {
  absl::flat_hash_set<int64_t> known;
  for (const Sequence* seq : engine_->scheduler().running()) known.insert(seq->request_id());
  for (const Sequence* seq : engine_->scheduler().waiting()) known.insert(seq->request_id());
  for (auto it = live_.begin(); it != live_.end();) {
    if (known.contains(it->first)) {
      ++it;
      continue;
    }
    StreamEvent e;
    e.status = error;
    it->second->Push(std::move(e));
    live_.erase(it++);
  }
}

void AsyncEngine::PublishStats() {
  const EngineStats es = engine_->stats();
  AsyncEngineStats s;
  s.num_running = engine_->scheduler().num_running();
  s.num_waiting = engine_->scheduler().num_waiting();
  s.num_free_blocks = es.num_free_blocks;
  s.num_total_blocks = es.num_total_blocks;
  s.num_preemptions = es.num_preemptions;
  s.prefix_cache_hit_blocks = es.prefix_cache_hit_blocks;
  s.prefix_cache_queried_blocks = es.prefix_cache_queried_blocks;
  s.num_pruned_sequences = es.num_pruned_sequences;
  s.pruned_blocks_freed = es.pruned_blocks_freed;
  s.num_steps = es.num_steps;
  s.num_step_errors = num_step_errors_;
  s.last_step_failed = last_step_failed_;
  s.last_step_failure = last_step_failure_;
  s.num_live_streams = static_cast<int64_t>(live_.size());
  s.last_progress = Clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  stats_ = s;
}

}  // namespace alignserve
