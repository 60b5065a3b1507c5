#include "common/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/status.h"

namespace baton {

namespace {

constexpr std::string_view kCounterType = "counter";
constexpr std::string_view kGaugeType = "gauge";
constexpr std::string_view kHistogramType = "histogram";

bool is_name_char(char c, bool first, bool colon_ok) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') return true;
  if (colon_ok && c == ':') return true;
  return !first && c >= '0' && c <= '9';
}

void check_label_names(std::string_view metric, const std::vector<std::string>& names,
                       bool histogram) {
  for (size_t i = 0; i < names.size(); ++i) {
    BATON_CHECK_MSG(is_valid_label_name(names[i]),
                    fmt::format("metric {}: invalid label name '{}'", metric, names[i]));
    BATON_CHECK_MSG(!histogram || names[i] != "le",
                    fmt::format("histogram {}: label 'le' is reserved", metric));
    for (size_t j = 0; j < i; ++j) {
      BATON_CHECK_MSG(names[i] != names[j],
                      fmt::format("metric {}: duplicate label '{}'", metric, names[i]));
    }
  }
}

std::shared_ptr<const std::vector<double>> checked_bounds(std::string_view metric,
                                                          std::vector<double> bounds) {
  // A trailing +Inf is implicit; accept it from callers who spell it out.
  if (!bounds.empty() && bounds.back() == std::numeric_limits<double>::infinity()) {
    bounds.pop_back();
  }
  for (size_t i = 0; i < bounds.size(); ++i) {
    BATON_CHECK_MSG(std::isfinite(bounds[i]),
                    fmt::format("histogram {}: bucket bounds must be finite", metric));
    BATON_CHECK_MSG(i == 0 || bounds[i] > bounds[i - 1],
                    fmt::format("histogram {}: bucket bounds must increase", metric));
  }
  return std::make_shared<const std::vector<double>>(std::move(bounds));
}

std::vector<std::string> names_of(const MetricLabels& labels) {
  std::vector<std::string> out;
  out.reserve(labels.size());
  for (const auto& [name, value] : labels) out.push_back(name);
  return out;
}

std::vector<std::string> values_of(const MetricLabels& labels) {
  std::vector<std::string> out;
  out.reserve(labels.size());
  for (const auto& [name, value] : labels) out.push_back(value);
  return out;
}

}  // namespace

void Counter::inc(double v) {
  if (!(v >= 0)) return;  // also rejects NaN
  value_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Histogram(std::shared_ptr<const std::vector<double>> bounds)
    : bounds_(std::move(bounds)),
      counts_(std::make_unique<std::atomic<uint64_t>[]>(bounds_->size() + 1)) {}

void Histogram::observe(double v) {
  if (std::isnan(v)) return;
  const auto& b = *bounds_;
  size_t bucket = static_cast<size_t>(std::lower_bound(b.begin(), b.end(), v) - b.begin());
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.cumulative.reserve(bounds_->size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_->size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(running);
  }
  // Derived from the buckets rather than kept separately, so a scrape never
  // shows _count disagreeing with the +Inf bucket.
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> exponential_buckets(double start, double factor, size_t count) {
  BATON_CHECK_MSG(start > 0 && factor > 1, "exponential_buckets needs start > 0, factor > 1");
  std::vector<double> out;
  out.reserve(count);
  double v = start;
  for (size_t i = 0; i < count; ++i, v *= factor) out.push_back(v);
  return out;
}

std::vector<double> linear_buckets(double start, double width, size_t count) {
  BATON_CHECK_MSG(width > 0, "linear_buckets needs width > 0");
  std::vector<double> out;
  out.reserve(count);
  for (size_t i = 0; i < count; ++i) out.push_back(start + width * static_cast<double>(i));
  return out;
}

std::string escape_label_value(std::string_view value) {
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

std::string escape_help(std::string_view help) {
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

std::string format_metric_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}

bool is_valid_metric_name(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (!is_name_char(name[i], i == 0, /*colon_ok=*/true)) return false;
  }
  return true;
}

bool is_valid_label_name(std::string_view name) {
  if (name.empty() || name.substr(0, 2) == "__") return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (!is_name_char(name[i], i == 0, /*colon_ok=*/false)) return false;
  }
  return true;
}

namespace detail {

MetricFamilyBase::MetricFamilyBase(std::string name, std::string help, std::string_view type,
                                   std::vector<std::string> label_names)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)) {
  BATON_CHECK_MSG(is_valid_metric_name(name_), fmt::format("invalid metric name '{}'", name_));
  check_label_names(name_, label_names_, type_ == kHistogramType);
}

