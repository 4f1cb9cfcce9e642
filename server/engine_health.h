// EngineHealth: the liveness verdict behind GET /health, from the engine's
// published stats (AsyncEngineStats) and the server's own count of
// unanswered requests (server/admission_counter.h). The engine is unhealthy
// when
//  - it is stuck: it has unfinished requests but finished no loop iteration
//    for longer than the liveness timeout (a hung forward pass, a deadlock).
//    The engine publishes its stats after each iteration, so a request whose
//    very first step hangs is not yet among its live streams; the server's
//    own count covers that case: it has requests the engine has not finished
//    (the front ends release a slot when the engine is done with it) and no
//    iteration finished since max(last progress, when the server got busy)
//    for longer than the timeout;
//  - or its forward passes are failing: its most recent step failed
//    (AsyncEngineStats::last_step_failed) and that failure is younger than
//    the liveness timeout. A later successful step (or the timeout passing
//    idle) makes it healthy again, so one bad request does not get a
//    healthy replica restarted, while an engine whose every step fails
//    stays 503. The verdict reads the engine's own record of its last step,
//    never counters compared between looks (which raced with when the
//    engine published them).
// Thread-safety: Check may be called from any thread, concurrently.
#ifndef ALIGNSERVE_SERVER_ENGINE_HEALTH_H_
#define ALIGNSERVE_SERVER_ENGINE_HEALTH_H_

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include "engine/async_engine.h"

namespace alignserve {

// What the server itself knows of its load.
struct ServerLoad {
  int64_t in_flight = 0;                             // requests accepted and not yet answered
  std::chrono::steady_clock::time_point busy_since;  // in_flight last went 0 -> 1
};

struct HealthVerdict {
  bool healthy = true;
  std::string reason;  // why not, for the 503 body; empty when healthy
};

class EngineHealth {
 public:
  using Clock = std::chrono::steady_clock;

  explicit EngineHealth(std::chrono::milliseconds liveness_timeout)
      : liveness_timeout_(liveness_timeout) {}

  HealthVerdict Check(const AsyncEngineStats& stats, const ServerLoad& load, Clock::time_point now);

 private:
  const std::chrono::milliseconds liveness_timeout_;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_SERVER_ENGINE_HEALTH_H_
