// The serving metric set: vLLM-compatible names, engine totals turned into
// counter increments, and per-request figures moving counters and
// histograms.
#include "server/serving_metrics.h"

#include <catch2/catch.hpp>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace alignserve {
namespace {

// series ("name{labels}" exactly as rendered) -> value text.
std::map<std::string, std::string> Samples(const std::string& text) {
  std::map<std::string, std::string> samples;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    samples[line.substr(0, space)] = line.substr(space + 1);
  }
  return samples;
}

std::string Value(const ServingMetrics& metrics, const std::string& series) {
  const auto samples = Samples(metrics.Render());
  const auto it = samples.find(series);
  return it == samples.end() ? "<missing " + series + ">" : it->second;
}

const std::string kM = "{model_name=\"smollm2\"}";

TEST_CASE("every vLLM-named series exists at zero before any traffic", "[serving_metrics]") {
  ServingMetrics metrics("smollm2");
  const std::string text = metrics.Render();
  for (const char* name :
       {"alignserve:num_requests_running", "alignserve:num_requests_waiting",
        "alignserve:kv_cache_usage_perc", "alignserve:prefix_cache_queries_total",
        "alignserve:prefix_cache_hits_total", "alignserve:num_preemptions_total",
        "alignserve:pruned_sequences_total", "alignserve:pruned_kv_blocks_freed_total",
        "alignserve:prompt_tokens_total", "alignserve:generation_tokens_total",
        "alignserve:time_to_first_token_seconds_count",
        "alignserve:inter_token_latency_seconds_count",
        "alignserve:e2e_request_latency_seconds_count",
        "alignserve:request_queue_time_seconds_count"}) {
    INFO(name);
    CHECK(Value(metrics, name + kM) == "0");
  }
  for (const char* reason : {"stop", "length", "abort"}) {
    CHECK(Value(metrics, std::string("alignserve:request_success_total{model_name=\"smollm2\","
                                     "finished_reason=\"") +
                             reason + "\"}") == "0");
  }
  CHECK(text.find("# TYPE alignserve:prefix_cache_queries_total counter\n") != std::string::npos);
  CHECK(text.find("# TYPE alignserve:kv_cache_usage_perc gauge\n") != std::string::npos);
  CHECK(text.find("# TYPE alignserve:time_to_first_token_seconds histogram\n") !=
        std::string::npos);
  // vLLM V1's bounds: TTFT from 1 ms to 2560 s.
  CHECK(Value(metrics,
              "alignserve:time_to_first_token_seconds_bucket{model_name=\"smollm2\","
              "le=\"0.001\"}") == "0");
  CHECK(Value(metrics,
              "alignserve:time_to_first_token_seconds_bucket{model_name=\"smollm2\","
              "le=\"2560\"}") == "0");
}

TEST_CASE("every rendered line is a HELP, TYPE or sample line", "[serving_metrics]") {
  ServingMetrics metrics("smollm2");
  const std::regex help(R"(# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*)");
  const std::regex type(R"(# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram))");
  const std::regex sample(
      R"([a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*",?)*\})? )"
      R"((-?[0-9.e+-]+|\+Inf|-Inf|NaN))");
  std::istringstream in(metrics.Render());
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    INFO(line);
    CHECK((std::regex_match(line, help) || std::regex_match(line, type) ||
           std::regex_match(line, sample)));
    ++lines;
  }
  CHECK(lines > 100);
}

