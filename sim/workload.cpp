#include "sim/workload.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numbers>

namespace baton::sim {

Status validate(const GeneratorOptions& o) {
  if (o.requests < 0) return invalid_argument("requests must not be negative");
  if (!(o.rate > 0)) return invalid_argument("rate must be positive");
  if (!(o.burstiness > 0)) return invalid_argument("burstiness must be positive");
  if (o.tide_amplitude < 0 || o.tide_amplitude >= 1) {
    return invalid_argument("tide amplitude must be in [0, 1)");
  }
  if (!(o.tide_period_s > 0)) return invalid_argument("tide period must be positive");
  if (o.mix_tide_amplitude < 0 || o.mix_tide_amplitude >= 1) {
    return invalid_argument("mixture tide amplitude must be in [0, 1)");
  }
  if (o.scenarios.empty()) return invalid_argument("at least one scenario");
  for (const auto& s : o.scenarios) {
    if (!(s.weight > 0) || s.input_mean < 1 || s.output_mean < 1 || s.range_ratio < 0 ||
        s.range_ratio >= 1 || s.prefix_groups < 0 || s.prefix_len < 0 ||
        (s.prefix_groups > 0 && s.prefix_len >= s.input_mean)) {
      return invalid_argument("scenario '" + s.name + "': bad weight, lengths or prefix");
    }
  }
  return Status();
}

namespace {

class Generator final : public RequestSource {
 public:
  explicit Generator(const GeneratorOptions& o) : o_(o), rng_(o.seed) {
    for (const auto& s : o.scenarios) {
      names_.push_back(s.name);
      weights_.push_back(s.weight);
    }
    pick_ = std::discrete_distribution<int>(weights_.begin(), weights_.end());
  }

  std::optional<SimRequest> next() override {
    if (id_ >= o_.requests) return std::nullopt;
    SimRequest r;
    r.id = id_++;
    // The rate of the tide at the previous arrival sets the next gap; a
    // gamma of shape k and mean 1/rate is Poisson at k = 1, burstier below.
    double rate = o_.rate;
    if (o_.tide_amplitude > 0) {
      rate *= 1 + o_.tide_amplitude * std::sin(2 * std::numbers::pi * t_ / o_.tide_period_s);
    }
    std::gamma_distribution<double> gap(o_.burstiness, 1.0 / (o_.burstiness * rate));
    if (r.id > 0) t_ += gap(rng_);
    r.arrival_s = t_;
    if (weights_.size() > 1 && o_.mix_tide_amplitude > 0) {
      std::vector<double> w = weights_;
      const double n = static_cast<double>(w.size());
      for (size_t i = 0; i < w.size(); ++i) {
        w[i] *= 1 + o_.mix_tide_amplitude *
                        std::sin(2 * std::numbers::pi *
                                 (t_ / o_.tide_period_s + static_cast<double>(i) / n));
      }
      std::discrete_distribution<int> pick(w.begin(), w.end());
      r.scenario = pick(rng_);
    } else if (weights_.size() > 1) {
      r.scenario = pick_(rng_);  // fixed weights: one distribution for the run
    }
    const ScenarioMix& s = o_.scenarios[static_cast<size_t>(r.scenario)];
    r.input_len = draw(s.input_mean, s.range_ratio);
    r.output_len = draw(s.output_mean, s.range_ratio);
    if (s.prefix_groups > 0) {
      r.prefix_group = std::uniform_int_distribution<int32_t>(0, s.prefix_groups - 1)(rng_);
      // Prefix groups are numbered across scenarios so that two scenarios
      // never share one by accident.
      r.prefix_group += r.scenario * 1'000'000;
      r.prefix_len = s.prefix_len;
      r.input_len = std::max(r.input_len, s.prefix_len + 1);
    }
    return r;
  }
  const std::vector<std::string>& scenarios() const override { return names_; }

 private:
  int32_t draw(int32_t mean, double range) {
    if (range <= 0) return mean;
    std::uniform_real_distribution<double> u(mean * (1 - range), mean * (1 + range));
    return std::max<int32_t>(1, static_cast<int32_t>(std::lround(u(rng_))));
  }

  GeneratorOptions o_;
  std::mt19937_64 rng_;
  std::vector<std::string> names_;
  std::vector<double> weights_;
  std::discrete_distribution<int> pick_;  // over weights_
  int64_t id_ = 0;
  double t_ = 0;
};

class ListSource final : public RequestSource {
 public:
  ListSource(std::vector<SimRequest> r, std::vector<std::string> names)
      : requests_(std::move(r)), names_(std::move(names)) {
    std::stable_sort(
        requests_.begin(), requests_.end(),
        [](const SimRequest& a, const SimRequest& b) { return a.arrival_s < b.arrival_s; });
  }
  std::optional<SimRequest> next() override {
    if (next_ >= requests_.size()) return std::nullopt;
    return requests_[next_++];
  }
  const std::vector<std::string>& scenarios() const override { return names_; }

 private:
  std::vector<SimRequest> requests_;
  std::vector<std::string> names_;
  size_t next_ = 0;
};

}  // namespace

std::unique_ptr<RequestSource> make_generator(const GeneratorOptions& options) {
  return std::make_unique<Generator>(options);
}

std::unique_ptr<RequestSource> make_list_source(std::vector<SimRequest> requests,
                                                std::vector<std::string> scenarios) {
  if (scenarios.empty()) scenarios.push_back("");
  return std::make_unique<ListSource>(std::move(requests), std::move(scenarios));
}

Result<std::unique_ptr<RequestSource>> read_trace(const std::string& path) {
  std::ifstream in(path);
  if (!in) return not_found("trace '" + path + "': cannot open");
  std::vector<SimRequest> out;
  std::vector<std::string> names{""};
  std::map<std::string, int32_t> index{{"", 0}};
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    auto where = [&] { return "trace '" + path + "' line " + std::to_string(n) + ": "; };
    if (!j.is_object()) return invalid_argument(where() + "not a JSON object");
    try {
      SimRequest r;
      r.id = n - 1;
      r.arrival_s = j.at("arrival_s").get<double>();
      r.input_len = j.at("input_len").get<int32_t>();
      r.output_len = j.at("output_len").get<int32_t>();
      r.prefix_group = j.value("prefix_group", -1);
      r.prefix_len = j.value("prefix_len", 0);
      std::string scenario = j.value("scenario", std::string());
      auto [it, added] = index.emplace(scenario, static_cast<int32_t>(names.size()));
      if (added) names.push_back(scenario);
      r.scenario = it->second;
      if (r.arrival_s < 0 || r.input_len < 1 || r.output_len < 1 || r.prefix_len < 0 ||
          r.prefix_len > r.input_len) {
        return invalid_argument(where() + "bad arrival or lengths");
      }
      out.push_back(r);
    } catch (const nlohmann::json::exception& e) {
      return invalid_argument(where() + e.what());
    }
  }
  return std::unique_ptr<RequestSource>(
      std::make_unique<ListSource>(std::move(out), std::move(names)));
}

}  // namespace baton::sim
