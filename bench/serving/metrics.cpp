#include "bench/serving/metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace baton::bench {

Result<GoodputSlo> parse_goodput(const std::vector<std::string>& items) {
  GoodputSlo slo;
  for (const std::string& item : items) {
    size_t colon = item.find(':');
    if (colon == std::string::npos) {
      return invalid_argument("--goodput '" + item + "': expected ttft:MS, tpot:MS or e2el:MS");
    }
    std::string name = item.substr(0, colon);
    double ms = 0;
    try {
      size_t used = 0;
      std::string value = item.substr(colon + 1);
      ms = std::stod(value, &used);
      if (used != value.size()) throw std::invalid_argument(value);
    } catch (const std::exception&) {
      return invalid_argument("--goodput '" + item + "': the value is not a number");
    }
    if (!(ms >= 0)) return invalid_argument("--goodput '" + item + "': must be >= 0 ms");
    if (name == "ttft") {
      slo.ttft_ms = ms;
    } else if (name == "tpot") {
      slo.tpot_ms = ms;
    } else if (name == "e2el") {
      slo.e2el_ms = ms;
    } else {
      return invalid_argument("--goodput '" + item + "': unknown metric '" + name +
                              "' (ttft, tpot or e2el)");
    }
  }
  return slo;
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  double rank = p / 100.0 * static_cast<double>(values.size() - 1);
  size_t lo = static_cast<size_t>(std::floor(rank));
  size_t hi = std::min(lo + 1, values.size() - 1);
  double frac = rank - static_cast<double>(lo);
  return values[lo] + (values[hi] - values[lo]) * frac;
}

Distribution describe(const std::vector<double>& in, const std::vector<double>& ps, double scale) {
  std::vector<double> values = in.empty() ? std::vector<double>{0.0} : in;
  Distribution d;
  double n = static_cast<double>(values.size());
  d.mean = std::accumulate(values.begin(), values.end(), 0.0) / n;
  double var = 0;
  for (double v : values) var += (v - d.mean) * (v - d.mean);
  d.std = std::sqrt(var / n) * scale;
  d.mean *= scale;
  d.median = percentile(values, 50) * scale;
  for (double p : ps) d.percentiles.emplace_back(p, percentile(values, p) * scale);
  return d;
}

double request_tpot_s(const RequestRecord& r) {
  if (r.output_tokens <= 1) return 0;
  return (r.latency_s - r.ttft_s) / (r.output_tokens - 1);
}

