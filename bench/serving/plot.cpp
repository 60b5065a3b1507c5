#include "bench/serving/plot.h"

#include <fmt/format.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

namespace baton::bench {

namespace {

std::string safe_name(const std::string& s) {
  std::string out;
  for (char c : s) out += std::isalnum(static_cast<unsigned char>(c)) || c == '-' ? c : '_';
  return out.empty() ? "run" : out;
}

// A string literal for gnuplot (single quotes; a quote is doubled).
std::string gp_string(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    out += c;
    if (c == '\'') out += '\'';
  }
  return out + "'";
}

std::string label_of(const nlohmann::json& r, size_t i) {
  std::string label = r.value("label", std::string());
  return label.empty() ? fmt::format("run {}", i + 1) : label;
}

// The label, plus the load when several results share the label (a sweep).
std::string name_of(const std::vector<nlohmann::json>& all, size_t i) {
  std::string label = label_of(all[i], i);
  size_t same = 0;
  for (size_t k = 0; k < all.size(); ++k) same += label_of(all[k], k) == label;
  if (same < 2) return label;
  const nlohmann::json& r = all[i];
  std::string rate = r["request_rate"].is_number()
                         ? fmt::format("{:g}", r["request_rate"].get<double>())
                     : r["request_rate"].is_string() ? r["request_rate"].get<std::string>()
                                                     : "?";
  std::string name = label + " rate " + rate;
  if (r.contains("max_concurrency") && r["max_concurrency"].is_number()) {
    name += fmt::format(" conc {}", r["max_concurrency"].get<int64_t>());
  }
  return name;
}

std::vector<double> numbers(const nlohmann::json& r, const char* key) {
  std::vector<double> v;
  if (!r.contains(key) || !r[key].is_array()) return v;
  for (const auto& x : r[key]) v.push_back(x.is_number() ? x.get<double>() : 0.0);
  return v;
}

// Successful requests' values of a per-request array, in milliseconds.
std::vector<double> successful_ms(const nlohmann::json& r, const char* key) {
  std::vector<double> v = numbers(r, key), out;
  const nlohmann::json* ok = r.contains("successes") ? &r["successes"] : nullptr;
  for (size_t i = 0; i < v.size(); ++i) {
    if (ok && i < ok->size() && !(*ok)[i].get<bool>()) continue;
    out.push_back(v[i] * 1000);
  }
  return out;
}

std::string cdf_data(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    out += fmt::format("{:.4f} {:.6f}\n", v[i], static_cast<double>(i + 1) / v.size());
  }
  return out.empty() ? "0 0\n" : out;
}

double rate_x(const nlohmann::json& r) {
  const auto& rate = r["request_rate"];
  if (rate.is_number() && std::isfinite(rate.get<double>())) return rate.get<double>();
  return r.value("request_throughput", 0.0);
}

}  // namespace

