#include "bench/serving/workload.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

namespace baton::bench {

namespace {

// Short, frequent words: nearly all are a single token (with their leading
// space) for the BPE vocabularies of Llama-family models and of baton-tiny.
constexpr std::array<const char*, 64> kWords = {
    "the",  "of",    "and",   "to",   "in",   "is",    "you",   "that",  "it",   "he",    "was",
    "for",  "on",    "are",   "as",   "with", "his",   "they",  "at",    "be",   "this",  "have",
    "from", "or",    "one",   "had",  "by",   "word",  "but",   "not",   "what", "all",   "were",
    "we",   "when",  "your",  "can",  "said", "there", "use",   "an",    "each", "which", "she",
    "do",   "how",   "their", "if",   "will", "up",    "other", "about", "out",  "many",  "then",
    "them", "these", "so",    "some", "her",  "would", "make",  "like",  "time"};

// Conversation ids are offset so that single-turn requests (keyed by their
// own id) and conversations never share a word stream.
constexpr uint64_t kConversationKey = 0x5eed000000000000ull;

// Seeds a word stream from a few integers (SplitMix64 steps).
uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t z = a + 0x9e3779b97f4a7c15ull * (b + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void append_words(std::string& out, int count, uint64_t key) {
  std::mt19937_64 rng(key);
  for (int i = 0; i < count; ++i) {
    if (!out.empty()) out.push_back(' ');
    out += kWords[rng() % kWords.size()];
  }
}

uint64_t hash_text(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

Result<double> parse_number(const std::string& s, const std::string& what) {
  try {
    size_t used = 0;
    double v = std::stod(s, &used);
    if (used != s.size() || !std::isfinite(v)) throw std::invalid_argument(s);
    return v;
  } catch (const std::exception&) {
    return invalid_argument(what + ": '" + s + "' is not a number");
  }
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(s);
  while (std::getline(in, part, sep)) parts.push_back(part);
  if (!s.empty() && s.back() == sep) parts.emplace_back();
  return parts;
}

}  // namespace

Result<LengthDistribution> parse_length_distribution(const std::string& name) {
  if (name == "uniform") return LengthDistribution::kUniform;
  if (name == "lognormal") return LengthDistribution::kLognormal;
  return invalid_argument("length distribution '" + name + "': expected uniform or lognormal");
}

int draw_length(const LengthSpec& spec, std::mt19937_64& rng) {
  double v = spec.mean;
  if (spec.distribution == LengthDistribution::kUniform) {
    if (spec.range_ratio > 0) {
      int lo = static_cast<int>(std::floor(spec.mean * (1 - spec.range_ratio)));
      int hi = static_cast<int>(std::ceil(spec.mean * (1 + spec.range_ratio)));
      v = std::uniform_int_distribution<int>(std::max(1, lo), std::max(1, hi))(rng);
    }
  } else {
    // A lognormal whose mean is spec.mean: mu = ln(mean) - sigma^2 / 2.
    double mu = std::log(std::max(1, spec.mean)) - spec.sigma * spec.sigma / 2;
    v = std::lognormal_distribution<double>(mu, spec.sigma)(rng);
  }
  return std::max(1, static_cast<int>(std::lround(v)));
}

Result<Scenario> parse_scenario(const std::string& text, const Scenario& base) {
  std::vector<std::string> f = split(text, ':');
  if (f.size() != 4 && f.size() != 6) {
    return invalid_argument(
        "scenario '" + text +
        "': expected NAME:WEIGHT:INPUT_LEN:OUTPUT_LEN[:PREFIX_GROUPS:PREFIX_LEN]");
  }
  Scenario s = base;
  s.name = f[0];
  if (s.name.empty()) return invalid_argument("scenario '" + text + "': empty name");
  std::vector<double> v;
  for (size_t i = 1; i < f.size(); ++i) {
    BATON_ASSIGN_OR_RETURN(double x, parse_number(f[i], "scenario '" + text + "'"));
    if (x < 0 || (i >= 2 && x != std::floor(x))) {
      return invalid_argument("scenario '" + text + "': '" + f[i] +
                              "' must be a whole number >= 0");
    }
    v.push_back(x);
  }
  if (v[0] <= 0) return invalid_argument("scenario '" + text + "': weight must be > 0");
  if (v[1] < 1 || v[2] < 1)
    return invalid_argument("scenario '" + text + "': lengths must be >= 1");
  s.weight = v[0];
  s.input.mean = static_cast<int>(v[1]);
  s.output.mean = static_cast<int>(v[2]);
  if (v.size() == 5) {
    s.prefix_groups = static_cast<int>(v[3]);
    s.prefix_len = static_cast<int>(v[4]);
  }
  return s;
}

Result<std::vector<RatePhase>> parse_phases(const std::string& text) {
  std::vector<RatePhase> phases;
  for (const std::string& item : split(text, ',')) {
    std::vector<std::string> f = split(item, ':');
    if (f.size() != 2) return invalid_argument("phase '" + item + "': expected DURATION_S:RATE");
    BATON_ASSIGN_OR_RETURN(double d, parse_number(f[0], "phase '" + item + "'"));
    BATON_ASSIGN_OR_RETURN(double r, parse_number(f[1], "phase '" + item + "'"));
    if (d <= 0 || r <= 0) return invalid_argument("phase '" + item + "': both must be > 0");
    phases.push_back({d, r});
  }
  if (phases.empty()) return invalid_argument("--rate-phases: no phase given");
  return phases;
}

Result<ShapePhase> parse_shape_phase(const std::string& text, const Scenario& base) {
  std::vector<std::string> f = split(text, ':');
  const std::string what = "phase '" + text + "'";
  if (f.size() != 5) {
    return invalid_argument(what + ": expected NAME:DURATION_S:RATE:INPUT_LEN:OUTPUT_LEN");
  }
  ShapePhase p;
  p.name = f[0];
  if (p.name.empty()) return invalid_argument(what + ": empty name");
  p.input = base.input;
  p.output = base.output;
  BATON_ASSIGN_OR_RETURN(p.duration_s, parse_number(f[1], what));
  BATON_ASSIGN_OR_RETURN(p.rate, parse_number(f[2], what));
  if (p.duration_s <= 0 || p.rate <= 0) {
    return invalid_argument(what + ": duration and rate must be > 0");
  }
  for (int i : {3, 4}) {
    BATON_ASSIGN_OR_RETURN(double len, parse_number(f[i], what));
    if (len < 1 || len != std::floor(len) || len > (1 << 24)) {
      return invalid_argument(what + ": '" + f[i] + "' must be a whole number >= 1");
    }
    (i == 3 ? p.input : p.output).mean = static_cast<int>(len);
  }
  return p;
}

std::vector<double> phase_starts(const std::vector<ShapePhase>& phases) {
  std::vector<double> starts;
  double t = 0;
  for (const ShapePhase& p : phases) {
    starts.push_back(t);
    t += p.duration_s;
  }
  return starts;
}

Result<std::vector<RequestSpec>> make_phased_workload(const std::vector<ShapePhase>& phases,
                                                      uint64_t seed, double burstiness) {
  if (phases.empty()) return invalid_argument("workload: no phase");
  if (!(burstiness > 0)) return invalid_argument("burstiness must be > 0");
  for (size_t i = 0; i < phases.size(); ++i) {
    const ShapePhase& p = phases[i];
    if (p.name.empty()) return invalid_argument("workload: a phase has no name");
    if (!(p.duration_s > 0) || !std::isfinite(p.duration_s) || !(p.rate > 0) ||
        !std::isfinite(p.rate)) {
      return invalid_argument("phase " + p.name + ": duration and rate must be finite and > 0");
    }
    for (size_t j = 0; j < i; ++j) {
      if (phases[j].name == p.name) return invalid_argument("phase " + p.name + ": given twice");
    }
  }
  std::mt19937_64 rng(seed);
  std::vector<RequestSpec> specs;
  std::vector<double> starts = phase_starts(phases);
  for (size_t i = 0; i < phases.size(); ++i) {
    const ShapePhase& p = phases[i];
    const double end = starts[i] + p.duration_s;
    // Gamma(shape k, scale 1/(k*rate)) has mean 1/rate; k = 1 is exponential.
    std::gamma_distribution<double> gap(burstiness, 1.0 / (burstiness * p.rate));
    for (double t = starts[i] + gap(rng); t < end; t += gap(rng)) {
      RequestSpec r;
      r.id = static_cast<int64_t>(specs.size());
      r.arrival_s = t;
      r.input_len = draw_length(p.input, rng);
      r.output_len = draw_length(p.output, rng);
      r.phase = p.name;
      specs.push_back(std::move(r));
    }
  }
  return specs;
}

std::vector<double> arrival_times(const ArrivalOptions& options, int64_t n, std::mt19937_64& rng) {
  std::vector<double> times;
  times.reserve(static_cast<size_t>(std::max<int64_t>(0, n)));
  double cycle = 0;
  for (const RatePhase& p : options.phases) cycle += p.duration_s;
  auto rate_at = [&](double t) {
    if (options.phases.empty()) return options.request_rate;
    double in_cycle = std::fmod(t, cycle);
    for (const RatePhase& p : options.phases) {
      if (in_cycle < p.duration_s) return p.rate;
      in_cycle -= p.duration_s;
    }
    return options.phases.back().rate;
  };
  double t = 0;
  for (int64_t i = 0; i < n; ++i) {
    times.push_back(t);
    double rate = rate_at(t);
    if (!std::isfinite(rate)) continue;
    // Gamma(shape k, scale 1/(k*rate)) has mean 1/rate; k = 1 is exponential.
    double k = options.burstiness;
    t += std::gamma_distribution<double>(k, 1.0 / (k * rate))(rng);
  }
  return times;
}

Result<std::vector<RequestSpec>> make_workload(const WorkloadOptions& options) {
  if (options.scenarios.empty()) return invalid_argument("workload: no scenario");
  if (options.turns < 1) return invalid_argument("workload: turns must be >= 1");
  if (options.num_prompts < 0) return invalid_argument("workload: num_prompts must be >= 0");
  if (!(options.arrivals.burstiness > 0)) return invalid_argument("burstiness must be > 0");
  if (!(options.arrivals.request_rate > 0)) return invalid_argument("request rate must be > 0");
  std::mt19937_64 rng(options.seed);
  std::vector<double> weights;
  for (const Scenario& s : options.scenarios) weights.push_back(s.weight);
  std::discrete_distribution<size_t> pick(weights.begin(), weights.end());

  std::vector<RequestSpec> specs;
  const int64_t n = options.num_prompts;
  const int turns = options.turns;
  // Conversations start in blocks of kBlock; inside a block requests go turn
  // by turn, so a turn always comes after the previous turn of its
  // conversation and conversations overlap in time as real chats do.
  constexpr int64_t kBlock = 8;
  int64_t conversations = (n + turns - 1) / turns;
  std::vector<std::vector<RequestSpec>> convs;
  for (int64_t c = 0; c < conversations; ++c) {
    const Scenario& sc = options.scenarios[pick(rng)];
    int group =
        sc.prefix_groups > 0
            ? static_cast<int>(std::uniform_int_distribution<int>(0, sc.prefix_groups - 1)(rng))
            : -1;
    std::vector<RequestSpec> conv;
    int history = 0;
    for (int k = 0; k < turns && c * turns + k < n; ++k) {
      RequestSpec r;
      r.scenario = sc.name;
      r.prefix_group = group;
      r.prefix_len = group >= 0 ? sc.prefix_len : 0;
      int fresh = draw_length(sc.input, rng);
      r.input_len = (k == 0 ? r.prefix_len : history) + fresh;
      r.output_len = draw_length(sc.output, rng);
      if (turns > 1) {
        r.conversation = c;
        r.turn = k;
      }
      history = r.input_len + r.output_len;
      conv.push_back(r);
    }
    convs.push_back(std::move(conv));
  }
  for (int64_t b = 0; b < conversations; b += kBlock) {
    int64_t end = std::min(conversations, b + kBlock);
    for (int k = 0; k < turns; ++k) {
      for (int64_t c = b; c < end; ++c) {
        if (k < static_cast<int>(convs[c].size())) specs.push_back(convs[c][k]);
      }
    }
  }
  std::vector<double> times =
      arrival_times(options.arrivals, static_cast<int64_t>(specs.size()), rng);
  for (size_t i = 0; i < specs.size(); ++i) {
    specs[i].id = static_cast<int64_t>(i);
    specs[i].arrival_s = times[i];
  }
  return specs;
}

std::string prompt_text(const RequestSpec& spec, uint64_t seed) {
  std::string out;
  int prefix = std::min(spec.prefix_len, spec.input_len);
  if (spec.prefix_group >= 0 && prefix > 0) {
    append_words(out, prefix, mix(mix(seed, hash_text(spec.scenario)), spec.prefix_group));
  }
  uint64_t own = spec.conversation >= 0
                     ? kConversationKey + static_cast<uint64_t>(spec.conversation)
                     : static_cast<uint64_t>(spec.id);
  append_words(out, spec.input_len - prefix, mix(mix(seed, hash_text(spec.scenario)) + 1, own));
  return out;
}

Result<std::vector<RequestSpec>> read_trace(const std::string& path) {
  std::ifstream in(path);
  if (!in) return not_found("trace " + path + ": cannot open");
  std::vector<RequestSpec> specs;
  std::string line;
  int line_no = 0;
  double last = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::string where = path + ":" + std::to_string(line_no);
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return invalid_argument(where + ": not a JSON object");
    RequestSpec r;
    try {
      r.arrival_s = j.at("arrival_s").get<double>();
      r.input_len = j.at("input_len").get<int>();
      r.output_len = j.at("output_len").get<int>();
      r.prefix_group = j.value("prefix_group", -1);
      r.prefix_len = j.value("prefix_len", 0);
      r.scenario = j.value("scenario", std::string());
      r.conversation = j.value("conversation", int64_t{-1});
      r.turn = j.value("turn", 0);
      r.phase = j.value("phase", std::string());
    } catch (const nlohmann::json::exception& e) {
      return invalid_argument(where + ": " + e.what());
    }
    if (r.input_len < 1 || r.output_len < 1)
      return invalid_argument(where + ": lengths must be >= 1");
    if (!(r.arrival_s >= last)) {
      return invalid_argument(where + ": arrival_s must be non-decreasing and >= 0");
    }
    last = r.arrival_s;
    r.id = static_cast<int64_t>(specs.size());
    specs.push_back(std::move(r));
  }
  return specs;
}

Status write_trace(const std::string& path, const std::vector<RequestSpec>& specs) {
  std::ofstream out(path);
  if (!out) return unavailable("trace " + path + ": cannot create");
  for (const RequestSpec& r : specs) {
    nlohmann::json j = {
        {"arrival_s", r.arrival_s}, {"input_len", r.input_len}, {"output_len", r.output_len}};
    if (r.prefix_group >= 0) {
      j["prefix_group"] = r.prefix_group;
      j["prefix_len"] = r.prefix_len;
    }
    if (!r.scenario.empty()) j["scenario"] = r.scenario;
    if (r.conversation >= 0) {
      j["conversation"] = r.conversation;
      j["turn"] = r.turn;
    }
    if (!r.phase.empty()) j["phase"] = r.phase;
    out << j.dump() << "\n";
  }
  if (!out) return unavailable("trace " + path + ": write failed");
  return Status::ok();
}

}  // namespace baton::bench