BenchmarkMetrics compute_metrics(const std::vector<RequestRecord>& records, double duration_s,
                                 const GoodputSlo& slo, const std::vector<double>& percentiles) {
  BenchmarkMetrics m;
  m.duration_s = duration_s;
  std::vector<double> ttfts, tpots, itls, e2els;
  int64_t good = 0;
  for (const RequestRecord& r : records) {
    if (!r.success) {
      ++m.failed;
      continue;
    }
    ++m.completed;
    m.total_input += r.prompt_tokens;
    m.total_output += r.output_tokens;
    double tpot = request_tpot_s(r);
    if (r.output_tokens > 1) tpots.push_back(tpot);
    itls.insert(itls.end(), r.itl_s.begin(), r.itl_s.end());
    ttfts.push_back(r.ttft_s);
    e2els.push_back(r.latency_s);
    bool ok = (!slo.ttft_ms || r.ttft_s * 1000 <= *slo.ttft_ms) &&
              (!slo.tpot_ms || tpot * 1000 <= *slo.tpot_ms) &&
              (!slo.e2el_ms || r.latency_s * 1000 <= *slo.e2el_ms);
    if (ok) ++good;
  }
  if (duration_s > 0) {
    m.request_throughput = m.completed / duration_s;
    if (slo.any()) m.request_goodput = good / duration_s;
    m.output_throughput = m.total_output / duration_s;
    m.total_token_throughput = (m.total_input + m.total_output) / duration_s;
  } else if (slo.any()) {
    m.request_goodput = 0;
  }
  m.ttft_ms = describe(ttfts, percentiles, 1000);
  m.tpot_ms = describe(tpots, percentiles, 1000);
  m.itl_ms = describe(itls, percentiles, 1000);
  m.e2el_ms = describe(e2els, percentiles, 1000);

  // Peaks, bucketed by whole seconds from the earliest successful start.
  double first = 0, last = 0;
  bool any = false;
  for (const RequestRecord& r : records) {
    if (!r.success) continue;
    first = any ? std::min(first, r.start_s) : r.start_s;
    last = any ? std::max(last, r.start_s + r.latency_s) : r.start_s + r.latency_s;
    any = true;
  }
  if (any) {
    size_t buckets = static_cast<size_t>(std::ceil(last - first)) + 1;
    std::vector<int64_t> tokens(buckets, 0), active(buckets, 0);
    for (const RequestRecord& r : records) {
      if (!r.success) continue;
      double t = r.start_s + r.ttft_s;
      auto count = [&](double at) {
        double b = std::floor(at - first);
        if (b >= 0 && b < static_cast<double>(buckets)) ++tokens[static_cast<size_t>(b)];
      };
      count(t);
      for (double gap : r.itl_s) count(t += gap);
      size_t from = static_cast<size_t>(r.start_s - first);
      size_t to = std::min(buckets - 1, static_cast<size_t>(r.start_s + r.latency_s - first));
      for (size_t s = from; s <= to; ++s) ++active[s];
    }
    m.max_output_tokens_per_s =
        static_cast<double>(*std::max_element(tokens.begin(), tokens.end()));
    m.max_concurrent_requests = *std::max_element(active.begin(), active.end());
  }

  // The timeline, from the run's start (time 0), for plots.
  double end = duration_s;
  for (const RequestRecord& r : records) end = std::max(end, r.start_s + r.latency_s);
  size_t n = static_cast<size_t>(std::ceil(end)) + (end == std::ceil(end) ? 1 : 0);
  m.timeline.resize(std::max<size_t>(n, 1));
  std::vector<double> ttft_sum(m.timeline.size(), 0);
  std::vector<int64_t> ttft_count(m.timeline.size(), 0);
  auto bucket = [&](double at) {
    return std::min(m.timeline.size() - 1, static_cast<size_t>(std::max(0.0, at)));
  };
  for (size_t i = 0; i < m.timeline.size(); ++i) m.timeline[i].start_s = static_cast<double>(i);
  for (const RequestRecord& r : records) {
    ++m.timeline[bucket(r.start_s)].started;
    ++m.timeline[bucket(r.start_s + r.latency_s)].finished;
    if (!r.success) continue;
    double t = r.start_s + r.ttft_s;
    ++m.timeline[bucket(t)].output_tokens;
    for (double gap : r.itl_s) ++m.timeline[bucket(t += gap)].output_tokens;
    for (size_t s = bucket(r.start_s); s <= bucket(r.start_s + r.latency_s); ++s) {
      ++m.timeline[s].active;
    }
    ttft_sum[bucket(r.start_s)] += r.ttft_s * 1000;
    ++ttft_count[bucket(r.start_s)];
  }
  for (size_t i = 0; i < m.timeline.size(); ++i) {
    if (ttft_count[i]) m.timeline[i].mean_ttft_ms = ttft_sum[i] / ttft_count[i];
  }
  return m;
}

std::vector<PhaseMetrics> compute_phase_metrics(const std::vector<RequestRecord>& records,
                                                const std::vector<PhaseWindow>& windows,
                                                const GoodputSlo& slo,
                                                const std::vector<double>& percentiles) {
  std::vector<PhaseMetrics> out;
  for (const PhaseWindow& w : windows) {
    std::vector<RequestRecord> in_phase;
    for (const RequestRecord& r : records) {
      if (r.phase == w.name) in_phase.push_back(r);
    }
    out.push_back({w, compute_metrics(in_phase, w.duration_s, slo, percentiles)});
  }
  return out;
}

}  // namespace baton::bench
