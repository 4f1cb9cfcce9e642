// The metric registry and its text exposition (format 0.0.4): golden output
// written by hand from the format description, escaping, histogram buckets,
// name validation, and exact totals under concurrent updates.
#include "server/metrics.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <vector>

namespace alignserve {
namespace {

TEST_CASE("a small registry renders exactly the 0.0.4 text format", "[metrics]") {
  MetricRegistry registry;
  auto requests = registry.AddCounter("test:requests", "Requests served.", {"code"});
  REQUIRE(requests.ok());
  auto temperature = registry.AddGauge("test_temperature", "Line one\nback\\slash \"quoted\"", {});
  REQUIRE(temperature.ok());
  auto latency =
      registry.AddHistogram("test_latency_seconds", "Latency.", {"path"}, {0.125, 1.0, 2.5});
  REQUIRE(latency.ok());

  (*(*requests)->WithLabels({"200"}))->Inc(3);
  (*(*requests)->WithLabels({"500"}))->Inc(0.5);
  (*(*temperature)->WithLabels({}))->Set(-1.25);
  Histogram* a = *(*latency)->WithLabels({"/a"});
  // Dyadic values so the sum is exact: 0.0625 + 0.125 + 0.75 + 3 = 3.9375.
  a->Observe(0.0625);
  a->Observe(0.125);  // on a bound: "le" is inclusive
  a->Observe(0.75);
  a->Observe(3.0);  // above every bound: only +Inf

  const std::string expected =
      "# HELP test:requests_total Requests served.\n"
      "# TYPE test:requests_total counter\n"
      "test:requests_total{code=\"200\"} 3\n"
      "test:requests_total{code=\"500\"} 0.5\n"
      "# HELP test_temperature Line one\\nback\\\\slash \"quoted\"\n"
      "# TYPE test_temperature gauge\n"
      "test_temperature -1.25\n"
      "# HELP test_latency_seconds Latency.\n"
      "# TYPE test_latency_seconds histogram\n"
      "test_latency_seconds_bucket{path=\"/a\",le=\"0.125\"} 2\n"
      "test_latency_seconds_bucket{path=\"/a\",le=\"1\"} 3\n"
      "test_latency_seconds_bucket{path=\"/a\",le=\"2.5\"} 3\n"
      "test_latency_seconds_bucket{path=\"/a\",le=\"+Inf\"} 4\n"
      "test_latency_seconds_sum{path=\"/a\"} 3.9375\n"
      "test_latency_seconds_count{path=\"/a\"} 4\n";
  CHECK(registry.Render() == expected);
}

TEST_CASE("label values escape backslash, double quote and newline", "[metrics]") {
  CHECK(EscapeLabelValue("a\\b\"c\nd") == "a\\\\b\\\"c\\nd");
  CHECK(EscapeLabelValue("plain / UTF-8 \xC3\xA9") == "plain / UTF-8 \xC3\xA9");
  CHECK(EscapeHelp("a\\b\"c\nd") == "a\\\\b\"c\\nd");  // quotes stay in help

  MetricRegistry registry;
  auto family = registry.AddGauge("g", "h", {"model_name", "x"});
  REQUIRE(family.ok());
  (*(*family)->WithLabels({"my \"model\"\n", "C:\\path"}))->Set(1);
  CHECK(registry.Render() ==
        "# HELP g h\n# TYPE g gauge\n"
        "g{model_name=\"my \\\"model\\\"\\n\",x=\"C:\\\\path\"} 1\n");
}

TEST_CASE("sample values are formatted as Prometheus parses them", "[metrics]") {
  CHECK(FormatMetricValue(0.0) == "0");
  CHECK(FormatMetricValue(-0.0) == "0");
  CHECK(FormatMetricValue(42.0) == "42");
  CHECK(FormatMetricValue(-3.0) == "-3");
  CHECK(FormatMetricValue(1e15) == "1000000000000000");
  CHECK(FormatMetricValue(9007199254740991.0) == "9007199254740991");
  CHECK(FormatMetricValue(0.1) == "0.1");
  CHECK(FormatMetricValue(2.5) == "2.5");
  CHECK(FormatMetricValue(1e-7) == "1e-07");
  CHECK(FormatMetricValue(1e300) == "1e+300");
  CHECK(std::stod(FormatMetricValue(1.0 / 3.0)) == 1.0 / 3.0);  // round-trips
  CHECK(FormatMetricValue(std::numeric_limits<double>::infinity()) == "+Inf");
  CHECK(FormatMetricValue(-std::numeric_limits<double>::infinity()) == "-Inf");
  CHECK(FormatMetricValue(std::nan("")) == "NaN");
}

TEST_CASE("histogram buckets are cumulative with sum and count", "[metrics]") {
  MetricRegistry registry;
  auto family = registry.AddHistogram("h_seconds", "h", {}, {1.0, 2.0, 4.0});
  REQUIRE(family.ok());
  Histogram* h = *(*family)->WithLabels({});
  const std::vector<double> values = {0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 100.0, -1.0};
  h->ObserveMany(values);
  h->Observe(std::nan(""));  // dropped

  const Histogram::Snapshot s = h->Read();
  CHECK(s.cumulative_counts == std::vector<uint64_t>{3, 5, 6, 8});  // le 1, 2, 4, +Inf
  CHECK(s.count == 8);
  CHECK(s.sum == 112.0);

  const std::string text = registry.Render();
  CHECK(text.find("h_seconds_bucket{le=\"1\"} 3\n") != std::string::npos);
  CHECK(text.find("h_seconds_bucket{le=\"4\"} 6\n") != std::string::npos);
  CHECK(text.find("h_seconds_bucket{le=\"+Inf\"} 8\n") != std::string::npos);
  CHECK(text.find("h_seconds_sum 112\n") != std::string::npos);
  CHECK(text.find("h_seconds_count 8\n") != std::string::npos);
}

TEST_CASE("a histogram without bounds has only the +Inf bucket", "[metrics]") {
  MetricRegistry registry;
  auto family = registry.AddHistogram("only_inf", "h", {}, {});
  REQUIRE(family.ok());
  (*(*family)->WithLabels({}))->Observe(7);
  CHECK(registry.Render() ==
        "# HELP only_inf h\n# TYPE only_inf histogram\n"
        "only_inf_bucket{le=\"+Inf\"} 1\nonly_inf_sum 7\nonly_inf_count 1\n");
}

TEST_CASE("invalid metric and label names are rejected", "[metrics]") {
  MetricRegistry registry;
  for (const char* bad : {"", "1abc", "a-b", "a b", "caf\xC3\xA9", "a{b}"}) {
    INFO(bad);
    CHECK(registry.AddGauge(bad, "h", {}).status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(registry.AddCounter(bad, "h", {}).status().code() == absl::StatusCode::kInvalidArgument);
  }
  for (const char* bad : {"", "__reserved", "a:b", "1a", "a-b"}) {
    INFO(bad);
    CHECK(registry.AddGauge("g", "h", {bad}).status().code() == absl::StatusCode::kInvalidArgument);
  }
  CHECK(registry.AddGauge("g", "h", {"x", "x"}).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(registry.AddHistogram("h", "h", {"le"}, {1}).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(registry.AddHistogram("h", "h", {}, {1, 1}).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(registry.AddHistogram("h", "h", {}, {2, 1}).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(registry.AddHistogram("h", "h", {}, {1, std::nan("")}).status().code() ==
        absl::StatusCode::kInvalidArgument);

  // Valid names, including colons and a single leading underscore.
  CHECK(registry.AddGauge("alignserve:a_b9", "h", {"_x", "model_name"}).ok());
  // Failed registrations left nothing behind.
  CHECK(registry.Render().find("# HELP g ") == std::string::npos);
}

TEST_CASE("duplicate names are rejected, counters gaining _total", "[metrics]") {
  MetricRegistry registry;
  auto c = registry.AddCounter("c", "h", {});
  REQUIRE(c.ok());
  CHECK((*c)->name() == "c_total");
  CHECK(registry.AddCounter("c_total", "h", {}).status().code() ==
        absl::StatusCode::kAlreadyExists);
  CHECK(registry.AddGauge("c_total", "h", {}).status().code() == absl::StatusCode::kAlreadyExists);
  auto d = registry.AddCounter("d_total", "h", {});
  REQUIRE(d.ok());
  CHECK((*d)->name() == "d_total");  // not doubled
}

TEST_CASE("label value count and encoding are checked per lookup", "[metrics]") {
  MetricRegistry registry;
  auto family = registry.AddCounter("c", "h", {"model_name", "finished_reason"});
  REQUIRE(family.ok());
  CHECK((*family)->WithLabels({"m"}).status().code() == absl::StatusCode::kInvalidArgument);
  CHECK((*family)->WithLabels({"m", "stop", "x"}).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK((*family)->WithLabels({"m", "\xFF"}).status().code() == absl::StatusCode::kInvalidArgument);
  CHECK((*family)->WithLabels({"m", "\xC0\xAF"}).status().code() ==  // overlong '/'
        absl::StatusCode::kInvalidArgument);
  CHECK((*family)->WithLabels({"m", "\xE2\x82"}).status().code() ==  // truncated
        absl::StatusCode::kInvalidArgument);
  // A rejected lookup created no series.
  CHECK(registry.Render() == "# HELP c_total h\n# TYPE c_total counter\n");
}

TEST_CASE("children keep their address and are rendered in creation order", "[metrics]") {
  MetricRegistry registry;
  auto family = registry.AddCounter("c", "h", {"k"});
  REQUIRE(family.ok());
  Counter* first = *(*family)->WithLabels({"z"});
  for (int i = 0; i < 1000; ++i) (*(*family)->WithLabels({std::to_string(i)}))->Inc();
  CHECK(*(*family)->WithLabels({"z"}) == first);
  first->Inc(2);
  first->Inc(-5);  // ignored: counters never go down
  first->Inc(std::nan(""));
  CHECK(first->Value() == 2);
  const std::string text = registry.Render();
  CHECK(text.find("c_total{k=\"z\"} 2\nc_total{k=\"0\"} 1\nc_total{k=\"1\"} 1\n") !=
        std::string::npos);
}

TEST_CASE("ToValidUtf8 replaces only the bad bytes", "[metrics]") {
  CHECK(ToValidUtf8("ok \xC3\xA9") == "ok \xC3\xA9");
  CHECK(ToValidUtf8("a\xFF"
                    "b") ==
        "a\xEF\xBF\xBD"
        "b");
  CHECK(ToValidUtf8("\xED\xA0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
}

std::string ThreadLabel(int t) {
  std::string label = "t";
  label += std::to_string(t);
  return label;
}

TEST_CASE("concurrent updates from several threads sum exactly", "[metrics]") {
  MetricRegistry registry;
  auto counters = registry.AddCounter("c", "h", {"k"});
  auto gauges = registry.AddGauge("g", "h", {});
  auto histograms = registry.AddHistogram("h", "h", {}, {0.5});
  REQUIRE((counters.ok() && gauges.ok() && histograms.ok()));
  Counter* counter = *(*counters)->WithLabels({"shared"});
  Gauge* gauge = *(*gauges)->WithLabels({});
  Histogram* histogram = *(*histograms)->WithLabels({});

  constexpr int kThreads = 8;
  constexpr int kIterations = 50000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Each thread also creates its own series and scrapes, concurrently
      // with the others' hot-path updates.
      Counter* own = *(*counters)->WithLabels({ThreadLabel(t)});
      for (int i = 0; i < kIterations; ++i) {
        counter->Inc();
        own->Inc(0.5);
        gauge->Inc(2);
        gauge->Dec();
        histogram->Observe((i % 2) ? 0.25 : 1.0);
        if (i % 10000 == 0) (void)registry.Render();
      }
    });
  }
  for (auto& thread : threads) thread.join();

  CHECK(counter->Value() == kThreads * kIterations);
  CHECK(gauge->Value() == kThreads * kIterations);
  const Histogram::Snapshot s = histogram->Read();
  CHECK(s.count == uint64_t{kThreads} * kIterations);
  CHECK(s.cumulative_counts[0] == uint64_t{kThreads} * kIterations / 2);
  CHECK(s.sum == kThreads * (kIterations / 2) * 1.25);
  for (int t = 0; t < kThreads; ++t) {
    CHECK((*(*counters)->WithLabels({ThreadLabel(t)}))->Value() == kIterations * 0.5);
  }
}

}  // namespace
}  // namespace alignserve
