#include "kernels/thread_pool.h"

#include <atomic>
#include <vector>

#include <catch2/catch.hpp>

namespace alignserve {
namespace {

TEST_CASE("ParallelFor covers every index exactly once") {
  for (int threads : {1, 2, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 7, 1000}) {
      std::vector<std::atomic<int>> hits(n);
      pool.ParallelFor(n, 3, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
      });
      for (int64_t i = 0; i < n; ++i) REQUIRE(hits[i].load() == 1);
    }
  }
}

TEST_CASE("RunOnAll runs once per thread and the pool is reusable") {
  ThreadPool pool(3);
  for (int round = 0; round < 100; ++round) {
    std::atomic<int> mask{0};
    pool.RunOnAll([&](int t) { mask.fetch_or(1 << t); });
    REQUIRE(mask.load() == 0b111);
  }
}

}  // namespace
}  // namespace alignserve
