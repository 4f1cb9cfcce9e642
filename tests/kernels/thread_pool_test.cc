#include "kernels/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

namespace alignserve {
namespace {

TEST_CASE("ParallelFor covers every index exactly once") {
  for (int threads : {1, 2, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 7, 1000}) {
      for (int64_t grain : {1, 3, 2000}) {
        std::vector<std::atomic<int>> hits(n);
        pool.ParallelFor(n, grain, [&](int64_t b, int64_t e) {
          REQUIRE(b < e);
          for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i) REQUIRE(hits[i].load() == 1);
      }
    }
  }
}

TEST_CASE("chunks come in whole multiples of the thread count") {
  // 240 items at a grain of 113 would make 3 chunks; on 2 threads one of
  // them would do two thirds of the work. Expect 2 chunks of 120 instead.
  ThreadPool pool(2);
  std::mutex mu;
  std::vector<int64_t> sizes;
  pool.ParallelFor(240, 113, [&](int64_t b, int64_t e) {
    std::lock_guard<std::mutex> lock(mu);
    sizes.push_back(e - b);
  });
  CHECK(sizes == std::vector<int64_t>{120, 120});
  // Past kChunksPerThread chunks per thread the cap is already a multiple.
  sizes.clear();
  pool.ParallelFor(1000, 1, [&](int64_t b, int64_t e) {
    std::lock_guard<std::mutex> lock(mu);
    sizes.push_back(e - b);
  });
  CHECK(sizes.size() == static_cast<size_t>(ThreadPool::kChunksPerThread * 2));
  // Cuts are even: 36 items in 8 chunks are 4 of 4 and 4 of 5 (ceil-sized
  // chunks would be seven of 5 and one of 1, and a thread could draw 20).
  sizes.clear();
  pool.ParallelFor(36, 1, [&](int64_t b, int64_t e) {
    std::lock_guard<std::mutex> lock(mu);
    sizes.push_back(e - b);
  });
  std::sort(sizes.begin(), sizes.end());
  CHECK(sizes == std::vector<int64_t>{4, 4, 4, 4, 5, 5, 5, 5});
}

TEST_CASE("the pool is reusable across many jobs and after its workers slept") {
  ThreadPool pool(3);
  std::atomic<int64_t> sum{0};
  for (int round = 0; round < 2000; ++round) {
    pool.ParallelFor(64, 1, [&](int64_t b, int64_t e) { sum.fetch_add(e - b); });
    // Every so often let the workers fall asleep, then wake them again.
    if (round % 500 == 0) {
      std::this_thread::sleep_for(std::chrono::microseconds(2 * ThreadPool::kSpinMicros));
    }
  }
  CHECK(sum.load() == 2000 * 64);
}

TEST_CASE("a job finishes even when the workers are busy elsewhere") {
  // More pools than cores: workers of one pool are often descheduled while
  // another pool runs; the caller then does the unclaimed chunks itself.
  std::vector<std::thread> callers;
  std::atomic<int64_t> total{0};
  for (int c = 0; c < 3; ++c) {
    callers.emplace_back([&] {
      ThreadPool pool(3);
      for (int round = 0; round < 300; ++round) {
        pool.ParallelFor(100, 1, [&](int64_t b, int64_t e) { total.fetch_add(e - b); });
      }
    });
  }
  for (std::thread& t : callers) t.join();
  CHECK(total.load() == 3 * 300 * 100);
}

}  // namespace
}  // namespace alignserve