void MetricFamilyBase::render(std::string& out) const {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name_, escape_help(help_), name_, type_);
  render_samples(out);
}

void MetricFamilyBase::append_series(std::string& out, std::string_view suffix,
                                     const std::vector<std::string>& label_values,
                                     std::string_view extra) const {
  out += name_;
  out += suffix;
  if (label_values.empty() && extra.empty()) return;
  out += '{';
  for (size_t i = 0; i < label_values.size(); ++i) {
    if (i > 0) out += ',';
    out += label_names_[i];
    out += "=\"";
    out += escape_label_value(label_values[i]);
    out += '"';
  }
  if (!extra.empty()) {
    if (!label_values.empty()) out += ',';
    out += extra;
  }
  out += '}';
}

}  // namespace detail

template <typename M>
MetricFamily<M>::MetricFamily(std::string name, std::string help, std::vector<std::string> labels,
                              std::shared_ptr<const std::vector<double>> bounds)
    : detail::MetricFamilyBase(std::move(name), std::move(help),
                               std::is_same_v<M, Counter> ? kCounterType
                               : std::is_same_v<M, Gauge> ? kGaugeType
                                                          : kHistogramType,
                               std::move(labels)),
      bounds_(std::move(bounds)) {
  if (label_names().empty()) with({});
}

template <typename M>
M& MetricFamily<M>::with(const std::vector<std::string>& label_values) {
  BATON_CHECK_MSG(label_values.size() == label_names().size(),
                  fmt::format("metric {}: {} label values for {} label names", name(),
                              label_values.size(), label_names().size()));
  {
    std::shared_lock lock(mu_);
    auto it = children_.find(label_values);
    if (it != children_.end()) return *it->second;
  }
  std::unique_lock lock(mu_);
  auto& slot = children_[label_values];
  if (!slot) {
    if constexpr (std::is_same_v<M, Histogram>) {
      slot = std::make_unique<Histogram>(bounds_);
    } else {
      slot = std::make_unique<M>();
    }
  }
  return *slot;
}

template <typename M>
void MetricFamily<M>::render_samples(std::string& out) const {
  std::shared_lock lock(mu_);
  for (const auto& [values, metric] : children_) {
    if constexpr (std::is_same_v<M, Histogram>) {
      Histogram::Snapshot s = metric->snapshot();
      const auto& bounds = metric->bounds();
      for (size_t i = 0; i <= bounds.size(); ++i) {
        std::string le = fmt::format(
            "le=\"{}\"", i < bounds.size() ? format_metric_value(bounds[i]) : std::string("+Inf"));
        append_series(out, "_bucket", values, le);
        out += fmt::format(" {}\n", s.cumulative[i]);
      }
      append_series(out, "_sum", values);
      out += fmt::format(" {}\n", format_metric_value(s.sum));
      append_series(out, "_count", values);
      out += fmt::format(" {}\n", s.count);
    } else {
      append_series(out, "", values);
      out += ' ';
      out += format_metric_value(metric->value());
      out += '\n';
    }
  }
}

template class MetricFamily<Counter>;
template class MetricFamily<Gauge>;
template class MetricFamily<Histogram>;

// Children are callbacks; rendered under the family lock so that
// remove_gauge_callback() can promise the callback is never called afterwards.
class MetricsRegistry::CallbackFamily final : public detail::MetricFamilyBase {
 public:
  CallbackFamily(std::string name, std::string help, std::vector<std::string> label_names)
      : MetricFamilyBase(std::move(name), std::move(help), kGaugeType, std::move(label_names)) {}

  void set(std::vector<std::string> values, std::function<double()> fn) {
    std::lock_guard lock(mu_);
    callbacks_[std::move(values)] = std::move(fn);
  }
  void remove(const std::vector<std::string>& values) {
    std::lock_guard lock(mu_);
    callbacks_.erase(values);
  }

