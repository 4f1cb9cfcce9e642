// A fixed pool of worker threads for data-parallel CPU kernels.
//
// ParallelFor splits [0, n) into contiguous chunks, runs them on the workers
// and the calling thread, and returns when all are done. A forward pass
// calls it hundreds of times per token, each for a few microseconds of
// work, so hand-off must cost far less than a condition-variable wake-up:
// workers spin on an atomic generation counter for a short while after each
// task (kSpinMicros) and only then sleep; the caller spins for completion.
// Idle pools sleep, so an idle server burns no CPU.
//
// One caller at a time (the engine thread); concurrent ParallelFor / RunOnAll
// calls from several threads are serialized by an internal mutex.
#ifndef ALIGNSERVE_KERNELS_THREAD_POOL_H_
#define ALIGNSERVE_KERNELS_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace alignserve {

class ThreadPool {
 public:
  // How long a worker keeps polling for the next task before it sleeps.
  static constexpr int kSpinMicros = 200;

  // num_threads counts the caller: 1 means no workers, everything inline.
  // 0 means one per hardware thread.
  explicit ThreadPool(int num_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end) over disjoint chunks covering [0, n). Chunks hold at
  // least `grain` items (the last may hold fewer).
  void ParallelFor(int64_t n, int64_t grain,
                   const std::function<void(int64_t begin, int64_t end)>& fn);

  // Calls fn(thread_index) once on each of num_threads() threads.
  void RunOnAll(const std::function<void(int thread_index)>& fn);

 private:
  void WorkerLoop(int index);
  // Waits until generation_ moves past `seen` (spinning, then sleeping);
  // false when the pool is stopping.
  bool AwaitTask(uint64_t seen);

  std::mutex call_mu_;  // one ParallelFor / RunOnAll at a time
  const std::function<void(int)>* task_ = nullptr;  // published by generation_
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};   // workers still running the current task
  std::atomic<int> sleeping_{0};  // workers blocked on wake_cv_
  std::atomic<bool> stop_{false};
  std::mutex wake_mu_;
  std::condition_variable wake_cv_;
  std::vector<std::thread> workers_;
};

// The process-wide pool used by the CPU backend; sized by
// ALIGNSERVE_NUM_THREADS or the hardware thread count.
ThreadPool& DefaultThreadPool();

}  // namespace alignserve

#endif  // ALIGNSERVE_KERNELS_THREAD_POOL_H_
