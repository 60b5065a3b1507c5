// Workloads: lengths, shared prefixes, conversations, scenario mixtures,
// arrival processes and trace files. Statistical checks use fixed seeds and
// enough samples that the bounds hold with a wide margin.

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "bench/serving/workload.h"

namespace baton::bench {
namespace {

int word_count(const std::string& s) {
  std::istringstream in(s);
  std::string w;
  int n = 0;
  while (in >> w) ++n;
  return n;
}

WorkloadOptions basic(int64_t n, int in, int out) {
  WorkloadOptions w;
  w.num_prompts = n;
  Scenario s;
  s.input.mean = in;
  s.output.mean = out;
  w.scenarios = {s};
  return w;
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("baton_workload_test_" + std::to_string(getpid()) + "_" + name))
      .string();
}

TEST(Workload, FixedLengthsAndExactCount) {
  auto specs = make_workload(basic(50, 128, 16));
  ASSERT_TRUE(specs.is_ok()) << specs.status().to_string();
  ASSERT_EQ(specs->size(), 50u);
  for (size_t i = 0; i < specs->size(); ++i) {
    const RequestSpec& r = (*specs)[i];
    EXPECT_EQ(r.id, static_cast<int64_t>(i));
    EXPECT_EQ(r.input_len, 128);
    EXPECT_EQ(r.output_len, 16);
    EXPECT_EQ(r.arrival_s, 0);  // infinite rate: all at once
    EXPECT_EQ(word_count(prompt_text(r, 0)), 128);
  }
}

TEST(Workload, SameSeedSameRequestsOtherSeedOthers) {
  WorkloadOptions w = basic(30, 100, 20);
  w.scenarios[0].input.range_ratio = 0.5;
  w.arrivals.request_rate = 10;
  auto a = make_workload(w), b = make_workload(w);
  w.seed = 1;
  auto c = make_workload(w);
  ASSERT_TRUE(a.is_ok() && b.is_ok() && c.is_ok());
  bool differs = false;
  for (size_t i = 0; i < a->size(); ++i) {
    EXPECT_EQ((*a)[i].input_len, (*b)[i].input_len);
    EXPECT_EQ((*a)[i].arrival_s, (*b)[i].arrival_s);
    EXPECT_EQ(prompt_text((*a)[i], 0), prompt_text((*b)[i], 0));
    differs = differs || (*a)[i].input_len != (*c)[i].input_len;
  }
  EXPECT_TRUE(differs);
  EXPECT_NE(prompt_text((*a)[0], 0), prompt_text((*a)[0], 1));
}

TEST(Workload, UniformLengthsStayInTheirRange) {
  WorkloadOptions w = basic(2000, 100, 50);
  w.scenarios[0].input.range_ratio = 0.25;
  w.scenarios[0].output.range_ratio = 0.5;
  auto specs = make_workload(w);
  ASSERT_TRUE(specs.is_ok());
  int min_in = 1 << 30, max_in = 0;
  for (const RequestSpec& r : *specs) {
    EXPECT_GE(r.input_len, 75);
    EXPECT_LE(r.input_len, 125);
    EXPECT_GE(r.output_len, 25);
    EXPECT_LE(r.output_len, 75);
    min_in = std::min(min_in, r.input_len);
    max_in = std::max(max_in, r.input_len);
  }
  EXPECT_EQ(min_in, 75);  // 2000 draws over 51 values reach both ends
  EXPECT_EQ(max_in, 125);
}

TEST(Workload, LognormalLengthsHaveTheAskedMean) {
  WorkloadOptions w = basic(20000, 400, 100);
  w.scenarios[0].input.distribution = LengthDistribution::kLognormal;
  w.scenarios[0].input.sigma = 0.8;
  auto specs = make_workload(w);
  ASSERT_TRUE(specs.is_ok());
  double sum = 0;
  int max_len = 0;
  for (const RequestSpec& r : *specs) {
    sum += r.input_len;
    max_len = std::max(max_len, r.input_len);
  }
  EXPECT_NEAR(sum / specs->size(), 400, 400 * 0.05);
  EXPECT_GT(max_len, 1200);  // a heavy tail, unlike the uniform case
}

TEST(Workload, SharedPrefixesAreSharedWithinAGroupOnly) {
  WorkloadOptions w = basic(200, 100, 10);
  w.scenarios[0].prefix_groups = 3;
  w.scenarios[0].prefix_len = 40;
  auto specs = make_workload(w);
  ASSERT_TRUE(specs.is_ok());
  std::map<int, std::string> prefix_of_group;
  std::map<int, int> count;
  std::set<std::string> whole;
  for (const RequestSpec& r : *specs) {
    ASSERT_GE(r.prefix_group, 0);
    ASSERT_LT(r.prefix_group, 3);
    EXPECT_EQ(r.input_len, 140);  // prefix + own words
    std::string text = prompt_text(r, 7);
    EXPECT_EQ(word_count(text), 140);
    std::istringstream in(text);
    std::string prefix, word;
    for (int i = 0; i < 40 && in >> word; ++i) prefix += word + " ";
    auto [it, inserted] = prefix_of_group.emplace(r.prefix_group, prefix);
    if (!inserted) {
      EXPECT_EQ(it->second, prefix) << "group " << r.prefix_group;
    }
    ++count[r.prefix_group];
    whole.insert(text);
  }
  ASSERT_EQ(prefix_of_group.size(), 3u);
  EXPECT_NE(prefix_of_group[0], prefix_of_group[1]);
  EXPECT_NE(prefix_of_group[1], prefix_of_group[2]);
  EXPECT_EQ(whole.size(), specs->size());  // the rest of every prompt is its own
}

TEST(Workload, MultiTurnPromptsGrowWithTheHistory) {
  WorkloadOptions w = basic(40, 30, 12);
  w.turns = 4;
  w.arrivals.request_rate = 5;
  auto specs = make_workload(w);
  ASSERT_TRUE(specs.is_ok());
  ASSERT_EQ(specs->size(), 40u);
  std::map<int64_t, std::vector<const RequestSpec*>> convs;
  for (const RequestSpec& r : *specs) convs[r.conversation].push_back(&r);
  ASSERT_EQ(convs.size(), 10u);
  for (const auto& [c, turns] : convs) {
    ASSERT_EQ(turns.size(), 4u);
    for (size_t k = 1; k < turns.size(); ++k) {
      const RequestSpec& prev = *turns[k - 1];
      const RequestSpec& cur = *turns[k];
      EXPECT_EQ(cur.turn, static_cast<int>(k));
      EXPECT_GE(cur.arrival_s, prev.arrival_s);
      EXPECT_LT(prev.id, cur.id);  // a turn is sent after the previous one
      // History (the previous prompt and answer) plus a new message.
      EXPECT_EQ(cur.input_len, prev.input_len + prev.output_len + 30);
      std::string before = prompt_text(prev, 0), now = prompt_text(cur, 0);
      EXPECT_EQ(now.compare(0, before.size(), before), 0) << "turn " << k << " of " << c;
      EXPECT_EQ(word_count(now), cur.input_len);
    }
  }
}

TEST(Workload, ScenarioMixtureFollowsTheWeights) {
  Scenario base;
  auto chat = parse_scenario("chat:3:200:50", base);
  auto summary = parse_scenario("summary:1:2000:20:2:100", base);
  ASSERT_TRUE(chat.is_ok() && summary.is_ok());
  WorkloadOptions w;
  w.num_prompts = 4000;
  w.scenarios = {*chat, *summary};
  auto specs = make_workload(w);
  ASSERT_TRUE(specs.is_ok());
  int n_chat = 0;
  for (const RequestSpec& r : *specs) {
    if (r.scenario == "chat") {
      ++n_chat;
      EXPECT_EQ(r.input_len, 200);
      EXPECT_EQ(r.prefix_group, -1);
    } else {
      ASSERT_EQ(r.scenario, "summary");
      EXPECT_EQ(r.input_len, 2100);
      EXPECT_EQ(r.output_len, 20);
      EXPECT_GE(r.prefix_group, 0);
    }
  }
  EXPECT_NEAR(n_chat / 4000.0, 0.75, 0.03);
}

TEST(Workload, ScenarioAndPhaseSyntaxErrorsAreReported) {
  Scenario base;
  EXPECT_FALSE(parse_scenario("chat:1:200", base).is_ok());
  EXPECT_FALSE(parse_scenario(":1:200:10", base).is_ok());
  EXPECT_FALSE(parse_scenario("chat:0:200:10", base).is_ok());
  EXPECT_FALSE(parse_scenario("chat:1:0:10", base).is_ok());
  EXPECT_FALSE(parse_scenario("chat:1:2.5:10", base).is_ok());
  EXPECT_FALSE(parse_phases("").is_ok());
  EXPECT_FALSE(parse_phases("10").is_ok());
  EXPECT_FALSE(parse_phases("10:0").is_ok());
  auto p = parse_phases("30:2,10:8.5");
  ASSERT_TRUE(p.is_ok());
  ASSERT_EQ(p->size(), 2u);
  EXPECT_EQ((*p)[1].duration_s, 10);
  EXPECT_EQ((*p)[1].rate, 8.5);
}

// Mean and coefficient of variation of the gaps between arrivals.
std::pair<double, double> gap_stats(const std::vector<double>& t) {
  std::vector<double> gaps;
  for (size_t i = 1; i < t.size(); ++i) gaps.push_back(t[i] - t[i - 1]);
  double mean = 0, var = 0;
  for (double g : gaps) mean += g;
  mean /= gaps.size();
  for (double g : gaps) var += (g - mean) * (g - mean);
  return {mean, std::sqrt(var / gaps.size()) / mean};
}

TEST(Arrivals, PoissonGapsHaveMeanOneOverRate) {
  std::mt19937_64 rng(3);
  ArrivalOptions o;
  o.request_rate = 8;
  auto t = arrival_times(o, 20000, rng);
  ASSERT_EQ(t.size(), 20000u);
  EXPECT_EQ(t[0], 0);
  EXPECT_TRUE(std::is_sorted(t.begin(), t.end()));
  auto [mean, cv] = gap_stats(t);
  EXPECT_NEAR(mean, 1.0 / 8, 0.125 * 0.03);
  EXPECT_NEAR(cv, 1.0, 0.05);  // exponential gaps
}

TEST(Arrivals, BurstinessShapesTheGapsNotTheRate) {
  for (double k : {0.25, 4.0}) {
    std::mt19937_64 rng(5);
    ArrivalOptions o;
    o.request_rate = 4;
    o.burstiness = k;
    auto [mean, cv] = gap_stats(arrival_times(o, 20000, rng));
    EXPECT_NEAR(mean, 0.25, 0.25 * 0.05) << "k=" << k;
    EXPECT_NEAR(cv, 1 / std::sqrt(k), 0.1 / std::sqrt(k)) << "k=" << k;  // gamma: CV = 1/sqrt(k)
  }
}

TEST(Arrivals, PhasesChangeTheRateOverTime) {
  std::mt19937_64 rng(11);
  ArrivalOptions o;
  o.phases = {{10, 20}, {10, 2}};  // 10 s at 20 req/s, then 10 s at 2 req/s, again
  auto t = arrival_times(o, 2000, rng);
  int high = 0, low = 0;
  for (double x : t) {
    if (x >= 200) break;  // ten whole cycles
    (std::fmod(x, 20.0) < 10 ? high : low)++;
  }
  // Expected 2000 and 200 in ten cycles.
  EXPECT_NEAR(high, 2000, 200);
  EXPECT_NEAR(low, 200, 60);
}

TEST(ShapePhases, ParseNameDurationRateAndLengths) {
  Scenario base;
  base.input.range_ratio = 0.25;
  auto p = parse_shape_phase("chat:40:2.5:64:256", base);
  ASSERT_TRUE(p.is_ok()) << p.status().to_string();
  EXPECT_EQ(p->name, "chat");
  EXPECT_EQ(p->duration_s, 40);
  EXPECT_EQ(p->rate, 2.5);
  EXPECT_EQ(p->input.mean, 64);
  EXPECT_EQ(p->output.mean, 256);
  EXPECT_EQ(p->input.range_ratio, 0.25);  // the base's distribution
  for (const char* bad :
       {"chat:40:2.5:64", ":40:2:64:256", "chat:0:2:64:256", "chat:40:0:64:256", "chat:40:2:0:256",
        "chat:40:2:64:1.5", "chat:x:2:64:256", "chat:40:2:64:256:9"}) {
    auto r = parse_shape_phase(bad, base);
    EXPECT_FALSE(r.is_ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

std::vector<ShapePhase> two_phases() {
  ShapePhase a, b;
  a.name = "short-in";
  a.duration_s = 100;
  a.rate = 10;
  a.input.mean = 64;
  a.output.mean = 256;
  b.name = "long-in";
  b.duration_s = 50;
  b.rate = 4;
  b.input.mean = 900;
  b.output.mean = 8;
  return {a, b};
}

TEST(ShapePhases, EachPhaseHasItsShapeRateAndWindow) {
  auto phases = two_phases();
  EXPECT_EQ(phase_starts(phases), (std::vector<double>{0, 100}));
  auto specs = make_phased_workload(phases, 7, 1.0);
  ASSERT_TRUE(specs.is_ok()) << specs.status().to_string();
  int a = 0, b = 0;
  double last = 0;
  for (size_t i = 0; i < specs->size(); ++i) {
    const RequestSpec& r = (*specs)[i];
    EXPECT_EQ(r.id, static_cast<int64_t>(i));
    EXPECT_GE(r.arrival_s, last);  // ordered by arrival
    last = r.arrival_s;
    EXPECT_LT(r.arrival_s, 150);
    if (r.phase == "short-in") {
      ++a;
      EXPECT_LT(r.arrival_s, 100);
      EXPECT_EQ(r.input_len, 64);
      EXPECT_EQ(r.output_len, 256);
    } else {
      ASSERT_EQ(r.phase, "long-in");
      ++b;
      EXPECT_GE(r.arrival_s, 100);
      EXPECT_EQ(r.input_len, 900);
      EXPECT_EQ(r.output_len, 8);
    }
    EXPECT_EQ(r.scenario, "");  // untagged: one scenario group
    EXPECT_EQ(word_count(prompt_text(r, 7)), r.input_len);
  }
  // Poisson counts: 1000 and 200 expected (sd about 32 and 14).
  EXPECT_NEAR(a, 1000, 130);
  EXPECT_NEAR(b, 200, 60);
  // Phase a's requests all come before phase b's.
  EXPECT_EQ((*specs)[a - 1].phase, "short-in");
  EXPECT_EQ((*specs)[a].phase, "long-in");
}

TEST(ShapePhases, DeterministicInTheSeed) {
  auto x = make_phased_workload(two_phases(), 3, 1.0);
  auto y = make_phased_workload(two_phases(), 3, 1.0);
  auto z = make_phased_workload(two_phases(), 4, 1.0);
  ASSERT_TRUE(x.is_ok() && y.is_ok() && z.is_ok());
  ASSERT_EQ(x->size(), y->size());
  for (size_t i = 0; i < x->size(); ++i) EXPECT_EQ((*x)[i].arrival_s, (*y)[i].arrival_s);
  bool differs = x->size() != z->size();
  for (size_t i = 0; !differs && i < x->size(); ++i) {
    differs = (*x)[i].arrival_s != (*z)[i].arrival_s;
  }
  EXPECT_TRUE(differs);
}

TEST(ShapePhases, BadPhaseListsAreRejected) {
  EXPECT_FALSE(make_phased_workload({}, 0, 1.0).is_ok());
  auto dup = two_phases();
  dup[1].name = dup[0].name;
  EXPECT_FALSE(make_phased_workload(dup, 0, 1.0).is_ok());
  auto zero = two_phases();
  zero[0].rate = 0;
  EXPECT_FALSE(make_phased_workload(zero, 0, 1.0).is_ok());
  EXPECT_FALSE(make_phased_workload(two_phases(), 0, 0.0).is_ok());
}

TEST(Trace, RoundTripsAWorkload) {
  WorkloadOptions w = basic(25, 64, 8);
  w.turns = 5;
  w.scenarios[0].name = "chat";
  w.scenarios[0].prefix_groups = 2;
  w.scenarios[0].prefix_len = 16;
  w.arrivals.request_rate = 3;
  auto specs = make_workload(w);
  ASSERT_TRUE(specs.is_ok());
  std::string path = temp_path("roundtrip.jsonl");
  ASSERT_TRUE(write_trace(path, *specs).is_ok());
  auto back = read_trace(path);
  std::filesystem::remove(path);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  ASSERT_EQ(back->size(), specs->size());
  for (size_t i = 0; i < specs->size(); ++i) {
    const RequestSpec &a = (*specs)[i], &b = (*back)[i];
    EXPECT_EQ(a.id, b.id);
    EXPECT_DOUBLE_EQ(a.arrival_s, b.arrival_s);
    EXPECT_EQ(a.input_len, b.input_len);
    EXPECT_EQ(a.output_len, b.output_len);
    EXPECT_EQ(a.prefix_group, b.prefix_group);
    EXPECT_EQ(a.prefix_len, b.prefix_len);
    EXPECT_EQ(a.scenario, b.scenario);
    EXPECT_EQ(a.conversation, b.conversation);
    EXPECT_EQ(a.turn, b.turn);
    EXPECT_EQ(prompt_text(a, 0), prompt_text(b, 0));  // a replay sends the same text
  }
}

TEST(Trace, KeepsThePhaseOfEachRequest) {
  auto specs = make_phased_workload(two_phases(), 1, 1.0);
  ASSERT_TRUE(specs.is_ok());
  std::string path = temp_path("phases.jsonl");
  ASSERT_TRUE(write_trace(path, *specs).is_ok());
  auto back = read_trace(path);
  std::filesystem::remove(path);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  ASSERT_EQ(back->size(), specs->size());
  for (size_t i = 0; i < specs->size(); ++i) EXPECT_EQ((*back)[i].phase, (*specs)[i].phase);
}

TEST(Trace, BadLinesNameTheirLine) {
  std::string path = temp_path("bad.jsonl");
  {
    std::ofstream out(path);
    out << R"({"arrival_s": 0, "input_len": 10, "output_len": 5})"
        << "\n\n"
        << R"({"arrival_s": 1, "input_len": 10})"
        << "\n";
  }
  auto r = read_trace(path);
  EXPECT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find(":3:"), std::string::npos) << r.status().message();
  {
    std::ofstream out(path);
    out << R"({"arrival_s": 2, "input_len": 10, "output_len": 5})"
        << "\n"
        << R"({"arrival_s": 1, "input_len": 10, "output_len": 5})"
        << "\n";
  }
  r = read_trace(path);
  EXPECT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("non-decreasing"), std::string::npos);
  std::filesystem::remove(path);
  EXPECT_EQ(read_trace(path).status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace baton::bench
