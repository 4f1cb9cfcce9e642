#include "server/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <utility>

#include "absl/strings/match.h"  // EndsWith on std::string
#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"

namespace alignserve {
namespace {

const char* TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

bool IsAsciiLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }

// Length of the well-formed UTF-8 sequence starting at s[i], or 0 if there
// is none (bad lead or continuation byte, truncation, overlong form,
// surrogate, above U+10FFFF).
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return 1;
  size_t extra = 0;
  uint32_t cp = 0;
  if ((c & 0xE0) == 0xC0) {
    extra = 1, cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    extra = 2, cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    extra = 3, cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + extra >= s.size()) return 0;
  for (size_t k = 1; k <= extra; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3F);
  }
  static constexpr uint32_t kMinForLength[] = {0, 0x80, 0x800, 0x10000};
  if (cp < kMinForLength[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return extra + 1;
}

// Label values may be any UTF-8 but must be UTF-8: a scraper rejects the
// whole exposition otherwise.
bool IsValidUtf8(std::string_view s) {
  for (size_t i = 0, n = 0; i < s.size(); i += n) {
    n = Utf8SequenceLength(s, i);
    if (n == 0) return false;
  }
  return true;
}

absl::Status BadMetricName(std::string_view name) {
  return absl::InvalidArgumentError(absl::StrCat("invalid metric name \"", std::string(name),
                                                 "\" (want [a-zA-Z_:][a-zA-Z0-9_:]*)"));
}

void AppendSampleLine(std::string_view name, std::string_view suffix, std::string_view labels,
                      double value, std::string& out) {
  out.append(name).append(suffix);
  if (!labels.empty()) out.append("{").append(labels).append("}");
  out.append(" ").append(FormatMetricValue(value)).append("\n");
}

}  // namespace

bool IsValidMetricName(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = IsAsciiLetter(c) || c == '_' || c == ':' || (i > 0 && IsAsciiDigit(c));
    if (!ok) return false;
  }
  return true;
}

bool IsValidLabelName(std::string_view name) {
  if (name.empty() || name.starts_with("__")) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (!(IsAsciiLetter(c) || c == '_' || (i > 0 && IsAsciiDigit(c)))) return false;
  }
  return true;
}

std::string FormatMetricValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // Below 2^53 every integer is exact in a double: print it without a
  // fraction or exponent ("1e+06" parses too, but reads badly).
  if (value == std::trunc(value) && std::fabs(value) < 9007199254740992.0) {
    return std::to_string(static_cast<int64_t>(value));
  }
  char buf[64];
  const auto result = std::to_chars(buf, buf + sizeof(buf), value);  // shortest round-trip
  return std::string(buf, result.ptr);
}

std::string ToValidUtf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const size_t n = Utf8SequenceLength(text, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD for one bad byte
      ++i;
    } else {
      out.append(text, i, n);
      i += n;
    }
  }
  return out;
}

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string EscapeHelp(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string RenderLabels(const std::vector<std::string>& label_names,
                         const std::vector<std::string>& values) {
  std::string out;
  for (size_t i = 0; i < label_names.size() && i < values.size(); ++i) {
    if (i > 0) out += ',';
    absl::StrAppend(&out, label_names[i], "=\"", EscapeLabelValue(values[i]), "\"");
  }
  return out;
}

// ---- Histogram ----

Histogram::Histogram(std::span<const double> upper_bounds)
    : upper_bounds_(upper_bounds), bucket_counts_(upper_bounds.size() + 1, 0) {}

void Histogram::ObserveLocked(double value) {
  // Bucket i holds (bounds[i-1], bounds[i]]: Prometheus' "le" is inclusive.
  const auto it = std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value);
  ++bucket_counts_[static_cast<size_t>(it - upper_bounds_.begin())];
  sum_ += value;
}

void Histogram::Observe(double value) {
  if (std::isnan(value)) return;
  std::lock_guard<std::mutex> lock(mu_);
  ObserveLocked(value);
}

void Histogram::ObserveMany(std::span<const double> values) {
  std::lock_guard<std::mutex> lock(mu_);
  for (double value : values) {
    if (!std::isnan(value)) ObserveLocked(value);
  }
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot snapshot;
  std::lock_guard<std::mutex> lock(mu_);
  snapshot.cumulative_counts.resize(bucket_counts_.size());
  uint64_t running = 0;
  for (size_t i = 0; i < bucket_counts_.size(); ++i) {
    running += bucket_counts_[i];
    snapshot.cumulative_counts[i] = running;
  }
  snapshot.sum = sum_;
  snapshot.count = running;
  return snapshot;
}

// ---- Sample rendering ----

void AppendSamples(const std::string& name, const std::string& labels, const Counter& c,
                   std::string& out) {
  AppendSampleLine(name, "", labels, c.Value(), out);
}

void AppendSamples(const std::string& name, const std::string& labels, const Gauge& g,
                   std::string& out) {
  AppendSampleLine(name, "", labels, g.Value(), out);
}

