// AdmissionCounter: the one count of generation requests that the front ends
// (HTTP and gRPC) have accepted and not yet answered, held against
// --max-queued-requests. Both front ends take a Slot from the same counter
// before submitting to the engine, so a queue filled through one is full for
// the other (ROBUSTNESS.md 18). The count is the server's own, not the
// engine's stats (which lag a step): a request whose answer went out no
// longer counts, and one accepted a moment ago already does.
//
// A Slot is released once, by Release() or its destructor: a front end
// releases it when the request's answer is decided (before writing it), so a
// client that has its answer never sees its own request counted.
// Thread-safety: TryAcquire and in_flight from any thread, concurrently; a
// Slot belongs to one owner at a time (move-only) and keeps its counter
// alive.
#ifndef ALIGNSERVE_SERVER_ADMISSION_COUNTER_H_
#define ALIGNSERVE_SERVER_ADMISSION_COUNTER_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"

namespace alignserve {

class AdmissionCounter : public std::enable_shared_from_this<AdmissionCounter> {
 public:
  // An admitted request's place in the count (empty when default-made or
  // released).
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& other) noexcept : counter_(std::move(other.counter_)) {}
    Slot& operator=(Slot&& other) noexcept;
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot() { Release(); }

    void Release();
    bool held() const { return counter_ != nullptr; }

   private:
    friend class AdmissionCounter;
    explicit Slot(std::shared_ptr<AdmissionCounter> counter) : counter_(std::move(counter)) {}
    std::shared_ptr<AdmissionCounter> counter_;
  };

  // Create with std::make_shared (slots hold the counter).
  explicit AdmissionCounter(int64_t capacity) : capacity_(capacity) {}

  // A held slot while fewer than capacity() requests are in flight; else
  // ResourceExhausted saying how many are and what the cap is.
  absl::StatusOr<Slot> TryAcquire();

  int64_t in_flight() const { return in_flight_.load(); }
  int64_t capacity() const { return capacity_; }
  // When the count last went from 0 to 1: since then the server has had
  // work for the engine (a liveness probe's reference, server/engine_health.h).
  std::chrono::steady_clock::time_point busy_since() const {
    return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(busy_since_ns_.load()));
  }

 private:
  const int64_t capacity_;
  std::atomic<int64_t> in_flight_{0};
  std::atomic<int64_t> busy_since_ns_{0};  // steady_clock, since its epoch
};

}  // namespace alignserve

#endif  // ALIGNSERVE_SERVER_ADMISSION_COUNTER_H_
