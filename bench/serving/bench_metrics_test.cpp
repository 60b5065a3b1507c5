// Serving metrics on synthetic timestamps whose answers are worked out by
// hand (numpy's definitions: population std, linear-interpolated percentiles).

#include <gtest/gtest.h>

#include <cmath>

#include "bench/serving/metrics.h"
#include "bench/serving/report.h"

namespace baton::bench {
namespace {

constexpr double kEps = 1e-9;

RequestRecord ok(double start, double ttft, std::vector<double> itl, double latency, int out,
                 int prompt) {
  RequestRecord r;
  r.success = true;
  r.start_s = start;
  r.ttft_s = ttft;
  r.itl_s = std::move(itl);
  r.latency_s = latency;
  r.output_tokens = out;
  r.prompt_tokens = prompt;
  r.chunks = static_cast<int64_t>(r.itl_s.size()) + 1;
  return r;
}

// Three successes and one failure over a 2-second run:
//   A: sent at 0.0, TTFT 100 ms, ITL 20 and 30 ms, E2EL 150 ms, 3 tokens, 10 in
//   B: sent at 0.5, TTFT 300 ms, ITL 50 ms,        E2EL 350 ms, 2 tokens, 20 in
//   C: sent at 1.2, TTFT 200 ms, no ITL,           E2EL 200 ms, 1 token,   5 in
//   D: sent at 1.5, failed.
std::vector<RequestRecord> sample() {
  RequestRecord failed;
  failed.start_s = 1.5;
  failed.latency_s = 0.1;
  failed.prompt_tokens = 99;
  failed.error = "HTTP 503";
  return {ok(0.0, 0.1, {0.02, 0.03}, 0.15, 3, 10), ok(0.5, 0.3, {0.05}, 0.35, 2, 20),
          ok(1.2, 0.2, {}, 0.2, 1, 5), failed};
}

TEST(Percentile, MatchesNumpyLinearInterpolation) {
  EXPECT_NEAR(percentile({4, 1, 3, 2}, 50), 2.5, kEps);
  EXPECT_NEAR(percentile({4, 1, 3, 2}, 25), 1.75, kEps);
  EXPECT_NEAR(percentile({4, 1, 3, 2}, 0), 1, kEps);
  EXPECT_NEAR(percentile({4, 1, 3, 2}, 100), 4, kEps);
  EXPECT_NEAR(percentile({7}, 99), 7, kEps);
  EXPECT_EQ(percentile({}, 99), 0);
}

TEST(Describe, EmptyListCountsAsZero) {
  Distribution d = describe({}, {99}, 1000);
  EXPECT_EQ(d.mean, 0);
  EXPECT_EQ(d.median, 0);
  EXPECT_EQ(d.std, 0);
  ASSERT_EQ(d.percentiles.size(), 1u);
  EXPECT_EQ(d.percentiles[0].second, 0);
}

TEST(ComputeMetrics, CountsAndThroughputs) {
  BenchmarkMetrics m = compute_metrics(sample(), 2.0, {}, {90, 99});
  EXPECT_EQ(m.completed, 3);
  EXPECT_EQ(m.failed, 1);
  EXPECT_EQ(m.total_input, 35);  // failed requests' prompts do not count
  EXPECT_EQ(m.total_output, 6);
  EXPECT_NEAR(m.request_throughput, 1.5, kEps);
  EXPECT_NEAR(m.output_throughput, 3.0, kEps);
  EXPECT_NEAR(m.total_token_throughput, 20.5, kEps);
  EXPECT_FALSE(m.request_goodput.has_value());
}

TEST(ComputeMetrics, LatencyDistributions) {
  BenchmarkMetrics m = compute_metrics(sample(), 2.0, {}, {90, 99});
  // TTFT: 100, 300, 200 ms.
  EXPECT_NEAR(m.ttft_ms.mean, 200, 1e-6);
  EXPECT_NEAR(m.ttft_ms.median, 200, 1e-6);
  EXPECT_NEAR(m.ttft_ms.std, std::sqrt(20000.0 / 3), 1e-6);
  EXPECT_NEAR(m.ttft_ms.percentiles[0].second, 280, 1e-6);
  EXPECT_NEAR(m.ttft_ms.percentiles[1].second, 298, 1e-6);
  // TPOT only over requests with more than one token: A 25 ms, B 50 ms.
  EXPECT_NEAR(m.tpot_ms.mean, 37.5, 1e-6);
  EXPECT_NEAR(m.tpot_ms.median, 37.5, 1e-6);
  EXPECT_NEAR(m.tpot_ms.std, 12.5, 1e-6);
  EXPECT_NEAR(m.tpot_ms.percentiles[0].second, 47.5, 1e-6);
  // ITL pooled over requests: 20, 30, 50 ms.
  EXPECT_NEAR(m.itl_ms.mean, 100.0 / 3, 1e-6);
  EXPECT_NEAR(m.itl_ms.median, 30, 1e-6);
  EXPECT_NEAR(m.itl_ms.std,
              std::sqrt((std::pow(20 - 100.0 / 3, 2) + std::pow(30 - 100.0 / 3, 2) +
                         std::pow(50 - 100.0 / 3, 2)) /
                        3),
              1e-6);
  // E2EL: 150, 350, 200 ms.
  EXPECT_NEAR(m.e2el_ms.mean, 700.0 / 3, 1e-6);
  EXPECT_NEAR(m.e2el_ms.median, 200, 1e-6);
  EXPECT_NEAR(m.e2el_ms.percentiles[1].second, 200 + 0.98 * 150, 1e-6);
}

TEST(ComputeMetrics, GoodputCountsRequestsMeetingEverySlo) {
  auto with = [](std::vector<std::string> items) {
    auto slo = parse_goodput(items);
    EXPECT_TRUE(slo.is_ok()) << slo.status().to_string();
    return *compute_metrics(sample(), 2.0, *slo, {99}).request_goodput;
  };
  EXPECT_NEAR(with({"ttft:250"}), 1.0, kEps);  // A and C
  // C has one token: its TPOT counts as 0, so it meets any TPOT SLO.
  EXPECT_NEAR(with({"tpot:30"}), 1.0, kEps);                 // A and C
  EXPECT_NEAR(with({"e2el:160"}), 0.5, kEps);                // A
  EXPECT_NEAR(with({"ttft:250", "e2el:160"}), 0.5, kEps);    // A
  EXPECT_NEAR(with({"ttft:1000", "tpot:1000"}), 1.5, kEps);  // all successes
  EXPECT_NEAR(with({"ttft:50"}), 0.0, kEps);
}

TEST(ComputeMetrics, PeakOutputTokensAndConcurrencyPerSecond) {
  BenchmarkMetrics m = compute_metrics(sample(), 2.0, {}, {99});
  // Chunks at 0.10, 0.12, 0.15 (A), 0.80, 0.85 (B): five in second 0; C's
  // one chunk at 1.40 is in second 1.
  EXPECT_EQ(m.max_output_tokens_per_s, 5);
  // A and B are both active in second 0; C alone in second 1.
  EXPECT_EQ(m.max_concurrent_requests, 2);
}

TEST(ComputeMetrics, TimelineBucketsTheRunBySecond) {
  BenchmarkMetrics m = compute_metrics(sample(), 2.0, {}, {99});
  ASSERT_EQ(m.timeline.size(), 3u);  // seconds 0, 1 and 2 (the run ends at 2.0)
  EXPECT_EQ(m.timeline[0].output_tokens, 5);
  EXPECT_EQ(m.timeline[1].output_tokens, 1);
  EXPECT_EQ(m.timeline[0].started, 2);
  EXPECT_EQ(m.timeline[1].started, 2);  // C and the failed D
  EXPECT_EQ(m.timeline[1].finished, 2);
  EXPECT_NEAR(m.timeline[0].mean_ttft_ms, 200, 1e-6);  // A and B
  EXPECT_NEAR(m.timeline[1].mean_ttft_ms, 200, 1e-6);  // C only (D failed)
}

TEST(ComputeMetrics, NoSuccessLeavesZeros) {
  RequestRecord failed;
  failed.error = "connect: refused";
  BenchmarkMetrics m = compute_metrics({failed, failed}, 1.0, {}, {99});
  EXPECT_EQ(m.completed, 0);
  EXPECT_EQ(m.failed, 2);
  EXPECT_EQ(m.max_output_tokens_per_s, 0);
  EXPECT_EQ(m.ttft_ms.mean, 0);
}

TEST(ParseGoodput, RejectsUnknownAndMalformedItems) {
  EXPECT_FALSE(parse_goodput({"ttft"}).is_ok());
  EXPECT_FALSE(parse_goodput({"ttft:fast"}).is_ok());
  EXPECT_FALSE(parse_goodput({"itl:10"}).is_ok());
  EXPECT_FALSE(parse_goodput({"ttft:-1"}).is_ok());
  auto slo = parse_goodput({"ttft:100", "tpot:5.5", "e2el:2000"});
  ASSERT_TRUE(slo.is_ok());
  EXPECT_EQ(*slo->ttft_ms, 100);
  EXPECT_EQ(*slo->tpot_ms, 5.5);
  EXPECT_EQ(*slo->e2el_ms, 2000);
}

TEST(Report, SummaryUsesVllmLabels) {
  RunInfo info;
  info.request_rate = std::numeric_limits<double>::infinity();
  info.max_concurrency = 4;
  auto slo = parse_goodput({"ttft:250"});
  std::string s = format_summary(info, compute_metrics(sample(), 2.0, *slo, {99}));
  for (const char* line :
       {"Successful requests:                     3", "Failed requests:                         1",
        "Maximum request concurrency:             4",
        "Request rate configured (RPS):           inf",
        "Benchmark duration (s):                  2.00",
        "Total input tokens:                      35", "Total generated tokens:                  6",
        "Request throughput (req/s):              1.50",
        "Request goodput (req/s):                 1.00",
        "Output token throughput (tok/s):         3.00",
        "Peak output token throughput (tok/s):    5.00",
        "Peak concurrent requests:                2",
        "Total Token throughput (tok/s):          20.50",
        "Mean TTFT (ms):                          200.00",
        "P99 TTFT (ms):                           298.00",
        "Mean TPOT (ms):                          37.50",
        "Median ITL (ms):                         30.00",
        "Median E2EL (ms):                        200.00"}) {
    EXPECT_NE(s.find(line), std::string::npos) << "missing '" << line << "' in\n" << s;
  }
}

TEST(Report, ResultJsonHasVllmKeys) {
  RunInfo info;
  info.request_rate = 2;
  std::vector<RequestRecord> records = sample();
  nlohmann::json j = result_json(info, compute_metrics(records, 2.0, {}, {90, 99.9}), records);
  EXPECT_TRUE(j["request_goodput"].is_null());
  EXPECT_EQ(j["completed"], 3);
  EXPECT_EQ(j["total_output_tokens"], 6);
  EXPECT_NEAR(j["mean_ttft_ms"].get<double>(), 200, 1e-6);
  EXPECT_TRUE(j.contains("p90_tpot_ms"));
  EXPECT_TRUE(j.contains("p99.9_itl_ms"));
  EXPECT_TRUE(j.contains("median_e2el_ms"));
  EXPECT_EQ(j["max_output_tokens_per_s"], 5.0);
  ASSERT_EQ(j["ttfts"].size(), 4u);
  EXPECT_EQ(j["output_lens"][3], 0);  // a failed request generated nothing
  EXPECT_EQ(j["errors"][3], "HTTP 503");
  EXPECT_EQ(j["itls"][0].size(), 2u);
}

TEST(Report, ComparisonShowsRatiosAgainstTheFirst) {
  nlohmann::json a = {{"label", "mixed"}, {"request_throughput", 2.0}, {"mean_ttft_ms", 100.0}};
  nlohmann::json b = {{"label", "pd"}, {"request_throughput", 3.0}, {"mean_ttft_ms", 50.0}};
  std::string t = format_comparison({a, b});
  EXPECT_NE(t.find("mixed"), std::string::npos) << t;
  EXPECT_NE(t.find("1.50x"), std::string::npos) << t;  // throughput 3 / 2
  EXPECT_NE(t.find("0.50x"), std::string::npos) << t;  // TTFT 50 / 100
}

// Two phases: "a" from 0 to 10 s, "b" from 10 to 15 s. Requests belong to
// the phase they arrived in, even when they end after it.
std::vector<RequestRecord> phased_sample() {
  auto tag = [](RequestRecord r, const char* phase) {
    r.phase = phase;
    return r;
  };
  RequestRecord failed;
  failed.phase = "b";
  failed.start_s = 12;
  failed.error = "HTTP 503";
  return {tag(ok(1.0, 0.1, {0.02, 0.02}, 0.14, 3, 64), "a"),  // meets both SLOs
          tag(ok(9.5, 0.2, {0.2, 0.2}, 0.6, 3, 64), "a"),     // TPOT 200 ms: misses
          tag(ok(10.5, 0.4, {0.01}, 0.41, 2, 900), "b"),      // meets both
          tag(ok(14.9, 2.5, {0.01}, 2.51, 2, 900), "b"),      // TTFT 2.5 s: misses, ends at 17.4
          tag(ok(11.0, 0.3, {}, 0.3, 1, 900), "b"),           // one token: TPOT counts as 0
          failed};
}

TEST(PhaseMetrics, EachPhaseCountsItsOwnRequestsOverItsOwnDuration) {
  GoodputSlo slo;
  slo.ttft_ms = 1000;
  slo.tpot_ms = 100;
  auto pm =
      compute_phase_metrics(phased_sample(), {{"a", 0, 10}, {"b", 10, 5}, {"c", 15, 5}}, slo, {90});
  ASSERT_EQ(pm.size(), 3u);
  EXPECT_EQ(pm[0].window.name, "a");
  EXPECT_EQ(pm[0].metrics.completed, 2);
  EXPECT_EQ(pm[0].metrics.failed, 0);
  EXPECT_NEAR(pm[0].metrics.request_throughput, 0.2, kEps);  // 2 over 10 s
  ASSERT_TRUE(pm[0].metrics.request_goodput.has_value());
  EXPECT_NEAR(*pm[0].metrics.request_goodput, 0.1, kEps);  // 1 good over 10 s
  EXPECT_EQ(pm[0].metrics.total_input, 128);

  EXPECT_EQ(pm[1].metrics.completed, 3);
  EXPECT_EQ(pm[1].metrics.failed, 1);
  EXPECT_NEAR(pm[1].metrics.request_throughput, 0.6, kEps);  // 3 over 5 s
  EXPECT_NEAR(*pm[1].metrics.request_goodput, 0.4, kEps);    // 2 good over 5 s
  EXPECT_NEAR(pm[1].metrics.ttft_ms.mean, (400 + 2500 + 300) / 3.0, 1e-6);
  EXPECT_NEAR(pm[1].metrics.duration_s, 5, kEps);

  // A phase no request arrived in: zeros, not an error.
  EXPECT_EQ(pm[2].metrics.completed, 0);
  EXPECT_EQ(*pm[2].metrics.request_goodput, 0);
}

TEST(PhaseMetrics, JsonAndTableCarryEveryPhase) {
  GoodputSlo slo;
  slo.ttft_ms = 1000;
  auto pm = compute_phase_metrics(phased_sample(), {{"a", 0, 10}, {"b", 10, 5}}, slo, {90, 99});
  nlohmann::json j = phases_json(pm);
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[1]["name"], "b");
  EXPECT_EQ(j[1]["start_s"], 10);
  EXPECT_EQ(j[1]["duration_s"], 5);
  EXPECT_EQ(j[1]["completed"], 3);
  EXPECT_NEAR(j[1]["request_goodput"].get<double>(), 0.4, kEps);  // TPOT not checked here
  EXPECT_TRUE(j[1].contains("p99_ttft_ms"));
  EXPECT_FALSE(j[1].contains("timeline"));
  std::string t = format_phases(pm, {90, 99});
  EXPECT_NE(t.find("| b | 10 | 15 | 3 | 1 | 0.40 |"), std::string::npos) << t;
  EXPECT_NE(t.find("P99 TTFT ms"), std::string::npos) << t;
}

TEST(Report, ComparisonAddsAGoodputRowPerPhase) {
  nlohmann::json a = {{"label", "static"},
                      {"request_goodput", 1.0},
                      {"phases",
                       {{{"name", "chat"}, {"request_goodput", 2.0}},
                        {{"name", "summarize"}, {"request_goodput", 0.5}}}}};
  nlohmann::json b = {{"label", "dynamic"},
                      {"request_goodput", 1.5},
                      {"phases",
                       {{{"name", "summarize"}, {"request_goodput", 1.5}},
                        {{"name", "chat"}, {"request_goodput", 2.0}}}}};
  std::string t = format_comparison({a, b});
  size_t chat = t.find("Goodput chat (req/s)");
  size_t sum = t.find("Goodput summarize (req/s)");
  ASSERT_NE(chat, std::string::npos) << t;
  ASSERT_NE(sum, std::string::npos) << t;
  // Matched by name, not position: 1.5 / 0.5 for summarize, 2 / 2 for chat.
  EXPECT_NE(t.find("3.00x", sum), std::string::npos) << t;
  EXPECT_NE(t.substr(chat, sum - chat).find("1.00x"), std::string::npos) << t;
}

}  // namespace
}  // namespace baton::bench
