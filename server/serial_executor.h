// SerialExecutor: one thread that runs posted closures one at a time, in the
// order they were posted. Front ends use it where a callback arrives on a
// thread that must not do the work itself (the engine thread's stream
// notify hook) and where per-request state must not be touched by two
// threads at once: every closure of every request runs on this one thread,
// like an Asio strand shared by all requests.
//
// Closures must not block. The destructor runs what is still queued, then
// joins; Post after the destructor began is a programming error.
// Thread-safety: Post from any thread, including from inside a closure.
#ifndef ALIGNSERVE_SERVER_SERIAL_EXECUTOR_H_
#define ALIGNSERVE_SERVER_SERIAL_EXECUTOR_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace alignserve {

class SerialExecutor {
 public:
  SerialExecutor();
  ~SerialExecutor();

  SerialExecutor(const SerialExecutor&) = delete;
  SerialExecutor& operator=(const SerialExecutor&) = delete;

  void Post(std::function<void()> work);
  // True on the executor's own thread.
  bool InThisThread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  void Loop();

  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> queue_;  // guarded by mu_
  bool stopping_ = false;                    // guarded by mu_
  std::thread thread_;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_SERVER_SERIAL_EXECUTOR_H_