TEST_CASE("engine totals become counter increments and gauges are set", "[serving_metrics]") {
  ServingMetrics metrics("smollm2");
  AsyncEngineStats stats;
  stats.num_running = 2;
  stats.num_waiting = 3;
  stats.num_free_blocks = 25;
  stats.num_total_blocks = 100;
  stats.num_preemptions = 4;
  stats.prefix_cache_hit_blocks = 10;
  stats.prefix_cache_queried_blocks = 40;
  stats.num_pruned_sequences = 3;
  stats.pruned_blocks_freed = 12;
  metrics.UpdateFromEngine(stats);
  CHECK(Value(metrics, "alignserve:pruned_sequences_total" + kM) == "3");
  CHECK(Value(metrics, "alignserve:pruned_kv_blocks_freed_total" + kM) == "12");
  CHECK(Value(metrics, "alignserve:num_requests_running" + kM) == "2");
  CHECK(Value(metrics, "alignserve:num_requests_waiting" + kM) == "3");
  CHECK(Value(metrics, "alignserve:kv_cache_usage_perc" + kM) == "0.75");
  CHECK(Value(metrics, "alignserve:num_preemptions_total" + kM) == "4");
  CHECK(Value(metrics, "alignserve:prefix_cache_hits_total" + kM) == "10");
  CHECK(Value(metrics, "alignserve:prefix_cache_queries_total" + kM) == "40");

  // Same totals again: nothing is counted twice.
  metrics.UpdateFromEngine(stats);
  CHECK(Value(metrics, "alignserve:num_preemptions_total" + kM) == "4");
  CHECK(Value(metrics, "alignserve:pruned_kv_blocks_freed_total" + kM) == "12");

  stats.num_running = 0;
  stats.num_waiting = 0;
  stats.num_free_blocks = 100;
  stats.num_preemptions = 6;
  stats.prefix_cache_queried_blocks = 50;
  metrics.UpdateFromEngine(stats);
  CHECK(Value(metrics, "alignserve:num_requests_running" + kM) == "0");
  CHECK(Value(metrics, "alignserve:kv_cache_usage_perc" + kM) == "0");
  CHECK(Value(metrics, "alignserve:num_preemptions_total" + kM) == "6");
  CHECK(Value(metrics, "alignserve:prefix_cache_hits_total" + kM) == "10");
  CHECK(Value(metrics, "alignserve:prefix_cache_queries_total" + kM) == "50");

  // An older snapshot applied late neither decrements nor recounts.
  AsyncEngineStats stale = stats;
  stale.num_preemptions = 5;
  stale.prefix_cache_queried_blocks = 45;
  metrics.UpdateFromEngine(stale);
  CHECK(Value(metrics, "alignserve:num_preemptions_total" + kM) == "6");
  CHECK(Value(metrics, "alignserve:prefix_cache_queries_total" + kM) == "50");
  stats.num_preemptions = 7;
  metrics.UpdateFromEngine(stats);
  CHECK(Value(metrics, "alignserve:num_preemptions_total" + kM) == "7");

  // An engine with no KV pool reports zero usage, not NaN.
  metrics.UpdateFromEngine(AsyncEngineStats{});
  CHECK(Value(metrics, "alignserve:kv_cache_usage_perc" + kM) == "0");
}

TEST_CASE("finished requests move tokens, successes and latency histograms", "[serving_metrics]") {
  ServingMetrics metrics("smollm2");
  const std::vector<double> gaps = {0.01, 0.02, 0.03, 0.2};
  RequestRecord r;
  r.prompt_tokens = 7;
  r.generation_tokens = 5;
  r.finish_reason = FinishReason::kStop;
  r.queue_seconds = 0.4;
  r.ttft_seconds = 0.015;
  r.e2e_seconds = 0.9;
  r.inter_token_seconds = gaps;
  metrics.OnRequestFinished(r);

  RequestRecord aborted;
  aborted.prompt_tokens = 3;
  aborted.finish_reason = FinishReason::kAbort;
  aborted.queue_seconds = 2.0;
  aborted.e2e_seconds = 2.0;  // no token came: no TTFT observation
  metrics.OnRequestFinished(aborted);

  const std::string reason =
      "alignserve:request_success_total{model_name=\"smollm2\","
      "finished_reason=";
  CHECK(Value(metrics, reason + "\"stop\"}") == "1");
  CHECK(Value(metrics, reason + "\"abort\"}") == "1");
  CHECK(Value(metrics, reason + "\"length\"}") == "0");
  CHECK(Value(metrics, "alignserve:prompt_tokens_total" + kM) == "10");
  CHECK(Value(metrics, "alignserve:generation_tokens_total" + kM) == "5");

  const std::string ttft = "alignserve:time_to_first_token_seconds";
  CHECK(Value(metrics, ttft + "_bucket{model_name=\"smollm2\",le=\"0.01\"}") == "0");
  CHECK(Value(metrics, ttft + "_bucket{model_name=\"smollm2\",le=\"0.02\"}") == "1");
  CHECK(Value(metrics, ttft + "_count" + kM) == "1");
  CHECK(Value(metrics, ttft + "_sum" + kM) == "0.015");

  const std::string itl = "alignserve:inter_token_latency_seconds";
  CHECK(Value(metrics, itl + "_bucket{model_name=\"smollm2\",le=\"0.01\"}") == "1");
  CHECK(Value(metrics, itl + "_bucket{model_name=\"smollm2\",le=\"0.025\"}") == "2");
  CHECK(Value(metrics, itl + "_bucket{model_name=\"smollm2\",le=\"0.05\"}") == "3");
  CHECK(Value(metrics, itl + "_bucket{model_name=\"smollm2\",le=\"0.2\"}") == "4");
  CHECK(Value(metrics, itl + "_count" + kM) == "4");

  const std::string e2e = "alignserve:e2e_request_latency_seconds";
  CHECK(Value(metrics, e2e + "_bucket{model_name=\"smollm2\",le=\"0.8\"}") == "0");
  CHECK(Value(metrics, e2e + "_bucket{model_name=\"smollm2\",le=\"1\"}") == "1");
  CHECK(Value(metrics, e2e + "_bucket{model_name=\"smollm2\",le=\"2\"}") == "2");
  CHECK(Value(metrics, e2e + "_sum" + kM) == "2.9");

  const std::string queue = "alignserve:request_queue_time_seconds";
  CHECK(Value(metrics, queue + "_bucket{model_name=\"smollm2\",le=\"0.5\"}") == "1");
  CHECK(Value(metrics, queue + "_count" + kM) == "2");

  // A failed request (no finish reason) counts tokens but no success.
  RequestRecord failed;
  failed.prompt_tokens = 1;
  metrics.OnRequestFinished(failed);
  CHECK(Value(metrics, "alignserve:prompt_tokens_total" + kM) == "11");
  CHECK(Value(metrics, reason + "\"stop\"}") == "1");
  CHECK(Value(metrics, reason + "\"abort\"}") == "1");
}

