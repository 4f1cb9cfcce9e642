#include "server/generation_job.h"

#include <cmath>
#include <cstdint>
#include <ctime>
#include <optional>
#include <utility>

namespace alignserve {

void GenerationJob::Start(OpenAiRequest request, AsyncEngine& engine, const ModelText& text,
                          std::shared_ptr<HttpExchange> exchange,
                          std::shared_ptr<ServingMetrics> metrics, std::string model_name,
                          AdmissionCounter::Slot slot) {
  auto job =
      std::make_shared<GenerationJob>(std::move(request), engine, text, exchange,
                                      std::move(metrics), std::move(model_name), std::move(slot));
  // Everything of the job runs on the connection's strand.
  exchange->Run([job] { job->Submit(); });
}

GenerationJob::GenerationJob(OpenAiRequest request, AsyncEngine& engine, const ModelText& text,
                             std::shared_ptr<HttpExchange> exchange,
                             std::shared_ptr<ServingMetrics> metrics, std::string model_name,
                             AdmissionCounter::Slot slot)
    : request_(std::move(request)),
      engine_(engine),
      text_(text),
      exchange_(std::move(exchange)),
      metrics_(std::move(metrics)),
      slot_(std::move(slot)) {
  header_.id = NewRequestId(request_.kind);
  header_.created = static_cast<int64_t>(std::time(nullptr));
  header_.model = std::move(model_name);
  header_.include_usage = request_.include_usage;
  choices_.resize(request_.prompts.size() * static_cast<size_t>(request_.params.n));
}

GenerationJob::~GenerationJob() { ReleaseSlot(); }

void GenerationJob::ReleaseSlot() { slot_.Release(); }

void GenerationJob::Detach() {
  ended_ = true;
  ReleaseSlot();
  for (Submission& s : submissions_) s.stream->SetNotify(nullptr);  // breaks the cycle
}

void GenerationJob::Submit() {
  auto self = shared_from_this();
  for (size_t p = 0; p < request_.prompts.size(); ++p) {
    Submission s;
    s.prompt_tokens = request_.prompts[p].size();
    s.submitted = Clock::now();
    absl::StatusOr<std::shared_ptr<RequestStream>> stream;
    if (request_.policies.empty()) {
      stream = engine_.Submit(request_.prompts[p], request_.params);
    } else {
      RequestParams params;
      params.sampling = request_.params;
      // The engine thread owns the policy from here on.
      params.policy = std::move(request_.policies[p]);
      stream = engine_.Submit(request_.prompts[p], std::move(params));
    }
    if (!stream.ok()) return Fail(stream.status());
    s.stream = std::move(*stream);
    submissions_.push_back(std::move(s));
  }
  exchange_->OnClose([self] { self->AbortAll(); });
  if (request_.stream) {
    exchange_->StartStream(200, "text/event-stream");
    stream_started_ = true;
    const int n = request_.params.n;
    for (size_t i = 0; i < choices_.size(); ++i) {
      const int index = static_cast<int>(i);
      if (request_.kind == ApiKind::kChat) {
        exchange_->Write(SseEvent(ChatRoleChunk(header_, index)));
      } else if (request_.echo) {
        exchange_->Write(SseEvent(
            CompletionChunk(header_, index, request_.prompt_texts[i / n], FinishReason::kNone)));
      }
    }
  }
  // The hook only posts: draining happens here, on the strand. It holds the
  // job until Complete / Fail clears it.
  std::shared_ptr<HttpExchange> exchange = exchange_;
  for (Submission& s : submissions_) {
    s.stream->SetNotify([self, exchange] { exchange->Run([self] { self->Drain(); }); });
  }
  Drain();
}

void GenerationJob::Drain() {
  if (ended_) return;
  bool all_done = true;
  for (size_t p = 0; p < submissions_.size(); ++p) {
    Submission& s = submissions_[p];
    while (!s.done) {
      std::optional<StreamEvent> e = s.stream->TryNext();
      if (!e) break;
      OnEvent(p, *e);
      if (ended_) return;
    }
    all_done = all_done && s.done;
  }
  if (all_done) Complete();
}

void GenerationJob::OnEvent(size_t prompt, StreamEvent& e) {
  if (!e.status.ok()) return Fail(FromEngineError(e.status));
  Submission& s = submissions_[prompt];
  const int index = static_cast<int>(prompt) * request_.params.n + e.index;
  if (index < 0 || static_cast<size_t>(index) >= choices_.size()) {
    return Fail(absl::InternalError("engine event for an unknown choice"));
  }
  Choice& choice = choices_[index];
  if (!e.token_ids.empty()) {
    if (s.generated == 0) {
      s.first_token = e.emitted_at;
    } else {
      const double gap = std::chrono::duration<double>(e.emitted_at - s.last_event).count();
      for (size_t i = 0; i < e.token_ids.size(); ++i) {
        s.gaps.push_back(gap / static_cast<double>(e.token_ids.size()));
      }
    }
    s.generated += static_cast<int64_t>(e.token_ids.size());
  }
  s.last_event = e.emitted_at;
  if (!e.prompt_logprobs.empty()) s.prompt_logprobs = std::move(e.prompt_logprobs);
  if (!e.policy_report.empty()) s.policy_report = std::move(e.policy_report);
  choice.text += e.text;
  choice.tokens.insert(choice.tokens.end(), e.token_ids.begin(), e.token_ids.end());
  choice.logprobs.insert(choice.logprobs.end(), e.logprobs.begin(), e.logprobs.end());
  if (e.finish_reason != FinishReason::kNone) choice.finish_reason = e.finish_reason;
  if (request_.stream && !request_.policy_name.empty()) {
    StreamPolicyChoice(index, prompt, choice, e.finished);
  } else if (request_.stream) {
    StreamChunks(index, e, choice);
  }
  if (e.finished) {
    s.done = true;
    RecordFinished(s, choices_[prompt * request_.params.n].finish_reason);
  }
}

// A policy request's outputs come once, at its end: each chosen completion
// whole, the last (`last`) with the report. Streamed logprobs cover the
// generated tokens only, echo or not, as in StreamChunks.
void GenerationJob::StreamPolicyChoice(int index, size_t prompt, Choice& choice, bool last) {
  choice.finish_sent = choice.finish_reason != FinishReason::kNone;
  const nlohmann::json logprobs =
      request_.echo && request_.logprobs && text_.tokenizer
          ? CompletionLogprobs(*text_.tokenizer, choice.tokens, choice.logprobs, 0)
          : LogprobsOf(choice, prompt);
  nlohmann::json chunk =
      request_.kind == ApiKind::kChat
          ? ChatContentChunk(header_, index, choice.text, choice.finish_reason, logprobs)
          : CompletionChunk(header_, index, choice.text, choice.finish_reason, logprobs);
  if (last) chunk["alignment"] = AlignmentOf(submissions_[prompt]);
  exchange_->Write(SseEvent(chunk));
}

void GenerationJob::StreamChunks(int index, const StreamEvent& e, Choice& choice) {
  const bool finish_now = choice.finish_reason != FinishReason::kNone && !choice.finish_sent;
  if (e.text.empty() && !finish_now) return;  // bytes held back mid-character
  const FinishReason reason = finish_now ? choice.finish_reason : FinishReason::kNone;
  choice.finish_sent = choice.finish_sent || finish_now;
  nlohmann::json logprobs = nullptr;
  if (request_.logprobs && !e.logprobs.empty() && text_.tokenizer) {
    logprobs = request_.kind == ApiKind::kChat
                   ? ChatLogprobs(*text_.tokenizer, e.token_ids, e.logprobs)
                   : CompletionLogprobs(*text_.tokenizer, e.token_ids, e.logprobs,
                                        static_cast<int64_t>(choice.text.size() - e.text.size()));
  }
  exchange_->Write(SseEvent(request_.kind == ApiKind::kChat
                                ? ChatContentChunk(header_, index, e.text, reason, logprobs)
                                : CompletionChunk(header_, index, e.text, reason, logprobs)));
}

void GenerationJob::RecordFinished(const Submission& s, FinishReason reason) {
  if (!metrics_) return;
  RequestRecord r;
  r.prompt_tokens = static_cast<int64_t>(s.prompt_tokens);
  r.generation_tokens = s.generated;
  r.finish_reason = reason;
  if (s.generated > 0) {
    r.ttft_seconds = std::chrono::duration<double>(s.first_token - s.submitted).count();
  }
  r.e2e_seconds = std::chrono::duration<double>(s.last_event - s.submitted).count();
  r.inter_token_seconds = s.gaps;
  r.policy = request_.policy_name;
  r.policy_report = s.policy_report;
  metrics_->OnRequestFinished(r);
}

nlohmann::json GenerationJob::LogprobsOf(const Choice& choice, size_t prompt) const {
  if (!request_.logprobs || !text_.tokenizer) return nullptr;
  if (request_.kind == ApiKind::kChat) {
    return ChatLogprobs(*text_.tokenizer, choice.tokens, choice.logprobs);
  }
  if (request_.echo) {
    return EchoCompletionLogprobs(*text_.tokenizer, request_.prompts[prompt],
                                  submissions_[prompt].prompt_logprobs, choice.tokens,
                                  choice.logprobs);
  }
  return CompletionLogprobs(*text_.tokenizer, choice.tokens, choice.logprobs, 0);
}

nlohmann::json GenerationJob::AlignmentOf(const Submission& s) const {
  nlohmann::json report = nlohmann::json::object();
  for (const auto& [key, value] : s.policy_report) {
    // Counts and indices read as integers; NaN (an unscored reward) is null.
    constexpr double kExactIntegers = 9007199254740992.0;  // 2^53
    if (std::isfinite(value) && value == std::floor(value) && std::fabs(value) < kExactIntegers) {
      report[key] = static_cast<int64_t>(value);
    } else {
      report[key] = value;
    }
  }
  return {{"policy", request_.policy_name}, {"report", std::move(report)}};
}

void GenerationJob::Complete() {
  Detach();
  if (exchange_->closed()) return;
  Usage usage;
  for (const Submission& s : submissions_) usage.prompt_tokens += static_cast<int>(s.prompt_tokens);
  for (const Choice& c : choices_) usage.completion_tokens += static_cast<int>(c.tokens.size());
  const int n = request_.params.n;
  if (!request_.stream) {
    std::vector<ChoiceOutput> out(choices_.size());
    for (size_t i = 0; i < choices_.size(); ++i) {
      const size_t prompt = i / n;
      out[i].index = static_cast<int>(i);
      out[i].text =
          request_.echo ? request_.prompt_texts[prompt] + choices_[i].text : choices_[i].text;
      out[i].token_ids = choices_[i].tokens;
      out[i].finish_reason = choices_[i].finish_reason;
      out[i].logprobs = LogprobsOf(choices_[i], prompt);
    }
    nlohmann::json body =
        request_.kind == ApiKind::kChat
            ? ChatResponse(header_.id, header_.created, header_.model, out, usage)
            : CompletionResponse(header_.id, header_.created, header_.model, out, usage);
    if (!request_.policy_name.empty()) {
      body["alignment"] = AlignmentOf(submissions_[0]);
      if (submissions_.size() > 1) {
        nlohmann::json reports = nlohmann::json::array();
        for (const Submission& s : submissions_) reports.push_back(AlignmentOf(s)["report"]);
        body["alignment"]["reports"] = std::move(reports);
      }
    }
    exchange_->Reply(200, "application/json",
                     body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    return;
  }
  for (size_t i = 0; i < choices_.size(); ++i) {
    Choice& c = choices_[i];
    if (c.finish_sent) continue;
    const FinishReason reason =
        c.finish_reason == FinishReason::kNone ? FinishReason::kStop : c.finish_reason;
    const int index = static_cast<int>(i);
    exchange_->Write(SseEvent(request_.kind == ApiKind::kChat
                                  ? ChatContentChunk(header_, index, "", reason)
                                  : CompletionChunk(header_, index, "", reason)));
  }
  if (request_.include_usage) exchange_->Write(SseEvent(UsageChunk(header_, request_.kind, usage)));
  exchange_->Write(SseDone());
  exchange_->Finish();
}

void GenerationJob::Fail(const absl::Status& status) {
  if (ended_) return;
  Detach();
  AbortAll();
  const ApiError error = ErrorFromStatus(status);
  if (!stream_started_) {
    exchange_->Reply(error.http_status, "application/json", error.ToJson().dump());
    return;
  }
  // The status line went out already: the error travels as an event.
  exchange_->Write(SseEvent(error.ToJson()));
  exchange_->Write(SseDone());
  exchange_->Finish();
}

void GenerationJob::AbortAll() {
  for (Submission& s : submissions_) {
    if (!s.done) engine_.Abort(s.stream->request_id());
  }
}

}  // namespace alignserve
