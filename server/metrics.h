// Metrics: a small registry of Prometheus metric families (counters, gauges,
// histograms) and its text exposition (format version 0.0.4), written here
// because prometheus-cpp is not available.
//
// A family has a name, help text and a fixed list of label names; its
// children (one time series each, or one histogram) are created on first
// lookup by label values and live as long as the registry. Pointers to
// families and children are stable: hot paths look a child up once and keep
// the pointer.
//
//   MetricRegistry registry;
//   ASSIGN_OR_RETURN(auto* family,
//                    registry.AddCounter("alignserve:request_success", "help",
//                                        {"model_name", "finished_reason"}));
//   ASSIGN_OR_RETURN(Counter* stop, family->WithLabels({"smollm2", "stop"}));
//   stop->Inc();
//   std::string text = registry.Render();  // GET /metrics body
//
// Naming: a counter's exposed name always ends in "_total" (appended when
// the given name lacks it), as Python's prometheus_client does; so vLLM's
// `Counter("vllm:prefix_cache_queries")` and ours both scrape as
// "..._prefix_cache_queries_total".
//
// Render order is deterministic: families in registration order, children in
// creation order.
//
// Thread-safety: everything is thread-safe. Counter and Gauge updates are
// single lock-free atomic operations; Histogram::Observe takes the child's
// own mutex (so a scrape sees buckets, sum and count from the same instant)
// and never allocates. Registration and first lookups of a label set take
// a mutex and allocate; Render takes the same mutexes briefly.
#ifndef ALIGNSERVE_SERVER_METRICS_H_
#define ALIGNSERVE_SERVER_METRICS_H_

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace alignserve {

enum class MetricType { kCounter, kGauge, kHistogram };

// A monotonic total. Inc with a negative or NaN amount is ignored (a counter
// that went down would read as a reset to Prometheus' rate()).
class Counter {
 public:
  void Inc(double amount = 1.0) {
    if (amount >= 0.0) value_.fetch_add(amount, std::memory_order_relaxed);
  }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// A value that goes up and down.
class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Inc(double amount = 1.0) { value_.fetch_add(amount, std::memory_order_relaxed); }
  void Dec(double amount = 1.0) { value_.fetch_sub(amount, std::memory_order_relaxed); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Observations counted into fixed buckets. `upper_bounds` is strictly
// increasing and finite (the registry checks); the +Inf bucket is implicit.
// NaN observations are dropped: one would make _sum NaN for good.
class Histogram {
 public:
  explicit Histogram(std::span<const double> upper_bounds);

  void Observe(double value);
  // Several observations under one lock (e.g. a request's inter-token gaps).
  void ObserveMany(std::span<const double> values);

  struct Snapshot {
    std::vector<uint64_t> cumulative_counts;  // [num bounds + 1], last is +Inf
    double sum = 0.0;
    uint64_t count = 0;  // == cumulative_counts.back()
  };
  Snapshot Read() const;
  std::span<const double> upper_bounds() const { return upper_bounds_; }

 private:
  void ObserveLocked(double value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::span<const double> upper_bounds_;  // owned by the family
  mutable std::mutex mu_;
  // [num bounds + 1] per-bucket (not cumulative) counts; last is (max, +Inf).
  std::vector<uint64_t> bucket_counts_ ABSL_GUARDED_BY(mu_);
  double sum_ ABSL_GUARDED_BY(mu_) = 0.0;
};

// What every family shares; the registry renders through it.
class MetricFamilyBase {
 public:
  virtual ~MetricFamilyBase() = default;
  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  MetricType type() const { return type_; }
  const std::vector<std::string>& label_names() const { return label_names_; }

  // Appends the "# HELP", "# TYPE" lines and every child's samples.
  void Render(std::string& out) const;

 protected:
  MetricFamilyBase(std::string name, std::string help, MetricType type,
                   std::vector<std::string> label_names);
  // Checks the count and UTF-8 validity of a child's label values.
  absl::Status CheckLabelValues(const std::vector<std::string>& values) const;
  // Appends every child's samples, in creation order.
  virtual void RenderChildren(std::string& out) const = 0;

 private:
  const std::string name_;
  const std::string help_;
  const MetricType type_;
  const std::vector<std::string> label_names_;
};

// Appends one child's sample lines; `labels` is the rendered label set
// without braces ("a=\"x\",b=\"y\"", or empty).
void AppendSamples(const std::string& name, const std::string& labels, const Counter& c,
                   std::string& out);
void AppendSamples(const std::string& name, const std::string& labels, const Gauge& g,
                   std::string& out);
void AppendSamples(const std::string& name, const std::string& labels, const Histogram& h,
                   std::string& out);
// `label_names[i]="escaped values[i]"` joined by commas.
std::string RenderLabels(const std::vector<std::string>& label_names,
                         const std::vector<std::string>& values);

// One family of Counters, Gauges or Histograms.
template <typename T>
class MetricFamily final : public MetricFamilyBase {
 public:
  MetricFamily(std::string name, std::string help, MetricType type,
               std::vector<std::string> label_names, std::vector<double> upper_bounds = {})
      : MetricFamilyBase(std::move(name), std::move(help), type, std::move(label_names)),
        upper_bounds_(std::move(upper_bounds)) {}

  // The child for these label values (one per label name, valid UTF-8),
  // created on first use. InvalidArgument on a count mismatch or bad UTF-8.
  absl::StatusOr<T*> WithLabels(std::vector<std::string> values) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = index_.find(values);
    if (it != index_.end()) return children_[it->second].metric.get();
    absl::Status status = CheckLabelValues(values);
    if (!status.ok()) return status;
    Child child{RenderLabels(label_names(), values), MakeChild()};
    T* metric = child.metric.get();
    index_.emplace(std::move(values), children_.size());
    children_.push_back(std::move(child));
    return metric;
  }
  absl::StatusOr<T*> WithLabels(std::initializer_list<std::string_view> values) {
    return WithLabels(std::vector<std::string>(values.begin(), values.end()));
  }

 protected:
  void RenderChildren(std::string& out) const override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Child& child : children_) AppendSamples(name(), child.labels, *child.metric, out);
  }

 private:
  struct Child {
    std::string labels;  // rendered once at creation
    std::unique_ptr<T> metric;
  };

  std::unique_ptr<T> MakeChild() const {
    if constexpr (std::is_same_v<T, Histogram>) {
      return std::make_unique<Histogram>(upper_bounds_);
    } else {
      return std::make_unique<T>();
    }
  }

  const std::vector<double> upper_bounds_;  // histograms only
  mutable std::mutex mu_;
  std::vector<Child> children_ ABSL_GUARDED_BY(mu_);  // creation order
  absl::flat_hash_map<std::vector<std::string>, size_t> index_ ABSL_GUARDED_BY(mu_);
};

using CounterFamily = MetricFamily<Counter>;
using GaugeFamily = MetricFamily<Gauge>;
using HistogramFamily = MetricFamily<Histogram>;

class MetricRegistry {
 public:
  MetricRegistry() = default;
  MetricRegistry(const MetricRegistry&) = delete;
  MetricRegistry& operator=(const MetricRegistry&) = delete;

  // InvalidArgument for a bad metric or label name (metric names match
  // [a-zA-Z_:][a-zA-Z0-9_:]*; label names [a-zA-Z_][a-zA-Z0-9_]* and do not
  // start with "__"; a label name repeated), AlreadyExists for a name taken.
  // Counter names get "_total" appended unless they end in it.
  absl::StatusOr<CounterFamily*> AddCounter(std::string name, std::string help,
                                            std::vector<std::string> label_names);
  absl::StatusOr<GaugeFamily*> AddGauge(std::string name, std::string help,
                                        std::vector<std::string> label_names);
  // `upper_bounds`: strictly increasing, finite (the +Inf bucket is always
  // there); the label name "le" is reserved.
  absl::StatusOr<HistogramFamily*> AddHistogram(std::string name, std::string help,
                                                std::vector<std::string> label_names,
                                                std::vector<double> upper_bounds);

  // The whole exposition, text format 0.0.4 (Content-Type
  // "text/plain; version=0.0.4; charset=utf-8").
  std::string Render() const;

 private:
  absl::Status CheckNewFamily(const std::string& name,
                              const std::vector<std::string>& label_names) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  template <typename T>
  absl::StatusOr<MetricFamily<T>*> Register(std::unique_ptr<MetricFamily<T>> family);

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<MetricFamilyBase>> families_ ABSL_GUARDED_BY(mu_);
};

// Exposition helpers, public for tests and for other exposition writers.
bool IsValidMetricName(std::string_view name);
bool IsValidLabelName(std::string_view name);
// A sample value as Prometheus parses it: integers exactly ("42"), other
// finite values in the shortest form that round-trips ("0.25", "1e-07"),
// and "+Inf", "-Inf", "NaN".
std::string FormatMetricValue(double value);
// `text` with each byte that starts no valid UTF-8 sequence replaced by
// U+FFFD, so it can be a label value.
std::string ToValidUtf8(std::string_view text);
std::string EscapeLabelValue(std::string_view value);  // \\, \", \n
std::string EscapeHelp(std::string_view help);         // \\, \n

}  // namespace alignserve

#endif  // ALIGNSERVE_SERVER_METRICS_H_
