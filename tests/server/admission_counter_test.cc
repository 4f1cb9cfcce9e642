// AdmissionCounter (server/admission_counter.h): the cap, release on
// destruction and move, the refusal's message, and an exact count under
// concurrent acquire / release from many threads.
#include "server/admission_counter.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

namespace alignserve {
namespace {

TEST_CASE("slots up to the capacity, then ResourceExhausted naming the cap") {
  auto counter = std::make_shared<AdmissionCounter>(2);
  absl::StatusOr<AdmissionCounter::Slot> a = counter->TryAcquire();
  absl::StatusOr<AdmissionCounter::Slot> b = counter->TryAcquire();
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(counter->in_flight() == 2);
  absl::StatusOr<AdmissionCounter::Slot> c = counter->TryAcquire();
  REQUIRE(!c.ok());
  CHECK(absl::IsResourceExhausted(c.status()));
  CHECK(c.status().message() ==
        "the server has 2 unfinished requests (--max-queued-requests 2); retry later");
  CHECK(counter->in_flight() == 2);  // a refusal takes no slot
  a->Release();
  a->Release();  // once only
  CHECK(counter->in_flight() == 1);
  CHECK(counter->TryAcquire().ok());  // the temporary is released at once
  CHECK(counter->in_flight() == 1);
}

TEST_CASE("a slot is released by its destructor, and moves without double counting") {
  auto counter = std::make_shared<AdmissionCounter>(4);
  {
    AdmissionCounter::Slot outer;
    CHECK(!outer.held());
    {
      AdmissionCounter::Slot inner = *counter->TryAcquire();
      CHECK(inner.held());
      outer = std::move(inner);
      CHECK(!inner.held());
    }
    CHECK(counter->in_flight() == 1);
    AdmissionCounter::Slot other = *counter->TryAcquire();
    outer = std::move(other);  // the slot outer held is released
    CHECK(counter->in_flight() == 1);
  }
  CHECK(counter->in_flight() == 0);
}

TEST_CASE("busy_since marks the move from idle to busy only") {
  auto counter = std::make_shared<AdmissionCounter>(4);
  AdmissionCounter::Slot first = *counter->TryAcquire();
  const auto since = counter->busy_since();
  CHECK(since.time_since_epoch().count() > 0);
  AdmissionCounter::Slot second = *counter->TryAcquire();
  CHECK(counter->busy_since() == since);
}

TEST_CASE("concurrent acquire and release never exceed the cap and end at zero") {
  auto counter = std::make_shared<AdmissionCounter>(3);
  std::atomic<int64_t> held{0};  // slots held right now, counted by the test
  std::atomic<int64_t> peak{0};
  std::atomic<int64_t> admitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        absl::StatusOr<AdmissionCounter::Slot> slot = counter->TryAcquire();
        if (!slot.ok()) continue;
        admitted.fetch_add(1);
        const int64_t now = held.fetch_add(1) + 1;
        CHECK(counter->in_flight() <= 3);  // never over the cap, even for a moment
        int64_t seen = peak.load();
        while (now > seen && !peak.compare_exchange_weak(seen, now)) {
        }
        held.fetch_sub(1);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  CHECK(counter->in_flight() == 0);
  CHECK(peak.load() <= 3);
  CHECK(admitted.load() > 0);
}

}  // namespace
}  // namespace alignserve