Result<PlotFiles> make_plot_files(const std::vector<nlohmann::json>& results,
                                  const std::string& out_dir) {
  if (results.empty()) return invalid_argument("plot: no result to draw");
  for (size_t i = 0; i < results.size(); ++i) {
    for (const char* key : {"ttfts", "e2els", "itls", "timeline", "request_throughput"}) {
      if (!results[i].contains(key)) {
        return invalid_argument(
            fmt::format("plot: result {} has no '{}' (not a baton bench result?)",
                        label_of(results[i], i), key));
      }
    }
  }
  namespace fs = std::filesystem;
  auto path = [&](const std::string& name) { return (fs::path(out_dir) / name).string(); };
  PlotFiles f;
  std::string& s = f.script;
  s += "set terminal pngcairo size 1200,900 font ',10'\nset grid\nset key bottom right\n";

  // Latency CDFs.
  f.png.push_back(path("latency_cdf.png"));
  s += fmt::format("set output {}\nset multiplot layout 2,2 title 'Latency CDFs'\n",
                   gp_string(f.png.back()));
  s += "set ylabel 'fraction of requests'\nset yrange [0:1]\n";
  const std::vector<std::pair<const char*, const char*>> metrics = {
      {"ttft", "TTFT (ms)"}, {"tpot", "TPOT (ms)"}, {"itl", "ITL (ms)"}, {"e2el", "E2EL (ms)"}};
  for (const auto& [name, axis] : metrics) {
    std::vector<std::string> parts;
    for (size_t i = 0; i < results.size(); ++i) {
      const nlohmann::json& r = results[i];
      std::vector<double> v;
      if (std::string(name) == "itl") {
        const nlohmann::json* ok = r.contains("successes") ? &r["successes"] : nullptr;
        for (size_t k = 0; k < r["itls"].size(); ++k) {
          if (ok && k < ok->size() && !(*ok)[k].get<bool>()) continue;
          for (const auto& x : r["itls"][k]) v.push_back(x.get<double>() * 1000);
        }
      } else if (std::string(name) == "tpot") {
        std::vector<double> t = numbers(r, "tpots"), outs = numbers(r, "output_lens");
        for (size_t k = 0; k < t.size() && k < outs.size(); ++k) {
          if (outs[k] > 1) v.push_back(t[k] * 1000);
        }
      } else {
        v = successful_ms(r, name == std::string("ttft") ? "ttfts" : "e2els");
      }
      std::string file = path(fmt::format("cdf_{}_{}.dat", name, i));
      f.data.emplace_back(file, cdf_data(std::move(v)));
      parts.push_back(fmt::format("{} using 1:2 with steps lw 2 title {}", gp_string(file),
                                  gp_string(name_of(results, i))));
    }
    s += fmt::format("set xlabel '{}'\nplot ", axis);
    for (size_t k = 0; k < parts.size(); ++k) s += (k ? ", " : "") + parts[k];
    s += "\n";
  }
  s += "unset multiplot\nset yrange [*:*]\n";

  // Throughput and TTFT against the request rate, one line per label.
  if (results.size() >= 2) {
    std::map<std::string, std::vector<const nlohmann::json*>> by_label;
    std::vector<std::string> order;
    for (size_t i = 0; i < results.size(); ++i) {
      std::string label = results[i].value("label", std::string("run"));
      if (!by_label.count(label)) order.push_back(label);
      by_label[label].push_back(&results[i]);
    }
    std::vector<std::string> tput, ttft;
    for (size_t g = 0; g < order.size(); ++g) {
      auto rs = by_label[order[g]];
      std::sort(rs.begin(), rs.end(), [](auto* a, auto* b) { return rate_x(*a) < rate_x(*b); });
      std::string data;
      for (const nlohmann::json* r : rs) {
        data += fmt::format("{:.4f} {:.4f} {:.4f} {:.4f}\n", rate_x(*r),
                            r->value("output_throughput", 0.0), r->value("mean_ttft_ms", 0.0),
                            r->value("p99_ttft_ms", r->value("mean_ttft_ms", 0.0)));
      }
      std::string file = path(fmt::format("vs_rate_{}.dat", safe_name(order[g])));
      f.data.emplace_back(file, data);
      tput.push_back(fmt::format("{} using 1:2 with linespoints lw 2 title {}", gp_string(file),
                                 gp_string(order[g])));
      ttft.push_back(fmt::format("{} using 1:3 with linespoints lw 2 title {}", gp_string(file),
                                 gp_string(order[g] + " mean")));
      ttft.push_back(fmt::format("{} using 1:4 with linespoints lw 2 dt 2 title {}",
                                 gp_string(file), gp_string(order[g] + " P99")));
    }
    f.png.push_back(path("vs_rate.png"));
    s += fmt::format("set output {}\nset multiplot layout 2,1 title 'Against the request rate'\n",
                     gp_string(f.png.back()));
    s += "set xlabel 'request rate (req/s)'\nset key top left\nset yrange [0:*]\n";
    s += "set ylabel 'output tokens/s'\nplot ";
    for (size_t k = 0; k < tput.size(); ++k) s += (k ? ", " : "") + tput[k];
    s += "\nset ylabel 'TTFT (ms)'\nplot ";
    for (size_t k = 0; k < ttft.size(); ++k) s += (k ? ", " : "") + ttft[k];
    s += "\nunset multiplot\nset key bottom right\nset yrange [*:*]\n";
  }

  // One timeline per result.
  for (size_t i = 0; i < results.size(); ++i) {
    const nlohmann::json& r = results[i];
    std::string data;
    for (const auto& b : r["timeline"]) {
      data += fmt::format("{} {} {} {:.4f}\n", b.value("t_s", 0.0), b.value("output_tokens", 0),
                          b.value("active", 0), b.value("mean_ttft_ms", 0.0));
    }
    std::string name = fmt::format("timeline_{}", safe_name(name_of(results, i)));
    std::string file = path(name + ".dat");
    f.data.emplace_back(file, data.empty() ? "0 0 0 0\n" : data);
    f.png.push_back(path(name + ".png"));
    s += fmt::format("set output {}\nset multiplot layout 2,1 title {}\n", gp_string(f.png.back()),
                     gp_string("Timeline: " + name_of(results, i)));
    s += "set xlabel 'time since start (s)'\nset key top left\nset y2tics\n";
    s += "set yrange [0:*]\nset y2range [0:*]\n";
    s += "set ylabel 'output tokens/s'\nset y2label 'active requests'\n";
    s += fmt::format(
        "plot {0} using 1:2 with steps lw 2 title 'output tokens/s', {0} using "
        "1:3 axes x1y2 with steps lw 2 title 'active requests'\n",
        gp_string(file));
    s += "unset y2tics\nunset y2label\nset ylabel 'mean TTFT (ms)'\n";
    s += fmt::format(
        "plot {0} using ($1+0.5):($4 > 0 ? $4 : 1/0) with linespoints lw 2 title 'mean TTFT of "
        "requests sent in the second'\n",
        gp_string(file));
    s += "unset multiplot\nset key bottom right\nset yrange [*:*]\n";
  }
  return f;
}

Result<std::vector<std::string>> plot_results(const std::vector<nlohmann::json>& results,
                                              const PlotOptions& options) {
  BATON_ASSIGN_OR_RETURN(PlotFiles files, make_plot_files(results, options.out_dir));
  std::error_code ec;
  std::filesystem::create_directories(options.out_dir, ec);
  if (ec) return unavailable(options.out_dir + ": " + ec.message());
  for (const auto& [p, content] : files.data) {
    std::ofstream out(p);
    out << content;
    if (!out) return unavailable(p + ": write failed");
  }
  std::string script = (std::filesystem::path(options.out_dir) / "plots.gp").string();
  {
    std::ofstream out(script);
    out << files.script;
    if (!out) return unavailable(script + ": write failed");
  }
  auto shell_quoted = [](const std::string& s) {
    std::string out = "'";
    for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
  };
  std::string cmd = shell_quoted(options.gnuplot) + " " + shell_quoted(script) + " 2>&1";
  int rc = std::system(cmd.c_str());
  if (rc != 0) {
    int code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    if (code == 127) {
      return unavailable("gnuplot not found (install gnuplot-nox; scripts/install-deps.sh does)");
    }
    return unavailable(fmt::format("gnuplot failed (exit {}) on {}", code, script));
  }
  return files.png;
}

}  // namespace baton::bench
