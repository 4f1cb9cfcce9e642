// ServingMetrics: the server's Prometheus metric set, named after vLLM V1's
// (prefix "alignserve:" for "vllm:") so its Grafana dashboards carry over by
// replacing the prefix (serve --metrics-prefix picks another, e.g.
// "alignserve_" for promtool's lint). Every series has a model_name label.
//
//   gauges      alignserve:num_requests_running, num_requests_waiting,
//               kv_cache_usage_perc (0..1, used blocks / total blocks)
//   counters    alignserve:prefix_cache_queries_total, prefix_cache_hits_total
//               (in KV blocks; vLLM counts tokens, the hit ratio is the same
//               up to partial blocks), num_preemptions_total,
//               pruned_sequences_total and pruned_kv_blocks_freed_total
//               (sequences a decoding policy pruned, and the KV blocks that
//               became free when it did),
//               prompt_tokens_total, generation_tokens_total,
//               request_success_total{finished_reason=stop|length|abort}
//   histograms  alignserve:time_to_first_token_seconds,
//               inter_token_latency_seconds, e2e_request_latency_seconds,
//               request_queue_time_seconds (vLLM V1's bucket bounds)
//
// Per alignment policy, labelled {model_name, policy} (the policy's name as
// requests give it; the policies named at construction exist from the start
// at 0, any other appears with its first finished run),
// moved by the figures of each run's report under the shared keys of
// alignment/policy_report_keys.h (a key the policy leaves out adds 0):
//   counters    alignserve:policy_requests_total (policy runs finished, one
//               per prompt), policy_tokens_generated_total (tokens_generated),
//               policy_tokens_saved_total (tokens_saved),
//               policy_traces_pruned_total (traces_pruned),
//               policy_scoring_calls_total (num_scored: reward-model calls
//               that returned a reward)
//   histogram   alignserve:policy_chosen_reward (chosen_reward, where the
//               policy reports one and it is not NaN; judge rewards are
//               log-odds, so the buckets span -10..10 around 0)
//
// Two feeds: UpdateFromEngine with an AsyncEngineStats snapshot (e.g. on each
// scrape, or from a timer) sets the gauges and turns the engine's cumulative
// totals into counter increments; OnRequestFinished, called once per request
// by the front end when it sees the terminal event, moves the token counters,
// the success counter and the latency histograms. Prompt and generation
// tokens are therefore counted when a request ends, not as they are
// processed.
//
// Thread-safety: every method may be called from any thread, concurrently.
#ifndef ALIGNSERVE_SERVER_SERVING_METRICS_H_
#define ALIGNSERVE_SERVER_SERVING_METRICS_H_

#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "engine/async_engine.h"
#include "engine/sequence.h"
#include "server/metrics.h"

namespace alignserve {

// What the front end knows about one request when it ends.
struct RequestRecord {
  int64_t prompt_tokens = 0;
  int64_t generation_tokens = 0;  // over all choices
  // kStop, kLength or kAbort count in request_success_total; kNone (the
  // request failed with an error) counts tokens and latencies only.
  FinishReason finish_reason = FinishReason::kNone;
  std::optional<double> queue_seconds;  // arrival to first scheduled; unset if never
  std::optional<double> ttft_seconds;   // arrival to first token; unset if none came
  double e2e_seconds = 0.0;             // arrival to the terminal event
  // The gaps between consecutive output tokens (seconds); borrowed for the
  // call only.
  std::span<const double> inter_token_seconds;
  // A policy request: the policy's name ("" : none) and its report
  // (PolicyResult::report); borrowed for the call only.
  std::string_view policy;
  std::span<const std::pair<std::string, double>> policy_report;
};

inline constexpr char kVllmStylePrefix[] = "alignserve:";

// A prefix that keeps every name valid: [a-zA-Z_:][a-zA-Z0-9_:]*.
bool IsValidMetricPrefix(const std::string& prefix);

class ServingMetrics {
 public:
  // Label values must be UTF-8; invalid bytes in `model_name` are replaced
  // with U+FFFD so that construction cannot fail. `prefix` opens every
  // metric name and must make valid names (IsValidMetricPrefix):
  // "alignserve:" mirrors vLLM's "vllm:"; "alignserve_" satisfies
  // promtool's lint, which reserves colons for recording rules. `policies`:
  // the alignment policies served (built-in and plugins), whose series are
  // made at once so that rate() sees their first increment.
  explicit ServingMetrics(std::string model_name, const std::string& prefix = kVllmStylePrefix,
                          const std::vector<std::string>& policies = {});

