#include "server/grpc_generate_call.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/api_error.h"
#include "server/grpc_request.h"
#include "server/grpc_status.h"

namespace alignserve {
namespace {

class FinishedWriter : public GenerateWriter {
 public:
  explicit FinishedWriter(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

GenerateWriter* FinishedGenerateWriter(const grpc::Status& status) {
  return new FinishedWriter(status);
}

GenerateWriter* GenerateCall::Start(OpenAiRequest request, AsyncEngine& engine,
                                    const Tokenizer* tokenizer, SerialExecutor& executor,
                                    int64_t max_unread_events,
                                    std::shared_ptr<ServingMetrics> metrics,
                                    AdmissionCounter::Slot slot) {
  const int prompt_tokens = static_cast<int>(request.prompts[0].size());
  const auto submitted = std::chrono::steady_clock::now();
  absl::StatusOr<std::shared_ptr<RequestStream>> stream;
  if (request.policies.empty()) {
    stream = engine.Submit(std::move(request.prompts[0]), request.params);
  } else {
    RequestParams params;
    params.sampling = request.params;
    params.policy = std::move(request.policies[0]);  // the engine thread owns it from here on
    stream = engine.Submit(std::move(request.prompts[0]), std::move(params));
  }
  if (!stream.ok()) return FinishedGenerateWriter(ToGrpcStatus(stream.status()));
  auto call = std::make_shared<GenerateCall>(engine, tokenizer, executor, max_unread_events,
                                             prompt_tokens, std::move(metrics));
  call->submitted_ = submitted;
  call->policy_name_ = std::move(request.policy_name);
  call->slot_ = std::move(slot);
  call->stream_ = std::move(*stream);
  call->self_ = call;
  // The hook holds the call until OnDone clears it. Writes started before
  // gRPC binds the reactor are held by the reactor and replayed.
  call->stream_->SetNotify([call] { call->Notified(); });
  return call.get();
}

GenerateCall::GenerateCall(AsyncEngine& engine, const Tokenizer* tokenizer,
                           SerialExecutor& executor, int64_t max_unread_events, int prompt_tokens,
                           std::shared_ptr<ServingMetrics> metrics)
    : engine_(engine),
      tokenizer_(tokenizer),
      executor_(executor),
      max_unread_events_(max_unread_events),
      prompt_tokens_(prompt_tokens),
      metrics_(std::move(metrics)) {}

void GenerateCall::Notified() {
  unread_.fetch_add(1, std::memory_order_relaxed);
  if (drain_posted_.exchange(true)) return;
  executor_.Post([self = shared_from_this()] { self->Drain(); });
}

void GenerateCall::OnWriteDone(bool ok) {
  executor_.Post([self = shared_from_this(), ok] {
    self->write_in_flight_ = false;
    if (!ok) return self->End(grpc::Status(grpc::StatusCode::CANCELLED, "the stream broke"));
    self->Drain();
  });
}

void GenerateCall::OnCancel() {
  executor_.Post([self = shared_from_this()] {
    self->End(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client"));
  });
}

void GenerateCall::OnDone() {
  executor_.Post([self = shared_from_this()] {
    if (!self->engine_done_) self->engine_.Abort(self->stream_->request_id());
    self->stream_->SetNotify(nullptr);  // breaks the hook -> call cycle
    self->self_.reset();
  });
}

void GenerateCall::Drain() {
  drain_posted_.store(false);
  if (finishing_) return;
  if (write_in_flight_) {
    // Not popping while a write is pending leaves the events in the engine's
    // stream; their count is what a client that stopped reading costs.
    const int64_t unread = unread_.load(std::memory_order_relaxed);
    if (unread > max_unread_events_) {
      End(grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrCat("the client stopped reading: ", unread, " events are waiting (limit ",
                       max_unread_events_, "); the request was aborted")));
    }
    return;
  }
  unread_.store(0, std::memory_order_relaxed);
  while (!engine_done_) {
    std::optional<StreamEvent> event = stream_->TryNext();
    if (!event) break;
    Merge(*event);
  }
  WriteNext();
}

void GenerateCall::Merge(StreamEvent& event) {
  if (!event.status.ok()) {
    engine_done_ = true;
    slot_.Release();  // as HTTP: the engine is done with it; what is left is writing
    final_status_ = ToGrpcStatus(FromEngineError(event.status));
    return;
  }
  // Join the choice's unsent message, if there is one.
  v1::GenerateResponse* target = nullptr;
  for (auto it = outbox_.rbegin(); it != outbox_.rend(); ++it) {
    if (it->index() == event.index) {
      target = &*it;
      break;
    }
  }
  if (target == nullptr) target = &outbox_.emplace_back();
  AppendEvent(event, tokenizer_, target);
  if (!event.token_ids.empty()) {
    if (completion_tokens_ == 0) {
      first_token_ = event.emitted_at;
    } else {
      const double gap = std::chrono::duration<double>(event.emitted_at - last_event_).count();
      gaps_.insert(gaps_.end(), event.token_ids.size(),
                   gap / static_cast<double>(event.token_ids.size()));
    }
  }
  last_event_ = event.emitted_at;
  completion_tokens_ += static_cast<int32_t>(event.token_ids.size());
  if (event.finished && metrics_) {
    RequestRecord r;
    r.prompt_tokens = prompt_tokens_;
    r.generation_tokens = completion_tokens_;
    r.finish_reason = event.finish_reason;
    if (completion_tokens_ > 0) {
      r.ttft_seconds = std::chrono::duration<double>(first_token_ - submitted_).count();
    }
    r.e2e_seconds = std::chrono::duration<double>(last_event_ - submitted_).count();
    r.inter_token_seconds = gaps_;
    r.policy = policy_name_;
    r.policy_report = event.policy_report;
    metrics_->OnRequestFinished(r);
  }
  if (event.finished) {
    engine_done_ = true;
    slot_.Release();
    v1::GenerateResponse& last = outbox_.back();  // written last, whatever its choice
    last.set_finished(true);
    last.mutable_usage()->set_prompt_tokens(prompt_tokens_);
    last.mutable_usage()->set_completion_tokens(completion_tokens_);
    if (!policy_name_.empty()) {
      v1::AlignmentReport* alignment = last.mutable_alignment();
      alignment->set_policy(policy_name_);
      auto& report = *alignment->mutable_report();
      for (const auto& [key, value] : event.policy_report) report[key] = value;
    }
  }
}

void GenerateCall::WriteNext() {
  if (write_in_flight_ || finishing_) return;
  if (!outbox_.empty()) {
    writing_ = std::move(outbox_.front());
    outbox_.pop_front();
    write_in_flight_ = true;
    StartWrite(&writing_);
    return;
  }
  if (engine_done_) End(final_status_);
}

void GenerateCall::End(const grpc::Status& status) {
  if (finishing_) return;
  finishing_ = true;
  if (!engine_done_) engine_.Abort(stream_->request_id());
  slot_.Release();  // the answer is decided (cancelled, cut off or done)
  Finish(status);
}

}  // namespace alignserve
