#include "controller/load_report.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <map>

namespace baton::controller {

namespace {

bool is_name_char(char c, bool first) {
  bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
  return alpha || (!first && c >= '0' && c <= '9');
}

// strtod needs a terminated string; sample values are short.
std::optional<double> parse_value(std::string_view v) {
  if (v == "+Inf" || v == "Inf") return HUGE_VAL;
  if (v == "-Inf") return -HUGE_VAL;
  if (v == "NaN") return std::nan("");
  std::string s(v);
  char* end = nullptr;
  double d = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size()) return std::nullopt;
  return d;
}

Status line_error(size_t line_no, std::string_view why) {
  return invalid_argument("metrics line " + std::to_string(line_no) + ": " + std::string(why));
}

Result<MetricSample> parse_sample_line(std::string_view line, size_t line_no) {
  MetricSample s;
  size_t i = 0;
  while (i < line.size() && is_name_char(line[i], i == 0)) ++i;
  if (i == 0) return line_error(line_no, "expected a metric name");
  s.name = std::string(line.substr(0, i));
  if (i < line.size() && line[i] == '{') {
    ++i;
    while (true) {
      while (i < line.size() && line[i] == ' ') ++i;
      if (i < line.size() && line[i] == '}') {
        ++i;
        break;
      }
      size_t start = i;
      while (i < line.size() && is_name_char(line[i], i == start) && line[i] != ':') ++i;
      if (i == start) return line_error(line_no, "expected a label name");
      std::string name(line.substr(start, i - start));
      if (i + 1 >= line.size() || line[i] != '=' || line[i + 1] != '"') {
        return line_error(line_no, "expected =\" after label " + name);
      }
      i += 2;
      std::string value;
      bool closed = false;
      while (i < line.size()) {
        char c = line[i++];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c == '\\' && i < line.size()) {
          char e = line[i++];
          value += e == 'n' ? '\n' : e;
        } else {
          value += c;
        }
      }
      if (!closed) return line_error(line_no, "unterminated label value");
      s.labels.emplace_back(std::move(name), std::move(value));
      if (i < line.size() && line[i] == ',') ++i;
    }
  }
  while (i < line.size() && line[i] == ' ') ++i;
  size_t vstart = i;
  while (i < line.size() && line[i] != ' ') ++i;
  auto value = parse_value(line.substr(vstart, i - vstart));
  if (!value) return line_error(line_no, "bad sample value");
  s.value = *value;
  return s;
}

// Collects name_bucket{le=...} samples (summed over any other labels) into
// cumulative counts.
HistogramCounts collect_histogram(const std::vector<MetricSample>& samples,
                                  const std::string& name) {
  const std::string bucket = name + "_bucket";
  std::map<double, double> by_bound;
  double inf = 0;
  bool any = false;
  for (const MetricSample& s : samples) {
    if (s.name != bucket) continue;
    auto le = s.label("le");
    if (!le) continue;
    auto bound = parse_value(*le);
    if (!bound) continue;
    any = true;
    if (std::isinf(*bound)) {
      inf += s.value;
    } else {
      by_bound[*bound] += s.value;
    }
  }
  HistogramCounts h;
  if (!any) return h;
  for (auto& [b, c] : by_bound) {
    h.bounds.push_back(b);
    h.cumulative.push_back(c);
  }
  h.cumulative.push_back(inf);
  return h;
}

double sum_of(const std::vector<MetricSample>& samples, std::string_view name) {
  double total = 0;
  for (const MetricSample& s : samples) {
    if (s.name == name) total += s.value;
  }
  return total;
}

}  // namespace

std::optional<std::string_view> MetricSample::label(std::string_view n) const {
  for (const auto& [k, v] : labels) {
    if (k == n) return std::string_view(v);
  }
  return std::nullopt;
}

Result<std::vector<MetricSample>> parse_prometheus_text(std::string_view text) {
  std::vector<MetricSample> out;
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    if (line.empty() || line.front() == '#') continue;
    BATON_ASSIGN_OR_RETURN(MetricSample s, parse_sample_line(line, line_no));
    out.push_back(std::move(s));
  }
  return out;
}

double LatencyWindow::total() const {
  double t = 0;
  for (double c : counts) t += c;
  return t;
}

std::optional<double> LatencyWindow::quantile(double q) const {
  double n = total();
  if (n <= 0 || counts.size() != bounds.size() + 1) return std::nullopt;
  double rank = q * n;
  double seen = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] > 0 && seen + counts[i] >= rank) {
      if (i == bounds.size()) return bounds.empty() ? 0.0 : bounds.back();
      double lo = i == 0 ? 0.0 : bounds[i - 1];
      double hi = bounds[i];
      return lo + (hi - lo) * std::clamp((rank - seen) / counts[i], 0.0, 1.0);
    }
    seen += counts[i];
  }
  return bounds.empty() ? 0.0 : bounds.back();
}

