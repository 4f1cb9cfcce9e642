#include "kernels/thread_pool.h"

#include <algorithm>
#include <cstdlib>

namespace alignserve {

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads <= 0) num_threads = std::max(1u, std::thread::hardware_concurrency());
  for (int i = 1; i < num_threads; ++i) {
    workers_.emplace_back([this, i] { WorkerLoop(i); });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::WorkerLoop(int index) {
  uint64_t seen = 0;
  while (true) {
    const std::function<void(int)>* task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      task = task_;
    }
    (*task)(index);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }
}

void ThreadPool::RunOnAll(const std::function<void(int)>& fn) {
  std::lock_guard<std::mutex> call_lock(call_mu_);
  if (workers_.empty()) {
    fn(0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    task_ = &fn;
    pending_ = static_cast<int>(workers_.size());
    ++generation_;
  }
  work_cv_.notify_all();
  fn(0);
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [&] { return pending_ == 0; });
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
