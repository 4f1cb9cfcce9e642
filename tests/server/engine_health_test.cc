// EngineHealth's verdicts (server/engine_health.h) on hand-made stats: stuck
// with work and no progress, failing steps until one succeeds or the timeout
// passes, and healthy when idle however long ago the engine last stepped.
#include "server/engine_health.h"

#include <catch2/catch.hpp>
#include <chrono>

namespace alignserve {
namespace {

using Clock = EngineHealth::Clock;
using std::chrono::milliseconds;

AsyncEngineStats Stats(Clock::time_point last_progress, int64_t live, int64_t steps,
                       int64_t errors) {
  AsyncEngineStats s;
  s.last_progress = last_progress;
  s.num_live_streams = live;
  s.num_steps = steps;
  s.num_step_errors = errors;
  return s;
}

TEST_CASE("an idle engine is healthy however long ago it last stepped") {
  EngineHealth health(milliseconds(1000));
  const Clock::time_point t0 = Clock::now();
  CHECK(health.Check(Stats(t0, 0, 5, 0), ServerLoad{}, t0 + std::chrono::hours(1)).healthy);
}

TEST_CASE("live streams and no progress past the timeout is stuck") {
  EngineHealth health(milliseconds(1000));
  const Clock::time_point t0 = Clock::now();
  CHECK(health.Check(Stats(t0, 2, 5, 0), ServerLoad{}, t0 + milliseconds(900)).healthy);
  const HealthVerdict stuck =
      health.Check(Stats(t0, 2, 5, 0), ServerLoad{}, t0 + milliseconds(1100));
  CHECK(!stuck.healthy);
  CHECK(stuck.reason.find("no progress for 1100 ms") != std::string::npos);
}

TEST_CASE("server requests the engine never picked up count from when the server got busy") {
  EngineHealth health(milliseconds(1000));
  const Clock::time_point t0 = Clock::now();
  // The engine last stepped an hour before the request came: not stuck yet.
  const AsyncEngineStats idle = Stats(t0 - std::chrono::hours(1), 0, 5, 0);
  const ServerLoad busy{.in_flight = 1, .busy_since = t0};
  CHECK(health.Check(idle, busy, t0 + milliseconds(500)).healthy);
  CHECK(!health.Check(idle, busy, t0 + milliseconds(1500)).healthy);
  // An engine step after the request arrived restarts the clock.
  const AsyncEngineStats stepped = Stats(t0 + milliseconds(1400), 0, 6, 0);
  CHECK(health.Check(stepped, busy, t0 + milliseconds(1500)).healthy);
}

// The engine's record of its last step: failed at `failed_at`, or not.
AsyncEngineStats LastStep(Clock::time_point now, bool failed, Clock::time_point failed_at) {
  AsyncEngineStats s = Stats(now, 0, 6, 1);
  s.last_step_failed = failed;
  s.last_step_failure = failed_at;
  return s;
}

TEST_CASE("a failed step is unhealthy until a step succeeds") {
  EngineHealth health(milliseconds(1000));
  const Clock::time_point t0 = Clock::now();
  CHECK(health.Check(Stats(t0, 0, 5, 0), ServerLoad{}, t0).healthy);
  const HealthVerdict failing = health.Check(LastStep(t0, true, t0), ServerLoad{}, t0);
  CHECK(!failing.healthy);
  CHECK(failing.reason.find("forward pass failed") != std::string::npos);
  CHECK(!health.Check(LastStep(t0, true, t0), ServerLoad{}, t0 + milliseconds(500)).healthy);
  // The next step succeeded: healthy, however recent the failure.
  CHECK(health.Check(LastStep(t0, false, t0), ServerLoad{}, t0 + milliseconds(600)).healthy);
}

TEST_CASE("a failure with no traffic after it stops counting after the timeout") {
  EngineHealth health(milliseconds(1000));
  const Clock::time_point t0 = Clock::now();
  CHECK(!health.Check(LastStep(t0, true, t0), ServerLoad{}, t0).healthy);
  CHECK(health.Check(LastStep(t0, true, t0), ServerLoad{}, t0 + milliseconds(1100)).healthy);
}

TEST_CASE("the verdict depends on the last step, not on what earlier looks saw") {
  // A probe that looked before a success was published and again after a
  // later failure still sees the failure (the race the counters had).
  EngineHealth health(milliseconds(1000));
  const Clock::time_point t0 = Clock::now();
  CHECK(health.Check(Stats(t0, 0, 5, 0), ServerLoad{}, t0).healthy);
  AsyncEngineStats later = LastStep(t0, true, t0);
  later.num_steps = 9;  // successes and the failure happened in between
  later.num_step_errors = 1;
  CHECK(!health.Check(later, ServerLoad{}, t0).healthy);
  // A fresh checker (another server thread) agrees: no state between looks.
  EngineHealth other(milliseconds(1000));
  CHECK(!other.Check(later, ServerLoad{}, t0).healthy);
}

}  // namespace
}  // namespace alignserve
