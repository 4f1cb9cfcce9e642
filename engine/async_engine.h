// AsyncEngine: the LlmEngine behind one engine thread. That thread alone
// touches the LlmEngine (scheduler, KV block pool, sampler state); every
// other thread talks to it through two queues (new requests, aborts) and
// reads results from per-request RequestStreams (DESIGN.md, "Threads").
//
// Engine thread loop: drain the queues (add, then abort), wait on a
// condition variable while nothing is unfinished, else Step() and push each
// request's output to its stream. An abort is applied before the next step,
// so the request's KV blocks are free within one step. A failed Step aborts
// the requests of that step (LlmEngine's contract); each of them gets an
// error event and the engine keeps serving the rest. An AddRequest error
// (bad sampling params, token id outside the vocabulary, prompt too long)
// reaches the caller as the stream's error event.
//
// Shutdown(drain_timeout): Submit then returns Unavailable; requests in
// flight (including those queued but not yet added) run until they finish
// or the timeout passes, then the rest are aborted (finish reason kAbort)
// and the thread is joined. The destructor calls Shutdown(0).
//
// Thread-safety: Submit, Abort, stats and Shutdown may be called from any
// thread, concurrently. RequestStream has its own contract.
#ifndef ALIGNSERVE_ENGINE_ASYNC_ENGINE_H_
#define ALIGNSERVE_ENGINE_ASYNC_ENGINE_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/llm_engine.h"
#include "engine/request_stream.h"
#include "engine/sampling_params.h"

namespace alignserve {

// A copy taken by the engine thread once per loop iteration.
struct AsyncEngineStats {
  int32_t num_running = 0;  // sequences in the running set
  int32_t num_waiting = 0;  // sequences waiting (incl. preempted)
  int32_t num_free_blocks = 0;
  int32_t num_total_blocks = 0;
  int64_t num_preemptions = 0;
  int64_t prefix_cache_hit_blocks = 0;
  int64_t prefix_cache_queried_blocks = 0;
  int64_t num_pruned_sequences = 0;  // EngineStats: sequences a policy pruned
  int64_t pruned_blocks_freed = 0;   // and the KV blocks that freed
  int64_t num_steps = 0;             // non-empty LlmEngine steps
  int64_t num_step_errors = 0;       // Steps that returned an error
  // The most recent step returned an error (a later successful step clears
  // it), and when: a liveness probe reads these rather than comparing
  // counters between its own looks, which races with publication.
  int64_t num_live_streams = 0;  // submitted and not yet terminated
  // Last time the engine thread finished a loop iteration (a step, a drain
  // of the queues, or a wake-up): a liveness probe compares it with now
  // while work is pending.
  std::chrono::steady_clock::time_point last_progress;
  bool last_step_failed = false;
  std::chrono::steady_clock::time_point last_step_failure;
};

// One step's output of a choice as its stream event (what RunStep pushes).
StreamEvent ToStreamEvent(RequestOutput&& output);

class AsyncEngine {
 public:
  // Takes the engine and starts the engine thread. The engine must be idle
  // (no requests) and whatever it borrows must outlive this object.
  static absl::StatusOr<std::unique_ptr<AsyncEngine>> Create(std::unique_ptr<LlmEngine> engine);
  ~AsyncEngine();

  AsyncEngine(const AsyncEngine&) = delete;
  AsyncEngine& operator=(const AsyncEngine&) = delete;

  // Queues a request and returns its stream at once. Unavailable after
  // Shutdown began; InvalidArgument for an empty prompt. Other bad input is
  // reported by the engine thread as the stream's error event.
  absl::StatusOr<std::shared_ptr<RequestStream>> Submit(std::vector<int32_t> prompt,
                                                        const SamplingParams& params);
  // The same with the request's other fields, e.g. a DecodingPolicy: the
  // policy passes to the engine thread, which alone calls its hooks; the
  // caller must not touch it afterwards (unless it is thread-safe itself).
  // A policy request's stream gets its chosen choices whole, at the end
  // (LlmEngine's RequestOutput contract), the last event with the report.
  absl::StatusOr<std::shared_ptr<RequestStream>> Submit(std::vector<int32_t> prompt,
                                                        RequestParams params);
  // Queues an abort of a submitted request (its stream ends with kAbort,
  // unless it already finished). A no-op for unknown or finished ids.
  void Abort(int64_t request_id);

  // Idempotent; safe from any thread but the engine thread (a stream's
  // notify hook must not call it). Later calls wait for the first to end.
  void Shutdown(std::chrono::milliseconds drain_timeout);

  AsyncEngineStats stats() const;

 private:
  struct PendingAdd {
    std::vector<int32_t> prompt;
    RequestParams params;
    std::shared_ptr<RequestStream> stream;
  };

  explicit AsyncEngine(std::unique_ptr<LlmEngine> engine);

  void Loop();
  // Takes the queued work under mu_; waits first when there is none and the
  // engine is idle. Returns false when the loop should exit.
  // Sets past_deadline_ once Shutdown's drain timeout has passed.
  bool TakeWork(std::vector<PendingAdd>& adds, std::vector<int64_t>& aborts);
  void ApplyAdds(std::vector<PendingAdd>& adds);
  void ApplyAborts(const std::vector<int64_t>& aborts);
  void AbortAll();
  void RunStep();
  void FailRequestsLostInStep(const absl::Status& error);
  void PublishStats();

  // Engine thread state: touched only by Loop and what it calls.
  std::unique_ptr<LlmEngine> engine_;
  absl::flat_hash_map<int64_t, std::shared_ptr<RequestStream>> live_;
  int64_t num_step_errors_ = 0;
  bool last_step_failed_ = false;
  std::chrono::steady_clock::time_point last_step_failure_;
  bool past_deadline_ = false;

  // Shared state.
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::vector<PendingAdd> adds_;  // guarded by mu_
  std::vector<int64_t> aborts_;   // guarded by mu_
  int64_t next_request_id_ = 1;   // guarded by mu_
  bool accepting_ = true;         // guarded by mu_
  // Set by Shutdown: after this point the remaining requests are aborted.
  std::optional<std::chrono::steady_clock::time_point> drain_deadline_;  // guarded by mu_
  AsyncEngineStats stats_;                                               // guarded by mu_

  std::mutex join_mu_;  // serializes Shutdown's join
  std::thread thread_;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_ENGINE_ASYNC_ENGINE_H_
