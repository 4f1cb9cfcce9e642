#include "server/admission_counter.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace alignserve {

AdmissionCounter::Slot& AdmissionCounter::Slot::operator=(Slot&& other) noexcept {
  if (this != &other) {
    Release();
    counter_ = std::move(other.counter_);
  }
  return *this;
}

void AdmissionCounter::Slot::Release() {
  if (counter_ == nullptr) return;
  counter_->in_flight_.fetch_sub(1);
  counter_.reset();
}

absl::StatusOr<AdmissionCounter::Slot> AdmissionCounter::TryAcquire() {
  // A compare-and-swap loop rather than add-then-undo, so that a refused
  // request never counts, even for a moment, against another one.
  int64_t unfinished = in_flight_.load();
  do {
    if (unfinished >= capacity_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the server has ", unfinished, " unfinished requests (--max-queued-requests ", capacity_,
          "); retry later"));
    }
  } while (!in_flight_.compare_exchange_weak(unfinished, unfinished + 1));
  if (unfinished == 0) {
    busy_since_ns_.store(std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::steady_clock::now().time_since_epoch())
                             .count());
  }
  return Slot(shared_from_this());
}

}  // namespace alignserve
