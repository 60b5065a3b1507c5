#pragma once

// Metrics: counters, gauges and histograms in families with labels, rendered
// in the Prometheus text exposition format 0.0.4 for GET /metrics.
//
//   MetricsRegistry registry;
//   auto& ok = registry.counter_family("baton:request_success_total",
//                                      "Finished requests", {"finished_reason"});
//   ok.with({"stop"}).inc();
//   Histogram& ttft = registry.histogram("baton:time_to_first_token_seconds",
//                                        "TTFT", exponential_buckets(0.001, 2, 16));
//   ttft.observe(0.042);
//   std::string body = registry.render();
//
// Ownership: the registry owns every family and metric; the references it
// returns stay valid for the registry's lifetime (nothing is ever removed
// except callback gauges). Thread-safety: everything is thread-safe. Updates
// (inc, set, observe) are lock-free atomics and meant for hot paths; registering
// and with() take a lock, so look a child up once and keep the reference.
//
// Metric and label names are code constants: an invalid name, a family
// registered twice with a different type or label names, or a wrong number of
// label values is a programmer error (BATON_CHECK). Label values are data and
// may contain anything; they are escaped on output.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace baton {

// Label name/value pairs for a single child, e.g. {{"model", "llama"}}.
using MetricLabels = std::vector<std::pair<std::string, std::string>>;

// A monotonically increasing value (requests, tokens, seconds of work).
class Counter {
 public:
  // Adds v. Negative or NaN increments are ignored: a counter never goes down.
  void inc(double v = 1.0);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// A value that goes up and down (queue length, KV blocks in use).
class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void inc(double v = 1.0) { value_.fetch_add(v, std::memory_order_relaxed); }
  void dec(double v = 1.0) { value_.fetch_sub(v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Observations counted into buckets by upper bound (le = "less or equal").
class Histogram {
 public:
  // bounds: finite, strictly increasing upper bounds; +Inf is implicit.
  explicit Histogram(std::shared_ptr<const std::vector<double>> bounds);

  // Counts v into the first bucket whose bound is >= v. NaN is ignored.
  void observe(double v);

  struct Snapshot {
    std::vector<uint64_t> cumulative;  // one per bound, then +Inf (== count)
    double sum = 0;
    uint64_t count = 0;
  };
  // A consistent-enough view for rendering: count always equals the +Inf
  // bucket, though concurrent observe() calls may be half-visible in sum.
  Snapshot snapshot() const;
  const std::vector<double>& bounds() const { return *bounds_; }

 private:
  std::shared_ptr<const std::vector<double>> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // per bucket, not cumulative
  std::atomic<double> sum_{0.0};
};

// `count` bounds start, start*factor, ... (start > 0, factor > 1).
std::vector<double> exponential_buckets(double start, double factor, size_t count);
// `count` bounds start, start+width, ... (width > 0).
std::vector<double> linear_buckets(double start, double width, size_t count);

// Prometheus escaping: label values escape \, " and newline; HELP text escapes
// \ and newline. Exposed for other exporters and tests.
std::string escape_label_value(std::string_view value);
std::string escape_help(std::string_view help);
// Sample values: shortest round-trip decimal, "+Inf", "-Inf", "NaN".
std::string format_metric_value(double v);
// [a-zA-Z_:][a-zA-Z0-9_:]*
bool is_valid_metric_name(std::string_view name);
// [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" (reserved by Prometheus).
bool is_valid_label_name(std::string_view name);

namespace detail {

class MetricFamilyBase {
 public:
  MetricFamilyBase(std::string name, std::string help, std::string_view type,
                   std::vector<std::string> label_names);
  virtual ~MetricFamilyBase() = default;

  const std::string& name() const { return name_; }
  std::string_view type() const { return type_; }
  const std::vector<std::string>& label_names() const { return label_names_; }

  // Appends the # HELP and # TYPE lines and every sample.
  void render(std::string& out) const;

 protected:
  virtual void render_samples(std::string& out) const = 0;
  // `name{a="x",b="y"}` plus `extra` (e.g. le="0.5") inside the braces.
  void append_series(std::string& out, std::string_view suffix,
                     const std::vector<std::string>& label_values,
                     std::string_view extra = {}) const;

 private:
  std::string name_;
  std::string help_;
  std::string_view type_;
  std::vector<std::string> label_names_;
};

}  // namespace detail

// A family of metrics of one type sharing a name, help and label names; one
// child per distinct tuple of label values, created on first use.
template <typename M>
class MetricFamily final : public detail::MetricFamilyBase {
 public:
  // For histograms `bounds` is shared by every child; ignored otherwise.
  MetricFamily(std::string name, std::string help, std::vector<std::string> label_names,
               std::shared_ptr<const std::vector<double>> bounds);

  // The child for these label values (same order as the label names; the
  // count must match). Thread-safe; takes a lock, so keep the reference.
  M& with(const std::vector<std::string>& label_values);

 protected:
  void render_samples(std::string& out) const override;

 private:
  std::shared_ptr<const std::vector<double>> bounds_;
  mutable std::shared_mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<M>> children_;
};

using CounterFamily = MetricFamily<Counter>;
using GaugeFamily = MetricFamily<Gauge>;
using HistogramFamily = MetricFamily<Histogram>;

class MetricsRegistry {
 public:
  MetricsRegistry();
  ~MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Families. Registering an existing name again with the same type and label
  // names returns the existing family (the first help text is kept). A family
  // without labels has its single child from the start, so it renders 0.
  CounterFamily& counter_family(std::string_view name, std::string_view help,
                                const std::vector<std::string>& label_names);
  GaugeFamily& gauge_family(std::string_view name, std::string_view help,
                            const std::vector<std::string>& label_names);
  HistogramFamily& histogram_family(std::string_view name, std::string_view help,
                                    std::vector<double> bounds,
                                    const std::vector<std::string>& label_names);

  // One child directly: the family's label names are those of `labels`, in
  // order; e.g. counter("baton:prompt_tokens_total", "...", {{"model", m}}).
  Counter& counter(std::string_view name, std::string_view help, const MetricLabels& labels = {});
  Gauge& gauge(std::string_view name, std::string_view help, const MetricLabels& labels = {});
  Histogram& histogram(std::string_view name, std::string_view help, std::vector<double> bounds,
                       const MetricLabels& labels = {});

  // A gauge whose value is fn() at render time (e.g. free KV blocks read from
  // the block pool). fn runs on the thread calling render(); it must be
  // thread-safe, must not register or remove callback gauges, and must stay
  // callable until removed or the registry is destroyed. Registering the same
  // name and label values again replaces the callback.
  void gauge_callback(std::string_view name, std::string_view help, std::function<double()> fn,
                      const MetricLabels& labels = {});
  // Removes a callback gauge child; no-op when absent. Once it returns the old
  // fn is never called again, so its captures may be destroyed.
  void remove_gauge_callback(std::string_view name, const MetricLabels& labels = {});

  // The whole registry in text format 0.0.4, families sorted by name, children
  // by label values. Content type: "text/plain; version=0.0.4; charset=utf-8".
  std::string render() const;

  static constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

 private:
  class CallbackFamily;
  template <typename F, typename... Args>
  F& get_or_add(std::string_view name, std::string_view type,
                const std::vector<std::string>& label_names, Args&&... args);

  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<detail::MetricFamilyBase>, std::less<>> families_;
};

extern template class MetricFamily<Counter>;
extern template class MetricFamily<Gauge>;
extern template class MetricFamily<Histogram>;

}  // namespace baton