 protected:
  void render_samples(std::string& out) const override {
    std::lock_guard lock(mu_);
    for (const auto& [values, fn] : callbacks_) {
      append_series(out, "", values);
      out += ' ';
      out += format_metric_value(fn());
      out += '\n';
    }
  }

 private:
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::function<double()>> callbacks_;
};

MetricsRegistry::MetricsRegistry() = default;
MetricsRegistry::~MetricsRegistry() = default;

template <typename F, typename... Args>
F& MetricsRegistry::get_or_add(std::string_view name, std::string_view type,
                               const std::vector<std::string>& label_names, Args&&... args) {
  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) {
    auto family = std::make_unique<F>(std::string(name), std::forward<Args>(args)...);
    F& ref = *family;
    families_.emplace(std::string(name), std::move(family));
    return ref;
  }
  auto* existing = dynamic_cast<F*>(it->second.get());
  BATON_CHECK_MSG(existing != nullptr && existing->type() == type,
                  fmt::format("metric {} registered twice with different types", name));
  BATON_CHECK_MSG(existing->label_names() == label_names,
                  fmt::format("metric {} registered twice with different labels", name));
  return *existing;
}

CounterFamily& MetricsRegistry::counter_family(std::string_view name, std::string_view help,
                                               const std::vector<std::string>& label_names) {
  return get_or_add<CounterFamily>(name, kCounterType, label_names, std::string(help), label_names,
                                   nullptr);
}

GaugeFamily& MetricsRegistry::gauge_family(std::string_view name, std::string_view help,
                                           const std::vector<std::string>& label_names) {
  return get_or_add<GaugeFamily>(name, kGaugeType, label_names, std::string(help), label_names,
                                 nullptr);
}

HistogramFamily& MetricsRegistry::histogram_family(std::string_view name, std::string_view help,
                                                   std::vector<double> bounds,
                                                   const std::vector<std::string>& label_names) {
  auto& family = get_or_add<HistogramFamily>(name, kHistogramType, label_names, std::string(help),
                                             label_names, checked_bounds(name, bounds));
  return family;
}

Counter& MetricsRegistry::counter(std::string_view name, std::string_view help,
                                  const MetricLabels& labels) {
  return counter_family(name, help, names_of(labels)).with(values_of(labels));
}

Gauge& MetricsRegistry::gauge(std::string_view name, std::string_view help,
                              const MetricLabels& labels) {
  return gauge_family(name, help, names_of(labels)).with(values_of(labels));
}

Histogram& MetricsRegistry::histogram(std::string_view name, std::string_view help,
                                      std::vector<double> bounds, const MetricLabels& labels) {
  return histogram_family(name, help, std::move(bounds), names_of(labels)).with(values_of(labels));
}

void MetricsRegistry::gauge_callback(std::string_view name, std::string_view help,
                                     std::function<double()> fn, const MetricLabels& labels) {
  BATON_CHECK_MSG(fn != nullptr, fmt::format("gauge callback {} is empty", name));
  std::vector<std::string> names = names_of(labels);
  get_or_add<CallbackFamily>(name, kGaugeType, names, std::string(help), names)
      .set(values_of(labels), std::move(fn));
}

void MetricsRegistry::remove_gauge_callback(std::string_view name, const MetricLabels& labels) {
  CallbackFamily* family = nullptr;
  {
    std::lock_guard lock(mu_);
    auto it = families_.find(name);
    if (it == families_.end()) return;
    family = dynamic_cast<CallbackFamily*>(it->second.get());
  }
  if (family != nullptr) family->remove(values_of(labels));
}

std::string MetricsRegistry::render() const {
  // Families are never removed, so pointers taken under the lock stay valid;
  // rendering outside it keeps slow callbacks from blocking registration.
  std::vector<const detail::MetricFamilyBase*> families;
  {
    std::lock_guard lock(mu_);
    families.reserve(families_.size());
    for (const auto& [name, family] : families_) families.push_back(family.get());
  }
  std::string out;
  for (const auto* family : families) family->render(out);
  return out;
}

}  // namespace baton
