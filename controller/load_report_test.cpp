#include "controller/load_report.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

namespace baton::controller {
namespace {

// The shape of an instance's /metrics (server/instance_server.cpp), trimmed
// to three buckets.
std::string metrics_text(double running, double waiting, double kv, double ttft_le_0_1,
                         double ttft_le_1, double ttft_total, double rejected) {
  std::string t;
  t += "# HELP baton:num_requests_running Requests in the engine's running batch.\n";
  t += "# TYPE baton:num_requests_running gauge\n";
  t += "baton:num_requests_running " + std::to_string(running) + "\n";
  t += "baton:num_requests_waiting " + std::to_string(waiting) + "\n";
  t += "baton:kv_cache_usage_perc " + std::to_string(kv) + "\n";
  t += "# TYPE baton:time_to_first_token_seconds histogram\n";
  t += "baton:time_to_first_token_seconds_bucket{le=\"0.1\"} " + std::to_string(ttft_le_0_1) + "\n";
  t += "baton:time_to_first_token_seconds_bucket{le=\"1\"} " + std::to_string(ttft_le_1) + "\n";
  t += "baton:time_to_first_token_seconds_bucket{le=\"+Inf\"} " + std::to_string(ttft_total) + "\n";
  t += "baton:time_to_first_token_seconds_sum 12.5\n";
  t += "baton:time_to_first_token_seconds_count " + std::to_string(ttft_total) + "\n";
  t += "baton:request_rejected_total{reason=\"queue_full\"} " + std::to_string(rejected) + "\n";
  t += "baton:request_rejected_total{reason=\"ttft_budget\"} 1\n";
  return t;
}

TEST(PrometheusText, ParsesNamesLabelsEscapesAndSpecialValues) {
  auto samples = parse_prometheus_text(
      "# HELP x y\n\n"
      "a_total 3\n"
      "b{l=\"q\\\"uote\\\\back\\nline\",m=\"2\"} +Inf 1700000000\n"
      "c{} NaN\r\n");
  ASSERT_TRUE(samples.is_ok()) << samples.status().to_string();
  ASSERT_EQ(samples->size(), 3u);
  EXPECT_EQ((*samples)[0].name, "a_total");
  EXPECT_EQ((*samples)[0].value, 3);
  EXPECT_EQ((*samples)[1].label("l"), "q\"uote\\back\nline");
  EXPECT_EQ((*samples)[1].label("m"), "2");
  EXPECT_TRUE(std::isinf((*samples)[1].value));
  EXPECT_TRUE(std::isnan((*samples)[2].value));
}

TEST(PrometheusText, MalformedLinesAreErrorsNamingTheLine) {
  auto bad = parse_prometheus_text("ok 1\nbroken{l=\"x} 2\n");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("line 2"), std::string::npos);
  EXPECT_FALSE(parse_prometheus_text("x notanumber\n").is_ok());
  EXPECT_FALSE(parse_prometheus_text("{l=\"x\"} 1\n").is_ok());
}

TEST(LoadReport, ReadsGaugesAndSumsRejectionsOverReasons) {
  auto m = parse_metrics(metrics_text(3, 7, 0.25, 1, 2, 4, 5));
  ASSERT_TRUE(m.is_ok());
  EXPECT_EQ(m->running, 3);
  EXPECT_EQ(m->waiting, 7);
  EXPECT_DOUBLE_EQ(m->kv_usage, 0.25);
  EXPECT_EQ(m->rejected_total, 6);
  ASSERT_EQ(m->ttft.bounds, (std::vector<double>{0.1, 1}));
  EXPECT_EQ(m->ttft.cumulative, (std::vector<double>{1, 2, 4}));
  EXPECT_TRUE(m->tpot.empty());
  EXPECT_FALSE(m->role.has_value());
}

TEST(LoadReport, LatencyAndRejectionsCoverOnlyTheWindowSinceThePreviousScrape) {
  // Before: 10 fast requests. Then 10 slow ones (over 1 s) and 4 rejections.
  auto before = parse_metrics(metrics_text(0, 0, 0, 10, 10, 10, 2));
  auto after = parse_metrics(metrics_text(1, 0, 0.1, 10, 10, 20, 6));
  ASSERT_TRUE(before.is_ok() && after.is_ok());
  Clock::TimePoint t{std::chrono::seconds(100)};
  LoadReport r = make_load_report(&*before, *after, t);
  EXPECT_EQ(r.at, t);
  EXPECT_EQ(r.ttft.total(), 10);
  EXPECT_EQ(r.rejected, 4);
  // Every observation of the window is above 1 s: the quantile sits at the
  // last finite bound and everything is above 0.5 s.
  EXPECT_EQ(r.ttft_quantile(0.9), 1.0);
  EXPECT_DOUBLE_EQ(*r.ttft.fraction_above(0.5), 1.0);

  // Since start, half the requests were fast.
  LoadReport first = make_load_report(nullptr, *after, t);
  EXPECT_EQ(first.ttft.total(), 20);
  EXPECT_DOUBLE_EQ(*first.ttft.fraction_above(1.0), 0.5);
}

TEST(LoadReport, ARestartedInstanceCountsFromZero) {
  auto before = parse_metrics(metrics_text(0, 0, 0, 50, 50, 50, 9));
  auto after = parse_metrics(metrics_text(0, 0, 0, 1, 3, 3, 1));
  LoadReport r = make_load_report(&*before, *after, Clock::TimePoint{});
  EXPECT_EQ(r.ttft.total(), 3);
  EXPECT_EQ(r.rejected, 2);  // 1 queue_full + 1 ttft_budget since the restart
}

TEST(LatencyWindow, QuantilesInterpolateInsideBuckets) {
  LatencyWindow w{{0.1, 0.2, 0.4}, {0, 10, 0, 0}};  // all 10 in (0.1, 0.2]
  EXPECT_NEAR(*w.quantile(0.5), 0.15, 1e-9);
  EXPECT_NEAR(*w.quantile(0.9), 0.19, 1e-9);
  EXPECT_NEAR(*w.fraction_above(0.15), 0.5, 1e-9);
  EXPECT_EQ(*w.fraction_above(0.3), 0);
  EXPECT_FALSE(LatencyWindow{}.quantile(0.5).has_value());

  LatencyWindow other{{0.1, 0.2, 0.4}, {0, 0, 0, 10}};
  ASSERT_TRUE(w.merge(other));
  EXPECT_EQ(w.total(), 20);
  EXPECT_EQ(*w.quantile(0.9), 0.4);  // in the +Inf bucket
  LatencyWindow mismatched{{0.5}, {1, 1}};
  EXPECT_FALSE(w.merge(mismatched));
  EXPECT_EQ(w.total(), 20);
}

// A histogram of `name` in the exposition format, cumulative counts over
// bounds 0.01 and 0.02 s.
std::string histogram_text(const std::string& name, double le_0_01, double le_0_02, double total) {
  std::string t = "# TYPE " + name + " histogram\n";
  t += name + "_bucket{le=\"0.01\"} " + std::to_string(le_0_01) + "\n";
  t += name + "_bucket{le=\"0.02\"} " + std::to_string(le_0_02) + "\n";
  t += name + "_bucket{le=\"+Inf\"} " + std::to_string(total) + "\n";
  t += name + "_count " + std::to_string(total) + "\n";
  return t;
}

TEST(LoadReport, ReadsThePrefillSideTtftAndTheInterTokenLatencyByWindow) {
  // A prefill instance observes its own time to first token; a decode
  // instance the time between tokens as they come.
  auto before = parse_metrics(histogram_text("baton:prefill_time_to_first_token_seconds", 4, 4, 4) +
                              histogram_text("baton:inter_token_latency_seconds", 100, 100, 100));
  auto after = parse_metrics(histogram_text("baton:prefill_time_to_first_token_seconds", 4, 5, 10) +
                             histogram_text("baton:inter_token_latency_seconds", 100, 300, 300));
  ASSERT_TRUE(before.is_ok() && after.is_ok());
  EXPECT_EQ(after->prefill_ttft.bounds, (std::vector<double>{0.01, 0.02}));
  EXPECT_EQ(after->prefill_ttft.cumulative, (std::vector<double>{4, 5, 10}));
  EXPECT_EQ(after->itl.cumulative, (std::vector<double>{100, 300, 300}));
  EXPECT_TRUE(after->ttft.empty()) << "the client TTFT is another histogram";

  LoadReport r = make_load_report(&*before, *after, Clock::TimePoint{});
  EXPECT_EQ(r.prefill_ttft.counts, (std::vector<double>{0, 1, 5}));
  EXPECT_EQ(r.itl.counts, (std::vector<double>{0, 200, 0}));
  EXPECT_NEAR(*r.itl.quantile(0.9), 0.019, 1e-9);
  EXPECT_EQ(*r.prefill_ttft.quantile(0.9), 0.02);  // in the +Inf bucket

  LoadReport next = make_load_report(&*after, *after, Clock::TimePoint{});
  LoadReport merged = merge_reports({r, next});
  EXPECT_EQ(merged.prefill_ttft.total(), 6);
  EXPECT_EQ(merged.itl.total(), 200);

  // An instance without them (another server, an older build): empty
  // windows, not an error.
  auto plain = parse_metrics(metrics_text(1, 0, 0.1, 1, 1, 1, 0));
  ASSERT_TRUE(plain.is_ok());
  LoadReport p = make_load_report(nullptr, *plain, Clock::TimePoint{});
  EXPECT_EQ(p.prefill_ttft.total(), 0);
  EXPECT_EQ(p.itl.total(), 0);
}

TEST(LoadReport, LatencyIsJudgedOnTheNewestReportsThatHoldEnoughObservations) {
  // A busy decode instance whose tokens were slow (two reports of 100 at
  // 0.3 s) and are fast now (100 at 15 ms): with 50 observations enough it is
  // judged on the newest report alone, where merging everything would still
  // show the old slowness. A quiet one reaches back further.
  const std::vector<double> bounds = {0.02, 0.5};
  auto report = [&](double fast, double slow, double rejected) {
    LoadReport r;
    r.itl = LatencyWindow{bounds, {fast, slow, 0}};
    r.tpot = LatencyWindow{bounds, {0, 2, 0}};
    r.rejected = rejected;
    return r;
  };
  std::vector<LoadReport> history = {report(0, 100, 1), report(0, 100, 0), report(100, 0, 2)};
  LoadReport all = merge_reports(history);
  EXPECT_EQ(all.itl.total(), 300);
  EXPECT_GT(*all.itl.quantile(0.9), 0.3);

  LoadReport recent = merge_reports(history, 50);
  EXPECT_EQ(recent.itl.total(), 100);
  EXPECT_LT(*recent.itl.quantile(0.9), 0.02);
  EXPECT_EQ(recent.tpot.total(), 6) << "two observations a report: all three to reach 50";
  EXPECT_EQ(recent.rejected, 3) << "rejections count over the whole span";

  LoadReport five = merge_reports(history, 5);
  EXPECT_EQ(five.tpot.total(), 6) << "2 + 2 is not enough, 2 + 2 + 2 is";
}

TEST(LoadReport, RoleComesFromTheInstanceRoleGauge) {
  auto m = parse_metrics(
      "baton:instance_role{role=\"prefill\"} 0\nbaton:instance_role{role=\"decode\"} 1\n");
  ASSERT_TRUE(m.is_ok());
  EXPECT_EQ(m->role, "decode");
}

TEST(LoadReport, MergingReportsWidensTheWindow) {
  LoadReport a, b;
  a.at = Clock::TimePoint{std::chrono::seconds(1)};
  a.running = 9;
  a.ttft = LatencyWindow{{0.1, 1}, {2, 0, 0}};
  a.rejected = 1;
  b.at = Clock::TimePoint{std::chrono::seconds(2)};
  b.running = 3;
  b.ttft = LatencyWindow{{0.1, 1}, {0, 0, 3}};
  b.rejected = 2;
  b.role = "decode";
  LoadReport m = merge_reports({a, b});
  EXPECT_EQ(m.at, b.at);
  EXPECT_EQ(m.running, 3) << "gauges are the newest";
  EXPECT_EQ(m.role, "decode");
  EXPECT_EQ(m.ttft.total(), 5);
  EXPECT_EQ(m.rejected, 3);
  EXPECT_EQ(merge_reports({}).ttft.total(), 0);
}

}  // namespace
}  // namespace baton::controller
