#include "common/metrics.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <sstream>
#include <thread>
#include <vector>

namespace baton {
namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST(MetricsTest, RendersExactExpositionText) {
  MetricsRegistry registry;
  auto& success = registry.counter_family("baton:request_success_total", "Finished requests.",
                                          {"finished_reason"});
  success.with({"stop"}).inc();
  success.with({"stop"}).inc(2);
  success.with({"length"}).inc();
  registry.gauge("baton:num_requests_running", "Requests in the batch.\nNow.", {{"model", "m1"}})
      .set(3);
  auto& ttft =
      registry.histogram("baton:time_to_first_token_seconds", "TTFT \\ seconds.", {0.1, 0.5, 1});
  ttft.observe(0.05);
  ttft.observe(0.1);  // on a bound: counted in that bucket (le)
  ttft.observe(0.75);
  ttft.observe(30);
  int free_blocks = 41;
  registry.gauge_callback("baton:kv_free_blocks", "Free KV blocks.", [&] { return free_blocks; });
  registry.counter("baton:weird_total", "Label escaping.", {{"path", "a\\b\"c\nd"}}).inc(0.5);
  free_blocks = 42;

  const std::string expected =
      "# HELP baton:kv_free_blocks Free KV blocks.\n"
      "# TYPE baton:kv_free_blocks gauge\n"
      "baton:kv_free_blocks 42\n"
      "# HELP baton:num_requests_running Requests in the batch.\\nNow.\n"
      "# TYPE baton:num_requests_running gauge\n"
      "baton:num_requests_running{model=\"m1\"} 3\n"
      "# HELP baton:request_success_total Finished requests.\n"
      "# TYPE baton:request_success_total counter\n"
      "baton:request_success_total{finished_reason=\"length\"} 1\n"
      "baton:request_success_total{finished_reason=\"stop\"} 3\n"
      "# HELP baton:time_to_first_token_seconds TTFT \\\\ seconds.\n"
      "# TYPE baton:time_to_first_token_seconds histogram\n"
      "baton:time_to_first_token_seconds_bucket{le=\"0.1\"} 2\n"
      "baton:time_to_first_token_seconds_bucket{le=\"0.5\"} 2\n"
      "baton:time_to_first_token_seconds_bucket{le=\"1\"} 3\n"
      "baton:time_to_first_token_seconds_bucket{le=\"+Inf\"} 4\n"
      "baton:time_to_first_token_seconds_sum 30.9\n"
      "baton:time_to_first_token_seconds_count 4\n"
      "# HELP baton:weird_total Label escaping.\n"
      "# TYPE baton:weird_total counter\n"
      "baton:weird_total{path=\"a\\\\b\\\"c\\nd\"} 0.5\n";
  std::string text = registry.render();
  EXPECT_EQ(lines_of(text), lines_of(expected));
  EXPECT_EQ(text, expected);
}

TEST(MetricsTest, HistogramWithLabelsPutsLeLast) {
  MetricsRegistry registry;
  auto& family = registry.histogram_family("lat", "h", {1, 2}, {"model", "role"});
  family.with({"m", "prefill"}).observe(1.5);
  auto lines = lines_of(registry.render());
  ASSERT_EQ(lines.size(), 2u + 3u + 2u);
  EXPECT_EQ(lines[2], "lat_bucket{model=\"m\",role=\"prefill\",le=\"1\"} 0");
  EXPECT_EQ(lines[3], "lat_bucket{model=\"m\",role=\"prefill\",le=\"2\"} 1");
  EXPECT_EQ(lines[4], "lat_bucket{model=\"m\",role=\"prefill\",le=\"+Inf\"} 1");
  EXPECT_EQ(lines[5], "lat_sum{model=\"m\",role=\"prefill\"} 1.5");
  EXPECT_EQ(lines[6], "lat_count{model=\"m\",role=\"prefill\"} 1");
}

TEST(MetricsTest, LabelledFamilyWithoutChildrenRendersOnlyHeaders) {
  MetricsRegistry registry;
  registry.counter_family("c_total", "help", {"x"});
  registry.counter_family("d_total", "help", {});
  EXPECT_EQ(registry.render(),
            "# HELP c_total help\n# TYPE c_total counter\n"
            "# HELP d_total help\n# TYPE d_total counter\nd_total 0\n");
}

TEST(MetricsTest, ConcurrentUpdatesSumExactly) {
  MetricsRegistry registry;
  Counter& counter = registry.counter("hits_total", "h");
  Gauge& gauge = registry.gauge("level", "g");
  Histogram& hist = registry.histogram("obs", "h", {0.5, 1.5});
  auto& family = registry.counter_family("by_thread_total", "h", {"t"});
  constexpr int kThreads = 4;
  constexpr int kIters = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Counter& mine = family.with({std::to_string(t % 2)});
      for (int i = 0; i < kIters; ++i) {
        counter.inc();
        gauge.inc(2);
        gauge.dec();
        hist.observe(i % 2);
        mine.inc();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(counter.value(), kThreads * kIters);
  EXPECT_EQ(gauge.value(), kThreads * kIters);
  auto snap = hist.snapshot();
  EXPECT_EQ(snap.count, static_cast<uint64_t>(kThreads * kIters));
  EXPECT_EQ(snap.cumulative,
            (std::vector<uint64_t>{kThreads * kIters / 2, kThreads * kIters, kThreads * kIters}));
  EXPECT_EQ(snap.sum, kThreads * kIters / 2);
  EXPECT_EQ(family.with({"0"}).value() + family.with({"1"}).value(), kThreads * kIters);
}

TEST(MetricsTest, HistogramBucketsAreCumulative) {
  MetricsRegistry registry;
  Histogram& h = registry.histogram("h", "h", exponential_buckets(1, 2, 4));  // 1 2 4 8
  for (double v : {0.5, 1.0, 1.5, 3.0, 3.0, 7.0, 100.0, -2.0}) h.observe(v);
  h.observe(std::numeric_limits<double>::quiet_NaN());  // ignored
  auto snap = h.snapshot();
  EXPECT_EQ(snap.cumulative, (std::vector<uint64_t>{3, 4, 6, 7, 8}));
  EXPECT_EQ(snap.count, 8u);
  EXPECT_DOUBLE_EQ(snap.sum, 114.0);
  for (size_t i = 1; i < snap.cumulative.size(); ++i) {
    EXPECT_LE(snap.cumulative[i - 1], snap.cumulative[i]);
  }
}

TEST(MetricsTest, BucketHelpers) {
  EXPECT_EQ(exponential_buckets(0.5, 2, 3), (std::vector<double>{0.5, 1, 2}));
  EXPECT_EQ(linear_buckets(1, 0.5, 3), (std::vector<double>{1, 1.5, 2}));
  MetricsRegistry registry;
  // An explicit trailing +Inf is the implicit one, not a second bucket.
  Histogram& h = registry.histogram("h", "h", {1, std::numeric_limits<double>::infinity()});
  EXPECT_EQ(h.bounds(), (std::vector<double>{1}));
}

TEST(MetricsTest, RegisteringTwiceReturnsTheSameMetric) {
  MetricsRegistry registry;
  Counter& a = registry.counter("x_total", "first help", {{"k", "v"}});
  Counter& b = registry.counter("x_total", "ignored help", {{"k", "v"}});
  EXPECT_EQ(&a, &b);
  Counter& c = registry.counter("x_total", "", {{"k", "w"}});
  EXPECT_NE(&a, &c);
  EXPECT_EQ(&registry.counter_family("x_total", "", {"k"}).with({"v"}), &a);
  EXPECT_NE(registry.render().find("# HELP x_total first help\n"), std::string::npos);
}

TEST(MetricsTest, CounterNeverGoesDown) {
  Counter c;
  c.inc(2);
  c.inc(-1);
  c.inc(std::numeric_limits<double>::quiet_NaN());
  EXPECT_EQ(c.value(), 2);
}

TEST(MetricsTest, CallbackGaugesCanBeReplacedAndRemoved) {
  MetricsRegistry registry;
  registry.gauge_callback("q", "h", [] { return 1.0; }, {{"pool", "a"}});
  registry.gauge_callback("q", "h", [] { return 2.0; }, {{"pool", "a"}});
  registry.gauge_callback("q", "h", [] { return 3.0; }, {{"pool", "b"}});
  EXPECT_EQ(registry.render(), "# HELP q h\n# TYPE q gauge\nq{pool=\"a\"} 2\nq{pool=\"b\"} 3\n");
  registry.remove_gauge_callback("q", {{"pool", "a"}});
  registry.remove_gauge_callback("absent");
  EXPECT_EQ(registry.render(), "# HELP q h\n# TYPE q gauge\nq{pool=\"b\"} 3\n");
}

TEST(MetricsTest, ValueFormatting) {
  EXPECT_EQ(format_metric_value(3), "3");
  EXPECT_EQ(format_metric_value(0.1), "0.1");
  EXPECT_EQ(format_metric_value(-2.5), "-2.5");
  EXPECT_EQ(format_metric_value(1e21), "1e+21");
  EXPECT_EQ(format_metric_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(format_metric_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(format_metric_value(std::nan("")), "NaN");
  EXPECT_EQ(escape_label_value("a\\\"\n"), "a\\\\\\\"\\n");
  EXPECT_EQ(escape_help("a\\\"\n"), "a\\\\\"\\n");
}

TEST(MetricsTest, NameValidation) {
  EXPECT_TRUE(is_valid_metric_name("baton:request_success_total"));
  EXPECT_TRUE(is_valid_metric_name("_x:y9"));
  EXPECT_FALSE(is_valid_metric_name(""));
  EXPECT_FALSE(is_valid_metric_name("9lives"));
  EXPECT_FALSE(is_valid_metric_name("a-b"));
  EXPECT_FALSE(is_valid_metric_name("a b"));
  EXPECT_TRUE(is_valid_label_name("finished_reason"));
  EXPECT_FALSE(is_valid_label_name("a:b"));
  EXPECT_FALSE(is_valid_label_name("__reserved"));
  EXPECT_FALSE(is_valid_label_name("1a"));
}

TEST(MetricsDeathTest, ProgrammerErrorsAbort) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  MetricsRegistry registry;
  EXPECT_DEATH(registry.counter("bad-name", "h"), "invalid metric name");
  registry.counter("dup", "h");
  EXPECT_DEATH(registry.gauge("dup", "h"), "different types");
  EXPECT_DEATH(registry.counter_family("fam", "h", {"a"}).with({"x", "y"}), "label values");
  EXPECT_DEATH(registry.histogram("hist", "h", {2, 1}), "increase");
  EXPECT_DEATH(registry.histogram_family("hist2", "h", {1}, {"le"}), "reserved");
}

}  // namespace
}  // namespace baton
