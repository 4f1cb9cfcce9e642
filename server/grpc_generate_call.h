// GenerateCall: one alignserve.v1.AlignServe/Generate stream in flight, as a
// gRPC callback-API ServerWriteReactor, so that a stream holds no thread
// while it waits for tokens or for its client.
//
// Flow: the request is submitted to the AsyncEngine; the RequestStream's
// notify hook (engine thread) only counts the event and posts a Drain to the
// SerialExecutor. Drain pops what the engine queued, turns it into
// GenerateResponse messages (a choice's tokens that arrived together are
// merged into one message) and starts the next write. At most one write is
// in flight; while it is, nothing is popped, so a slow client is paced by
// HTTP/2 flow control rather than by server memory.
//
// Bounded memory (ROBUSTNESS.md item 20): the events the engine queued while
// a write was pending are counted; past max_unread_events the client is
// taken to have stopped reading: the engine request is aborted (its KV
// blocks freed within one step) and the RPC ends with RESOURCE_EXHAUSTED.
// A cancelled RPC (client gone, deadline) aborts the engine request too.
// The last message has `finished` and `usage`; an engine error ends the RPC
// with that error's status after the messages already built.
// Policy requests (OpenAiRequest::policies): the engine streams nothing while
// the policy runs, then each chosen completion whole (index = its place among
// the policy's choices); the last message also carries the policy's name and
// report (GenerateResponse.alignment), which the serving metrics record.
//
// Thread-safety: all state is touched on the SerialExecutor's thread only;
// gRPC reactions (OnWriteDone, OnCancel, OnDone) and the notify hook post
// there. The object keeps itself alive until OnDone's work ran.
#ifndef ALIGNSERVE_SERVER_GRPC_GENERATE_CALL_H_
#define ALIGNSERVE_SERVER_GRPC_GENERATE_CALL_H_

#include <grpcpp/support/server_callback.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "alignserve/v1/alignserve.pb.h"
#include "engine/async_engine.h"
#include "models/tokenizer/tokenizer.h"
#include "server/admission_counter.h"
#include "server/openai_request.h"
#include "server/serial_executor.h"
#include "server/serving_metrics.h"

namespace alignserve {

using GenerateWriter = grpc::ServerWriteReactor<v1::GenerateResponse>;

// A Generate reactor that only finishes with `status` (refused requests).
GenerateWriter* FinishedGenerateWriter(const grpc::Status& status);

class GenerateCall : public GenerateWriter, public std::enable_shared_from_this<GenerateCall> {
 public:
  // Submits `request` (one prompt, params validated, its policy if any) and
  // returns the reactor for gRPC; a submission the engine refuses finishes
  // at once.
  // `engine`, `tokenizer` and `executor` must outlive every call.
  static GenerateWriter* Start(OpenAiRequest request, AsyncEngine& engine,
                               const Tokenizer* tokenizer, SerialExecutor& executor,
                               int64_t max_unread_events, std::shared_ptr<ServingMetrics> metrics,
                               AdmissionCounter::Slot slot);

  GenerateCall(AsyncEngine& engine, const Tokenizer* tokenizer, SerialExecutor& executor,
               int64_t max_unread_events, int prompt_tokens,
               std::shared_ptr<ServingMetrics> metrics);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  void Notified();  // engine thread
  void Drain();
  void Merge(StreamEvent& event);
  void WriteNext();
  void End(const grpc::Status& status);  // aborts the engine request if it runs, finishes the RPC

  AsyncEngine& engine_;
  const Tokenizer* tokenizer_;
  SerialExecutor& executor_;
  const int64_t max_unread_events_;
  const int prompt_tokens_;
  std::shared_ptr<RequestStream> stream_;  // set once in Start, before the hook

  std::atomic<int64_t> unread_{0};         // events pushed since the last Drain popped
  std::atomic<bool> drain_posted_{false};  // a Drain is queued on the executor

  // Executor thread only.
  std::deque<v1::GenerateResponse> outbox_;  // built, not yet written; at most one per choice
  v1::GenerateResponse writing_;             // the message of the write in flight
  bool write_in_flight_ = false;
  bool engine_done_ = false;  // the terminal event was popped
  bool finishing_ = false;    // Finish was called
  grpc::Status final_status_;
  int32_t completion_tokens_ = 0;
  std::string policy_name_;  // "" : no policy
  // Timing for the serving metrics, from the engine's event times.
  std::shared_ptr<ServingMetrics> metrics_;
  std::chrono::steady_clock::time_point submitted_, first_token_, last_event_;
  std::vector<double> gaps_;
  std::shared_ptr<GenerateCall> self_;  // keeps this alive until OnDone
  // The queue cap's count: released when the engine is done with the
  // request (its terminal event popped) or the RPC ends, whichever is first,
  // as the HTTP front end releases it before writing its answer.
  AdmissionCounter::Slot slot_;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_SERVER_GRPC_GENERATE_CALL_H_
