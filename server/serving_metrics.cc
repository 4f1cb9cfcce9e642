#include "server/serving_metrics.h"

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/internal/raw_logging.h"
#include "alignment/policy_report_keys.h"

namespace alignserve {
namespace {

// vLLM V1's bucket bounds (vllm/v1/metrics/loggers.py), so that quantiles
// read off the same dashboards have the same resolution.
std::vector<double> TimeToFirstTokenBuckets() {
  return {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
          1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
}
std::vector<double> InterTokenLatencyBuckets() {
  return {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
          0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
}
// e2e latency and queue time share these.
std::vector<double> RequestLatencyBuckets() {
  return {0.3,  0.5,  0.8,  1.0,  1.5,   2.0,   2.5,   5.0,   10.0,   15.0,  20.0,
          30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
}

// Judge rewards are logprob("Yes") - logprob("No"): log-odds around 0,
// rarely past +-10.
std::vector<double> ChosenRewardBuckets() {
  return {-10.0, -5.0, -2.5, -1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0};
}

// The report's figure under `key`; nullopt when the policy left it out.
std::optional<double> Figure(std::span<const std::pair<std::string, double>> report,
                             std::string_view key) {
  for (const auto& [name, value] : report) {
    if (name == key) return value;
  }
  return std::nullopt;
}

// Registration of fixed, valid names cannot fail; a failure is a bug here.
template <typename T>
T* Must(absl::StatusOr<T*> result) {
  ABSL_RAW_CHECK(result.ok(), std::string(result.status().message()).c_str());
  return *result;
}

// The increment a cumulative engine total asks for; `seen` tracks the largest
// total applied, so stale snapshots add nothing.
int64_t ForwardDelta(int64_t total, int64_t& seen) {
  if (total <= seen) return 0;
  const int64_t delta = total - seen;
  seen = total;
  return delta;
}

}  // namespace

bool IsValidMetricPrefix(const std::string& prefix) {
  // Valid followed by the shortest suffix used here; an empty prefix is fine.
  return IsValidMetricName(prefix + "request_success");
}

ServingMetrics::ServingMetrics(std::string model_name, const std::string& prefix,
                               const std::vector<std::string>& policies)
    : model_name_(ToValidUtf8(model_name)) {
  const std::vector<std::string> model_label = {"model_name"};
  const std::string& m = model_name_;

  auto gauge = [&](const char* name, const char* help) {
    return Must(Must(registry_.AddGauge(prefix + name, help, model_label))->WithLabels({m}));
  };
  num_requests_running_ =
      gauge("num_requests_running", "Number of requests in model execution batches.");
  num_requests_waiting_ =
      gauge("num_requests_waiting", "Number of requests waiting to be processed.");
  kv_cache_usage_perc_ = gauge("kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.");

  auto counter = [&](const char* name, const char* help) {
    return Must(Must(registry_.AddCounter(prefix + name, help, model_label))->WithLabels({m}));
  };
  prefix_cache_queries_ = counter("prefix_cache_queries",
                                  "Prefix cache queries, in terms of number of queried blocks.");
  prefix_cache_hits_ =
      counter("prefix_cache_hits", "Prefix cache hits, in terms of number of cached blocks.");
  num_preemptions_ =
      counter("num_preemptions", "Cumulative number of preemptions from the engine.");
  pruned_sequences_ =
      counter("pruned_sequences", "Sequences pruned by decoding policies (traces aborted).");
  pruned_blocks_freed_ =
      counter("pruned_kv_blocks_freed", "KV-cache blocks freed by sequences that policies pruned.");
  prompt_tokens_ = counter("prompt_tokens", "Number of prefill tokens processed.");
  generation_tokens_ = counter("generation_tokens", "Number of generation tokens processed.");

  CounterFamily* success = Must(registry_.AddCounter(prefix + "request_success",
                                                     "Count of successfully processed requests.",
                                                     {"model_name", "finished_reason"}));
  // All three reasons exist from the start (at 0), so rate() sees the first
  // increment of each.
  success_stop_ = Must(success->WithLabels({m, "stop"}));
  success_length_ = Must(success->WithLabels({m, "length"}));
  success_abort_ = Must(success->WithLabels({m, "abort"}));

  auto histogram = [&](const char* name, const char* help, std::vector<double> bounds) {
    return Must(Must(registry_.AddHistogram(prefix + name, help, model_label, std::move(bounds)))
                    ->WithLabels({m}));
  };
  time_to_first_token_ =
      histogram("time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                TimeToFirstTokenBuckets());
  inter_token_latency_ =
      histogram("inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
                InterTokenLatencyBuckets());
  e2e_request_latency_ =
      histogram("e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
                RequestLatencyBuckets());
  request_queue_time_ =
      histogram("request_queue_time_seconds",
                "Histogram of time spent in WAITING phase for request.", RequestLatencyBuckets());

  const std::vector<std::string> policy_labels = {"model_name", "policy"};
  auto policy_counter = [&](const char* name, const char* help) {
    return Must(registry_.AddCounter(prefix + name, help, policy_labels));
  };
  policy_requests_ = policy_counter(
      "policy_requests", "Alignment policy runs finished (one per prompt of a policy request).");
  policy_tokens_generated_ = policy_counter(
      "policy_tokens_generated", "Tokens sampled by alignment policies' sequences, chosen or not.");
  policy_tokens_saved_ = policy_counter(
      "policy_tokens_saved", "Tokens alignment policies saved by stopping or pruning early.");
  policy_traces_pruned_ = policy_counter(
      "policy_traces_pruned", "Sequences alignment policies aborted before they finished.");
  policy_scoring_calls_ =
      policy_counter("policy_scoring_calls",
                     "Reward-model scoring calls of alignment policies that returned a reward.");
  policy_chosen_reward_ = Must(registry_.AddHistogram(
      prefix + "policy_chosen_reward",
      "Histogram of the reward of the completion an alignment policy returned.", policy_labels,
      ChosenRewardBuckets()));
  for (const std::string& policy : policies) SeriesOf(policy);
}

void ServingMetrics::UpdateFromEngine(const AsyncEngineStats& stats) {
  num_requests_running_->Set(stats.num_running);
  num_requests_waiting_->Set(stats.num_waiting);
  const double usage = stats.num_total_blocks > 0
                           ? static_cast<double>(stats.num_total_blocks - stats.num_free_blocks) /
                                 static_cast<double>(stats.num_total_blocks)
                           : 0.0;
  kv_cache_usage_perc_->Set(usage);

  std::lock_guard<std::mutex> lock(engine_mu_);
  num_preemptions_->Inc(
      static_cast<double>(ForwardDelta(stats.num_preemptions, seen_preemptions_)));
  prefix_cache_hits_->Inc(
      static_cast<double>(ForwardDelta(stats.prefix_cache_hit_blocks, seen_prefix_hits_)));
  prefix_cache_queries_->Inc(
      static_cast<double>(ForwardDelta(stats.prefix_cache_queried_blocks, seen_prefix_queries_)));
  pruned_sequences_->Inc(
      static_cast<double>(ForwardDelta(stats.num_pruned_sequences, seen_pruned_)));
  pruned_blocks_freed_->Inc(
      static_cast<double>(ForwardDelta(stats.pruned_blocks_freed, seen_pruned_blocks_)));
}

void ServingMetrics::OnRequestFinished(const RequestRecord& record) {
  if (record.prompt_tokens > 0) prompt_tokens_->Inc(static_cast<double>(record.prompt_tokens));
  if (record.generation_tokens > 0) {
    generation_tokens_->Inc(static_cast<double>(record.generation_tokens));
  }
  switch (record.finish_reason) {
    case FinishReason::kStop:
      success_stop_->Inc();
      break;
    case FinishReason::kLength:
      success_length_->Inc();
      break;
    case FinishReason::kAbort:
      success_abort_->Inc();
      break;
    case FinishReason::kNone:
      break;
  }
  if (record.queue_seconds.has_value()) request_queue_time_->Observe(*record.queue_seconds);
  if (record.ttft_seconds.has_value()) time_to_first_token_->Observe(*record.ttft_seconds);
  e2e_request_latency_->Observe(record.e2e_seconds);
  inter_token_latency_->ObserveMany(record.inter_token_seconds);
  if (!record.policy.empty()) OnPolicyFinished(record.policy, record.policy_report);
}

ServingMetrics::PolicySeries ServingMetrics::SeriesOf(std::string_view policy) {
  const std::vector<std::string> labels = {model_name_, ToValidUtf8(policy)};
  return PolicySeries{Must(policy_requests_->WithLabels(labels)),
                      Must(policy_tokens_generated_->WithLabels(labels)),
                      Must(policy_tokens_saved_->WithLabels(labels)),
                      Must(policy_traces_pruned_->WithLabels(labels)),
                      Must(policy_scoring_calls_->WithLabels(labels)),
                      Must(policy_chosen_reward_->WithLabels(labels))};
}

void ServingMetrics::OnPolicyFinished(std::string_view policy,
                                      std::span<const std::pair<std::string, double>> report) {
  const PolicySeries series = SeriesOf(policy);
  series.requests->Inc();
  // A figure the policy leaves out adds 0.
  series.tokens_generated->Inc(Figure(report, kReportTokensGenerated).value_or(0.0));
  series.tokens_saved->Inc(Figure(report, kReportTokensSaved).value_or(0.0));
  series.traces_pruned->Inc(Figure(report, kReportTracesPruned).value_or(0.0));
  series.scoring_calls->Inc(Figure(report, kReportNumScored).value_or(0.0));
  if (const std::optional<double> chosen = Figure(report, kReportChosenReward)) {
    series.chosen_reward->Observe(*chosen);  // NaN (unscored) is dropped
  }
}

}  // namespace alignserve
