#include "server/engine_health.h"

#include "absl/strings/str_cat.h"

namespace alignserve {
namespace {

using Clock = EngineHealth::Clock;

// How long the engine has had work without finishing a loop iteration (zero
// when it has none). Work is the engine's own live streams or the server's
// unanswered requests; a server that was idle counts from when it got busy.
Clock::duration StalledFor(const AsyncEngineStats& stats, const ServerLoad& load,
                           Clock::time_point now) {
  if (stats.num_live_streams == 0 && load.in_flight == 0) return Clock::duration::zero();
  Clock::time_point since = stats.last_progress;
  if (load.in_flight > 0 && load.busy_since > since) since = load.busy_since;
  return now - since;
}

}  // namespace

HealthVerdict EngineHealth::Check(const AsyncEngineStats& stats, const ServerLoad& load,
                                  Clock::time_point now) {
  HealthVerdict v;
  const Clock::duration stalled_for = StalledFor(stats, load, now);
  if (stalled_for > liveness_timeout_) {
    v.healthy = false;
    v.reason = absl::StrCat(
        "the engine has unfinished requests but made no progress for ",
        std::chrono::duration_cast<std::chrono::milliseconds>(stalled_for).count(), " ms");
  } else if (stats.last_step_failed && now - stats.last_step_failure <= liveness_timeout_) {
    v.healthy = false;
    v.reason = absl::StrCat("the engine's last forward pass failed (", stats.num_step_errors,
                            " failed steps so far) and none has succeeded since");
  }
  return v;
}

}  // namespace alignserve