  ServingMetrics(const ServingMetrics&) = delete;
  ServingMetrics& operator=(const ServingMetrics&) = delete;

  // Sets the gauges; adds to the counters what the engine's cumulative
  // totals grew by since the last call. A total smaller than the last one
  // seen (a snapshot older than one already applied) adds nothing.
  void UpdateFromEngine(const AsyncEngineStats& stats);

  // Moves the per-request series, and the per-policy ones when
  // record.policy is set.
  void OnRequestFinished(const RequestRecord& record);

  // The exposition (text format 0.0.4) for GET /metrics.
  std::string Render() const { return registry_.Render(); }

  const std::string& model_name() const { return model_name_; }

 private:
  const std::string model_name_;
  MetricRegistry registry_;

  // Children, looked up once at construction; owned by registry_.
  Gauge* num_requests_running_ = nullptr;
  Gauge* num_requests_waiting_ = nullptr;
  Gauge* kv_cache_usage_perc_ = nullptr;
  Counter* prefix_cache_queries_ = nullptr;
  Counter* prefix_cache_hits_ = nullptr;
  Counter* num_preemptions_ = nullptr;
  Counter* pruned_sequences_ = nullptr;
  Counter* pruned_blocks_freed_ = nullptr;
  Counter* prompt_tokens_ = nullptr;
  Counter* generation_tokens_ = nullptr;
  Counter* success_stop_ = nullptr;
  Counter* success_length_ = nullptr;
  Counter* success_abort_ = nullptr;
  Histogram* time_to_first_token_ = nullptr;
  Histogram* inter_token_latency_ = nullptr;
  Histogram* e2e_request_latency_ = nullptr;
  Histogram* request_queue_time_ = nullptr;
  // Per-policy families (labels model_name, policy); children are made at
  // construction or on a policy's first finished run.
  CounterFamily* policy_requests_ = nullptr;
  CounterFamily* policy_tokens_generated_ = nullptr;
  CounterFamily* policy_tokens_saved_ = nullptr;
  CounterFamily* policy_traces_pruned_ = nullptr;
  CounterFamily* policy_scoring_calls_ = nullptr;
  HistogramFamily* policy_chosen_reward_ = nullptr;

  struct PolicySeries {
    Counter* requests;
    Counter* tokens_generated;
    Counter* tokens_saved;
    Counter* traces_pruned;
    Counter* scoring_calls;
    Histogram* chosen_reward;
  };
  // The policy's children, made on first use.
  PolicySeries SeriesOf(std::string_view policy);
  void OnPolicyFinished(std::string_view policy,
                        std::span<const std::pair<std::string, double>> report);

  // The engine totals already turned into increments.
  std::mutex engine_mu_;
  int64_t seen_preemptions_ ABSL_GUARDED_BY(engine_mu_) = 0;
  int64_t seen_pruned_ ABSL_GUARDED_BY(engine_mu_) = 0;
  int64_t seen_pruned_blocks_ ABSL_GUARDED_BY(engine_mu_) = 0;
  int64_t seen_prefix_hits_ ABSL_GUARDED_BY(engine_mu_) = 0;
  int64_t seen_prefix_queries_ ABSL_GUARDED_BY(engine_mu_) = 0;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_SERVER_SERVING_METRICS_H_