void AppendSamples(const std::string& name, const std::string& labels, const Histogram& h,
                   std::string& out) {
  const Histogram::Snapshot snapshot = h.Read();
  const std::string prefix = labels.empty() ? "" : labels + ",";
  const std::span<const double> bounds = h.upper_bounds();
  for (size_t i = 0; i <= bounds.size(); ++i) {
    const std::string le = i < bounds.size() ? FormatMetricValue(bounds[i]) : "+Inf";
    const std::string bucket_labels = absl::StrCat(prefix, "le=\"", le, "\"");
    AppendSampleLine(name, "_bucket", bucket_labels,
                     static_cast<double>(snapshot.cumulative_counts[i]), out);
  }
  AppendSampleLine(name, "_sum", labels, snapshot.sum, out);
  AppendSampleLine(name, "_count", labels, static_cast<double>(snapshot.count), out);
}

// ---- Families ----

MetricFamilyBase::MetricFamilyBase(std::string name, std::string help, MetricType type,
                                   std::vector<std::string> label_names)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)) {}

absl::Status MetricFamilyBase::CheckLabelValues(const std::vector<std::string>& values) const {
  if (values.size() != label_names_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("metric ", name_, " takes ", label_names_.size(),
                                                   " label values, got ", values.size()));
  }
  for (size_t i = 0; i < values.size(); ++i) {
    if (!IsValidUtf8(values[i])) {
      return absl::InvalidArgumentError(absl::StrCat("metric ", name_, ": value of label ",
                                                     label_names_[i], " is not valid UTF-8"));
    }
  }
  return absl::OkStatus();
}

void MetricFamilyBase::Render(std::string& out) const {
  absl::StrAppend(&out, "# HELP ", name_, " ", EscapeHelp(help_), "\n");
  absl::StrAppend(&out, "# TYPE ", name_, " ", TypeName(type_), "\n");
  RenderChildren(out);
}

// ---- Registry ----

absl::Status MetricRegistry::CheckNewFamily(const std::string& name,
                                            const std::vector<std::string>& label_names) const {
  if (!IsValidMetricName(name)) return BadMetricName(name);
  for (size_t i = 0; i < label_names.size(); ++i) {
    if (!IsValidLabelName(label_names[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("metric ", name, ": invalid label name \"", label_names[i],
                       "\" (want [a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"));
    }
    if (std::find(label_names.begin(), label_names.begin() + i, label_names[i]) !=
        label_names.begin() + i) {
      return absl::InvalidArgumentError(
          absl::StrCat("metric ", name, ": label name ", label_names[i], " repeated"));
    }
  }
  for (const auto& family : families_) {
    if (family->name() == name) {
      return absl::AlreadyExistsError(absl::StrCat("metric ", name, " already registered"));
    }
  }
  return absl::OkStatus();
}

template <typename T>
absl::StatusOr<MetricFamily<T>*> MetricRegistry::Register(std::unique_ptr<MetricFamily<T>> family) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(CheckNewFamily(family->name(), family->label_names()));
  MetricFamily<T>* result = family.get();
  families_.push_back(std::move(family));
  return result;
}

absl::StatusOr<CounterFamily*> MetricRegistry::AddCounter(std::string name, std::string help,
                                                          std::vector<std::string> label_names) {
  // Checked before the suffix: "" + "_total" would pass.
  if (!IsValidMetricName(name)) return BadMetricName(name);
  if (!absl::EndsWith(name, "_total")) name += "_total";
  return Register(std::make_unique<CounterFamily>(std::move(name), std::move(help),
                                                  MetricType::kCounter, std::move(label_names)));
}

absl::StatusOr<GaugeFamily*> MetricRegistry::AddGauge(std::string name, std::string help,
                                                      std::vector<std::string> label_names) {
  return Register(std::make_unique<GaugeFamily>(std::move(name), std::move(help),
                                                MetricType::kGauge, std::move(label_names)));
}

absl::StatusOr<HistogramFamily*> MetricRegistry::AddHistogram(std::string name, std::string help,
                                                              std::vector<std::string> label_names,
                                                              std::vector<double> upper_bounds) {
  if (std::find(label_names.begin(), label_names.end(), "le") != label_names.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("histogram ", name, ": label name \"le\" is reserved for buckets"));
  }
  for (size_t i = 0; i < upper_bounds.size(); ++i) {
    if (!std::isfinite(upper_bounds[i]) || (i > 0 && upper_bounds[i] <= upper_bounds[i - 1])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "histogram ", name, ": bucket bounds must be finite and strictly increasing"));
    }
  }
  return Register(std::make_unique<HistogramFamily>(std::move(name), std::move(help),
                                                    MetricType::kHistogram, std::move(label_names),
                                                    std::move(upper_bounds)));
}

std::string MetricRegistry::Render() const {
  std::string out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& family : families_) family->Render(out);
  return out;
}

}  // namespace alignserve
