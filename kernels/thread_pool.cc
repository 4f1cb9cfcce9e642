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
  for (int i = 1; i < num_threads; ++i) {
    workers_.emplace_back([this, i] { WorkerLoop(i); });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(wake_mu_);
    stop_.store(true);
  }
  wake_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

bool ThreadPool::AwaitTask(uint64_t seen) {
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

void ThreadPool::WorkerLoop(int index) {
  uint64_t seen = 0;
  while (AwaitTask(seen)) {
    seen = generation_.load(std::memory_order_acquire);
    (*task_)(index);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::RunOnAll(const std::function<void(int)>& fn) {
  std::lock_guard<std::mutex> call_lock(call_mu_);
  if (workers_.empty()) {
    fn(0);
    return;
  }
  task_ = &fn;
  pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  generation_.fetch_add(1);  // seq_cst: ordered before the sleeping_ read
  if (sleeping_.load() > 0) {
    std::lock_guard<std::mutex> lock(wake_mu_);
    wake_cv_.notify_all();
  }
  fn(0);
  for (int i = 0; pending_.load(std::memory_order_acquire) != 0; ++i) {
    ALIGNSERVE_CPU_RELAX();
    // A worker descheduled by the OS: stop burning the core it needs.
    if ((i & 1023) == 1023) std::this_thread::yield();
  }
  task_ = nullptr;
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t max_chunks = (n + grain - 1) / grain;
  const int threads = static_cast<int>(std::min<int64_t>(num_threads(), max_chunks));
  if (threads <= 1) {
    fn(0, n);
    return;
  }
  // Static partition: kernels here are uniform, and a static split keeps
  // each thread on the same rows every layer (cache friendly). The lambda
  // captures one pointer so std::function stores it without allocating.
  struct Split {
    int64_t n, per;
    int threads;
    const std::function<void(int64_t, int64_t)>* fn;
  } split{n, (n + threads - 1) / threads, threads, &fn};
  const Split* sp = &split;
  RunOnAll([sp](int t) {
    if (t >= sp->threads) return;
    const int64_t begin = t * sp->per;
    const int64_t end = std::min(sp->n, begin + sp->per);
    if (begin < end) (*sp->fn)(begin, end);
  });
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
