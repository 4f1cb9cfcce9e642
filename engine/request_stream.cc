#include "engine/request_stream.h"

#include <utility>

namespace alignserve {

std::optional<StreamEvent> RequestStream::Next(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [this] { return !events_.empty() || closed_; });
  if (events_.empty()) return std::nullopt;
  StreamEvent e = std::move(events_.front());
  events_.pop_front();
  return e;
}

std::optional<StreamEvent> RequestStream::TryNext() {
  std::lock_guard<std::mutex> lock(mu_);
  if (events_.empty()) return std::nullopt;
  StreamEvent e = std::move(events_.front());
  events_.pop_front();
  return e;
}

bool RequestStream::closed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closed_;
}

void RequestStream::SetNotify(std::function<void()> notify) {
  bool pending = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    notify_ = notify;
    pending = !events_.empty();
  }
  // Events pushed before the hook existed would otherwise never be signalled.
  if (pending && notify) notify();
}

bool RequestStream::Push(StreamEvent event) {
  std::function<void()> notify;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return false;
    closed_ = event.terminal();
    event.emitted_at = std::chrono::steady_clock::now();
    events_.push_back(std::move(event));
    notify = notify_;
  }
  cv_.notify_all();
  // Called outside the lock so the hook may pop from this stream.
  if (notify) notify();
  return true;
}

}  // namespace alignserve
