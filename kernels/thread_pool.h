// A fixed pool of worker threads for data-parallel CPU kernels.
//
// ParallelFor splits [0, n) into contiguous chunks, runs them on the workers
// and the calling thread, and returns when all are done. It is meant for
// kernel-level parallelism inside one engine step: one caller at a time
// (the engine thread); concurrent ParallelFor calls from several threads are
// serialized by an internal mutex.
#ifndef ALIGNSERVE_KERNELS_THREAD_POOL_H_
#define ALIGNSERVE_KERNELS_THREAD_POOL_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace alignserve {

class ThreadPool {
 public:
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

  std::mutex call_mu_;  // one ParallelFor / RunOnAll at a time
  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  const std::function<void(int)>* task_ = nullptr;  // GUARDED_BY(mu_)
  uint64_t generation_ = 0;                          // GUARDED_BY(mu_)
  int pending_ = 0;                                  // GUARDED_BY(mu_)
  bool stop_ = false;                                // GUARDED_BY(mu_)
  std::vector<std::thread> workers_;
};

// The process-wide pool used by the CPU backend; sized by
// ALIGNSERVE_NUM_THREADS or the hardware thread count.
ThreadPool& DefaultThreadPool();

}  // namespace alignserve

#endif  // ALIGNSERVE_KERNELS_THREAD_POOL_H_