TEST_CASE("a policy run moves its policy's series by its report's shared figures",
          "[serving_metrics]") {
  ServingMetrics metrics("smollm2");
  CHECK(metrics.Render().find("policy=") == std::string::npos);  // none before a policy ran
  const std::vector<std::pair<std::string, double>> best_of_n = {
      {"reward_0", -1.5}, {"reward_1", 0.75},       {"chosen_index", 1},
      {"num_scored", 2},  {"tokens_generated", 16}, {"chosen_reward", 0.75}};
  const std::vector<std::pair<std::string, double>> deepconf = {
      {"traces_pruned", 3}, {"tokens_generated", 40}, {"tokens_saved", 12}, {"winner_share", 1}};
  RequestRecord r;
  r.finish_reason = FinishReason::kLength;
  r.policy = "best_of_n";
  r.policy_report = best_of_n;
  metrics.OnRequestFinished(r);
  metrics.OnRequestFinished(r);
  r.policy = "deepconf";
  r.policy_report = deepconf;
  metrics.OnRequestFinished(r);
  RequestRecord plain;  // no policy: no policy series move
  plain.finish_reason = FinishReason::kStop;
  metrics.OnRequestFinished(plain);

  const std::string bon = "{model_name=\"smollm2\",policy=\"best_of_n\"}";
  const std::string dc = "{model_name=\"smollm2\",policy=\"deepconf\"}";
  CHECK(Value(metrics, "alignserve:policy_requests_total" + bon) == "2");
  CHECK(Value(metrics, "alignserve:policy_tokens_generated_total" + bon) == "32");
  CHECK(Value(metrics, "alignserve:policy_scoring_calls_total" + bon) == "4");
  CHECK(Value(metrics, "alignserve:policy_tokens_saved_total" + bon) == "0");
  CHECK(Value(metrics, "alignserve:policy_traces_pruned_total" + bon) == "0");
  const std::string reward = "alignserve:policy_chosen_reward";
  CHECK(Value(metrics, reward + "_count" + bon) == "2");
  CHECK(Value(metrics, reward + "_sum" + bon) == "1.5");
  CHECK(Value(metrics,
              reward + "_bucket{model_name=\"smollm2\",policy=\"best_of_n\",le=\"0.5\"}") == "0");
  CHECK(Value(metrics, reward + "_bucket{model_name=\"smollm2\",policy=\"best_of_n\",le=\"1\"}") ==
        "2");
  CHECK(Value(metrics, "alignserve:policy_requests_total" + dc) == "1");
  CHECK(Value(metrics, "alignserve:policy_tokens_generated_total" + dc) == "40");
  CHECK(Value(metrics, "alignserve:policy_tokens_saved_total" + dc) == "12");
  CHECK(Value(metrics, "alignserve:policy_traces_pruned_total" + dc) == "3");
  CHECK(Value(metrics, "alignserve:policy_scoring_calls_total" + dc) == "0");
  CHECK(Value(metrics, reward + "_count" + dc) == "0");  // deepconf reports no reward
  CHECK(metrics.Render().find("# TYPE alignserve:policy_chosen_reward histogram\n") !=
        std::string::npos);
}

TEST_CASE("the policies named at construction have every series at zero", "[serving_metrics]") {
  ServingMetrics metrics("smollm2", kVllmStylePrefix, {"best_of_n", "ban_token"});
  for (const char* policy : {"best_of_n", "ban_token"}) {
    const std::string labels = std::string("{model_name=\"smollm2\",policy=\"") + policy + "\"}";
    for (const char* name :
         {"alignserve:policy_requests_total", "alignserve:policy_tokens_generated_total",
          "alignserve:policy_tokens_saved_total", "alignserve:policy_traces_pruned_total",
          "alignserve:policy_scoring_calls_total", "alignserve:policy_chosen_reward_count"}) {
      INFO(name << labels);
      CHECK(Value(metrics, name + labels) == "0");
    }
  }
  CHECK(metrics.Render().find("policy=\"deepconf\"") == std::string::npos);
}

TEST_CASE("the model name label is escaped and made valid UTF-8", "[serving_metrics]") {
  ServingMetrics metrics("my \"model\"\n\xFF");
  CHECK(metrics.model_name() == "my \"model\"\n\xEF\xBF\xBD");
  CHECK(
      metrics.Render().find(
          "alignserve:num_requests_running{model_name=\"my \\\"model\\\"\\n\xEF\xBF\xBD\"} 0\n") !=
      std::string::npos);
}

}  // namespace
}  // namespace alignserve
