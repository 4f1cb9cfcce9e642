// A fixed pool of worker threads for data-parallel CPU kernels.
//
// ParallelFor cuts [0, n) into chunks that the caller and the workers claim
// one at a time from a shared counter. A forward pass calls it hundreds of
// times per token, each for a few microseconds of work, so two things
// matter:
//   - hand-off cost: workers spin on an atomic generation counter for a
//     short while after each job (kSpinMicros) and only then sleep, so the
//     next job starts without a condition-variable wake-up;
//   - absent workers: on a loaded machine a worker may be descheduled for a
//     whole time slice. Because chunks are claimed, the caller simply does
//     the unclaimed ones itself and waits only for chunks already in
//     progress; a worker that arrives after the job closed does nothing.
// Idle pools sleep, so an idle server burns no CPU.
//
// One caller at a time (the engine thread); concurrent ParallelFor calls
// from several threads are serialized by an internal mutex.
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
  // How long a worker keeps polling for the next job before it sleeps.
  static constexpr int kSpinMicros = 200;
  // Chunks per thread: more balances uneven work and shortens the wait for
  // a descheduled worker's chunk; fewer costs fewer atomic claims.
  static constexpr int kChunksPerThread = 4;

  // num_threads counts the caller: 1 means no workers, everything inline.
  // 0 means one per hardware thread.
  explicit ThreadPool(int num_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end) over disjoint chunks covering [0, n), on any of the
  // pool's threads; returns when all are done. `grain` is the work worth a
  // chunk: [0, n) is cut into at most ceil(n / grain) chunks whose sizes
  // differ by at most one (at most kChunksPerThread per thread, and a whole
  // multiple of the thread count when more than one per thread); n <= grain
  // runs inline.
  void ParallelFor(int64_t n, int64_t grain,
                   const std::function<void(int64_t begin, int64_t end)>& fn);

 private:
  struct Job {
    const std::function<void(int64_t, int64_t)>* fn = nullptr;
    int64_t n = 0;
    int64_t num_chunks = 0;
  };

  void WorkerLoop();
  // Waits until generation_ moves past `seen` (spinning, then sleeping);
  // false when the pool is stopping.
  bool AwaitJob(uint64_t seen);
  // Claims and runs chunks of job_ until none are left.
  void RunChunks();

  std::mutex call_mu_;  // one ParallelFor at a time
  // The current job; written only while no worker can be inside it (closed_
  // set and active_ zero), published by the generation_ increment.
  Job job_;
  std::atomic<int64_t> next_chunk_{0};
  std::atomic<bool> closed_{true};  // no more workers may join the job
  std::atomic<int> active_{0};      // workers inside the current job
  std::atomic<uint64_t> generation_{0};
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