std::optional<double> LatencyWindow::fraction_above(double x) const {
  double n = total();
  if (n <= 0 || counts.size() != bounds.size() + 1) return std::nullopt;
  double above = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    double lo = i == 0 ? 0.0 : bounds[i - 1];
    if (i == bounds.size()) {
      if (x <= lo || bounds.empty()) {
        above += counts[i];
      }
      continue;
    }
    double hi = bounds[i];
    if (x <= lo) {
      above += counts[i];
    } else if (x < hi) {
      above += counts[i] * (hi - x) / (hi - lo);
    }
  }
  return above / n;
}

bool LatencyWindow::merge(const LatencyWindow& other) {
  if (other.counts.empty()) return true;
  if (counts.empty()) {
    *this = other;
    return true;
  }
  if (bounds != other.bounds || counts.size() != other.counts.size()) return false;
  for (size_t i = 0; i < counts.size(); ++i) counts[i] += other.counts[i];
  return true;
}

LatencyWindow window_between(const HistogramCounts* prev, const HistogramCounts& cur) {
  LatencyWindow w;
  w.bounds = cur.bounds;
  if (cur.cumulative.size() != cur.bounds.size() + 1) return LatencyWindow{};
  std::vector<double> diff = cur.cumulative;
  bool usable = prev != nullptr && prev->bounds == cur.bounds &&
                prev->cumulative.size() == cur.cumulative.size();
  if (usable) {
    for (size_t i = 0; i < diff.size(); ++i) {
      if (cur.cumulative[i] < prev->cumulative[i]) {
        usable = false;  // a restart: the counters began again
        break;
      }
    }
  }
  if (usable) {
    for (size_t i = 0; i < diff.size(); ++i) diff[i] = cur.cumulative[i] - prev->cumulative[i];
  }
  w.counts.resize(diff.size());
  double below = 0;
  for (size_t i = 0; i < diff.size(); ++i) {
    w.counts[i] = std::max(0.0, diff[i] - below);
    below = std::max(below, diff[i]);
  }
  return w;
}

Result<MetricsScrape> parse_metrics(std::string_view text) {
  BATON_ASSIGN_OR_RETURN(std::vector<MetricSample> samples, parse_prometheus_text(text));
  MetricsScrape m;
  m.running = sum_of(samples, "baton:num_requests_running");
  m.waiting = sum_of(samples, "baton:num_requests_waiting");
  m.kv_usage = sum_of(samples, "baton:kv_cache_usage_perc");
  m.ttft = collect_histogram(samples, "baton:time_to_first_token_seconds");
  m.tpot = collect_histogram(samples, "baton:time_per_output_token_seconds");
  m.prefill_ttft = collect_histogram(samples, "baton:prefill_time_to_first_token_seconds");
  m.itl = collect_histogram(samples, "baton:inter_token_latency_seconds");
  m.rejected_total = sum_of(samples, "baton:request_rejected_total");
  m.finished_total = sum_of(samples, "baton:request_success_total");
  for (const MetricSample& s : samples) {
    if (s.name == "baton:instance_role" && s.value > 0) {
      if (auto r = s.label("role")) m.role = std::string(*r);
    }
  }
  return m;
}

LoadReport make_load_report(const MetricsScrape* previous, const MetricsScrape& current,
                            Clock::TimePoint at) {
  LoadReport r;
  r.at = at;
  r.running = current.running;
  r.waiting = current.waiting;
  r.kv_usage = current.kv_usage;
  r.ttft = window_between(previous ? &previous->ttft : nullptr, current.ttft);
  r.tpot = window_between(previous ? &previous->tpot : nullptr, current.tpot);
  r.prefill_ttft =
      window_between(previous ? &previous->prefill_ttft : nullptr, current.prefill_ttft);
  r.itl = window_between(previous ? &previous->itl : nullptr, current.itl);
  auto delta = [](const MetricsScrape* p, double prev_v, double cur_v) {
    if (p == nullptr || cur_v < prev_v) return cur_v;
    return cur_v - prev_v;
  };
  r.rejected = delta(previous, previous ? previous->rejected_total : 0, current.rejected_total);
  r.finished = delta(previous, previous ? previous->finished_total : 0, current.finished_total);
  r.role = current.role;
  return r;
}

LoadReport merge_reports(const std::vector<LoadReport>& reports, double enough) {
  if (reports.empty()) return LoadReport{};
  LoadReport out = reports.back();
  out.rejected = out.finished = 0;
  for (const LoadReport& r : reports) {
    out.rejected += r.rejected;
    out.finished += r.finished;
  }
  auto newest_back = [&](LatencyWindow LoadReport::*window) {
    LatencyWindow w;
    for (auto it = reports.rbegin(); it != reports.rend() && w.total() < enough; ++it) {
      // Bounds only change when an instance is replaced by another build;
      // the newer windows are kept then.
      if (!w.merge((*it).*window)) break;
    }
    out.*window = std::move(w);
  };
  newest_back(&LoadReport::ttft);
  newest_back(&LoadReport::tpot);
  newest_back(&LoadReport::prefill_ttft);
  newest_back(&LoadReport::itl);
  return out;
}

}  // namespace baton::controller
