// RequestStream: the consumer's end of one request submitted to the
// AsyncEngine. The engine thread pushes StreamEvents (token ids and text
// deltas, then exactly one terminal event: finished with a reason, or an
// error); any thread pops them, blocking (Next) or not (TryNext).
//
// For asynchronous front ends (an HTTP event loop, a gRPC reactor) that must
// not park a thread per stream, SetNotify installs a callback run on the
// engine thread after each push; it must be cheap and must not block (post
// to an executor and return), like gRPC's OnWriteDone.
//
// Invariants: events arrive in order; after the terminal event nothing else
// is pushed (later pushes are dropped), so a consumer stops at
// `event.finished || !event.status.ok()`.
// Thread-safety: every method is thread-safe. Push/Close are for the engine
// thread only (the AsyncEngine); the rest are for consumers.
#ifndef ALIGNSERVE_ENGINE_REQUEST_STREAM_H_
#define ALIGNSERVE_ENGINE_REQUEST_STREAM_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "engine/logprobs.h"
#include "engine/sequence.h"

namespace alignserve {

struct StreamEvent {
  int index = 0;                                  // the choice (0..n-1) these tokens belong to
  std::vector<int32_t> token_ids;                 // sampled this step (usually one)
  std::string text;                               // text delta safe to show now
  std::vector<PositionLogprobs> logprobs;         // per token, when the request asked for them
  std::vector<PositionLogprobs> prompt_logprobs;  // first event: prompt tokens after the first
  // The whole request is done (every choice); set on its last event only.
  bool finished = false;
  // Set on every event of a choice that has finished (kNone while it runs).
  FinishReason finish_reason = FinishReason::kNone;
  // A decoding policy's figures, on a policy request's last event
  // (RequestOutput::policy_report).
  std::vector<std::pair<std::string, double>> policy_report;
  absl::Status status;  // not OK: the request failed; this is the last event
  // When the engine thread pushed it (for TTFT / inter-token figures that do
  // not depend on how fast the consumer pops).
  std::chrono::steady_clock::time_point emitted_at;

  bool terminal() const { return finished || !status.ok(); }
};

class RequestStream {
 public:
  explicit RequestStream(int64_t request_id) : request_id_(request_id) {}

  RequestStream(const RequestStream&) = delete;
  RequestStream& operator=(const RequestStream&) = delete;

  int64_t request_id() const { return request_id_; }

  // Waits up to `timeout` for the next event; nullopt on timeout or once the
  // terminal event was popped and the queue is empty.
  std::optional<StreamEvent> Next(std::chrono::milliseconds timeout);
  // The next event if one is queued now.
  std::optional<StreamEvent> TryNext();
  // True once the terminal event was pushed (it may still be queued).
  bool closed() const;

  // Runs on the engine thread after every push (also for events already
  // queued when it is installed: it is called once at install if the queue
  // is not empty). Must not block and must not call back into the engine
  // synchronously in a way that waits on it.
  void SetNotify(std::function<void()> notify);

  // Engine thread only. Drops the event if the stream is already closed;
  // returns whether it was queued.
  bool Push(StreamEvent event);

 private:
  const int64_t request_id_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<StreamEvent> events_;  // guarded by mu_
  bool closed_ = false;             // guarded by mu_: terminal event pushed
  std::function<void()> notify_;    // guarded by mu_ (copied out before calling)
};

}  // namespace alignserve

#endif  // ALIGNSERVE_ENGINE_REQUEST_STREAM_H_
