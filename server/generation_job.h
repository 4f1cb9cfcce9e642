// GenerationJob: one OpenAI completion or chat request in flight. It submits
// each prompt to the AsyncEngine (n choices each), drains the engine's
// streams on the HTTP connection's strand (the streams' notify hook only
// posts there), and answers the exchange: one JSON body when every choice
// has finished, or server-sent events as tokens arrive. OpenAI's choice
// index is prompt * n + the engine's choice index.
//
// A client that goes away aborts every engine request of the job; an
// engine error ends the answer with the error (a status code when nothing
// was sent yet, else an SSE error event and [DONE]). Each finished engine
// request is recorded in the serving metrics (with its policy's report).
//
// Policy requests (OpenAiRequest::policies): each prompt is submitted with
// its own DecodingPolicy. The engine streams nothing while a policy runs and
// at the end hands over the chosen completion whole, its last event carrying
// the policy's report. The answer adds a top-level extension object
//   "alignment": {"policy": NAME, "report": {KEY: VALUE, ...}}
// (integral values as integers, NaN, e.g. an unscored reward, as null); with several prompts
// "report" is the first prompt's and "reports" lists every prompt's. A
// streamed policy request gets the chosen completion as one content chunk at
// the end, that chunk carrying the same "alignment" object, then [DONE].
// Thread-safety: Start from any thread; everything else runs on the
// exchange's strand.
#ifndef ALIGNSERVE_SERVER_GENERATION_JOB_H_
#define ALIGNSERVE_SERVER_GENERATION_JOB_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/async_engine.h"
#include "server/admission_counter.h"
#include "server/http_server.h"
#include "server/openai_request.h"
#include "server/openai_response.h"
#include "server/serving_metrics.h"

namespace alignserve {

class GenerationJob : public std::enable_shared_from_this<GenerationJob> {
 public:
  // Submits the request's prompts and starts answering `exchange`. A
  // submission the engine refuses (shutting down) is answered at once.
  // `slot` is the request's place in the queue cap (server/
  // admission_counter.h); the job releases it once, before its answer is
  // written, so a client that has its answer never counts against the cap.
  static void Start(OpenAiRequest request, AsyncEngine& engine, const ModelText& text,
                    std::shared_ptr<HttpExchange> exchange, std::shared_ptr<ServingMetrics> metrics,
                    std::string model_name, AdmissionCounter::Slot slot);

  GenerationJob(OpenAiRequest request, AsyncEngine& engine, const ModelText& text,
                std::shared_ptr<HttpExchange> exchange, std::shared_ptr<ServingMetrics> metrics,
                std::string model_name, AdmissionCounter::Slot slot);
  ~GenerationJob();

 private:
  using Clock = std::chrono::steady_clock;
  struct Choice {
    std::string text;
    std::vector<int32_t> tokens;
    std::vector<PositionLogprobs> logprobs;
    FinishReason finish_reason = FinishReason::kNone;
    bool finish_sent = false;  // streaming: its last chunk went out
  };
  // One engine request: a prompt with its n choices.
  struct Submission {
    std::shared_ptr<RequestStream> stream;
    size_t prompt_tokens = 0;
    Clock::time_point submitted;
    Clock::time_point first_token;
    Clock::time_point last_event;
    std::vector<double> gaps;
    std::vector<PositionLogprobs> prompt_logprobs;              // echo + logprobs
    std::vector<std::pair<std::string, double>> policy_report;  // policy requests
    int64_t generated = 0;
    bool done = false;
  };

  void Submit();
  void Drain();
  void OnEvent(size_t prompt, StreamEvent& event);
  void RecordFinished(const Submission& s, FinishReason reason);
  void StreamChunks(int choice_index, const StreamEvent& event, Choice& choice);
  void StreamPolicyChoice(int choice_index, size_t prompt, Choice& choice, bool last);
  void Complete();
  void Fail(const absl::Status& status);
  void AbortAll();
  nlohmann::json LogprobsOf(const Choice& choice, size_t prompt) const;
  // {"policy", "report"} of one prompt's policy run.
  nlohmann::json AlignmentOf(const Submission& s) const;

  OpenAiRequest request_;
  AsyncEngine& engine_;
  const ModelText& text_;
  std::shared_ptr<HttpExchange> exchange_;
  std::shared_ptr<ServingMetrics> metrics_;
  StreamHeader header_;
  std::vector<Submission> submissions_;
  std::vector<Choice> choices_;  // [prompts * n]
  void ReleaseSlot();
  // The answer is decided: no more draining, the slot and the streams' hooks
  // (which hold the job) are released.
  void Detach();

  AdmissionCounter::Slot slot_;  // empty once released
  bool ended_ = false;
  bool stream_started_ = false;  // the 200 and SSE headers went out
};

}  // namespace alignserve

#endif  // ALIGNSERVE_SERVER_GENERATION_JOB_H_
