#include "kernels/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ALIGNSERVE_CPU_RELAX() _mm_pause()
#else
#define ALIGNSERVE_CPU_RELAX() std::this_thread::yield()
#endif

namespace alignserve {

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads <= 0) num_threads = std::max(1u, std::thread::hardware_concurrency());
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(wake_mu_);
    stop_.store(true);
  }
  wake_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

bool ThreadPool::AwaitJob(uint64_t seen) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point deadline = Clock::now() + std::chrono::microseconds(kSpinMicros);
  for (int i = 0;; ++i) {
    if (generation_.load(std::memory_order_acquire) != seen) return true;
    if (stop_.load(std::memory_order_relaxed)) return false;
    ALIGNSERVE_CPU_RELAX();
    if ((i & 63) == 63 && Clock::now() > deadline) break;
  }
  // Sleep. sleeping_ is raised before the generation is re-checked under the
  // lock, so a dispatcher that bumps the generation either sees a sleeper
  // (and notifies under the lock) or is seen here.
  std::unique_lock<std::mutex> lock(wake_mu_);
  sleeping_.fetch_add(1);
  wake_cv_.wait(lock, [&] { return stop_.load() || generation_.load() != seen; });
  sleeping_.fetch_sub(1);
  return !stop_.load();
}

void ThreadPool::RunChunks() {
  for (int64_t c; (c = next_chunk_.fetch_add(1, std::memory_order_relaxed)) < job_.num_chunks;) {
    // Even cuts: chunk sizes differ by at most one item.
    (*job_.fn)(c * job_.n / job_.num_chunks, (c + 1) * job_.n / job_.num_chunks);
  }
}

void ThreadPool::WorkerLoop() {
  uint64_t seen = 0;
  while (AwaitJob(seen)) {
    seen = generation_.load(std::memory_order_acquire);
    // Join only a job that is still open and still the one we woke for.
    // active_ is raised before closed_ is read; the caller sets closed_
    // before it reads active_: one of the two sees the other (seq_cst).
    active_.fetch_add(1);
    if (!closed_.load() && generation_.load() == seen) RunChunks();
    active_.fetch_sub(1);
  }
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  int64_t max_chunks =
      std::min<int64_t>((n + grain - 1) / grain, int64_t{kChunksPerThread} * num_threads());
  // A whole number of chunks per thread, so that equal items split evenly
  // (3 chunks on 2 threads would leave one thread two thirds of the work).
  if (max_chunks > num_threads()) max_chunks -= max_chunks % num_threads();
  if (workers_.empty() || max_chunks <= 1) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> call_lock(call_mu_);
  job_ = Job{&fn, n, max_chunks};
  next_chunk_.store(0, std::memory_order_relaxed);
  closed_.store(false);
  generation_.fetch_add(1);  // publishes job_; seq_cst: before the sleeping_ read
  if (sleeping_.load() > 0) {
    std::lock_guard<std::mutex> lock(wake_mu_);
    wake_cv_.notify_all();
  }
  RunChunks();
  closed_.store(true);
  // Only chunks a worker already claimed remain; wait for them.
  for (int i = 0; active_.load() != 0; ++i) {
    ALIGNSERVE_CPU_RELAX();
    if ((i & 255) == 255) std::this_thread::yield();
  }
}

ThreadPool& DefaultThreadPool() {
  static ThreadPool* pool = [] {
    int n = 0;
    if (const char* env = std::getenv("ALIGNSERVE_NUM_THREADS")) n = std::atoi(env);
    return new ThreadPool(n);
  }();
  return *pool;
}

}  // namespace alignserve
