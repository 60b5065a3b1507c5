#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "sim/cluster.h"
#include "sim/event_queue.h"
#include "sim/experiments.h"
#include "sim/profile.h"
#include "sim/workload.h"

namespace baton::sim {
namespace {

// Round numbers, so the expected times below can be worked out by hand.
Profile simple_profile() {
  Profile p;
  p.name = "test";
  p.prefill.base_s = 0.01;
  p.prefill.tokens_per_s = 1000;
  p.prefill.step_tokens = 1000;
  p.decode.base_s = 0.01;
  p.decode.per_seq_s = 0;
  p.decode.per_context_token_s = 0;
  p.kv.capacity_tokens = 100000;
  p.kv.bytes_per_token = 1000;
  p.kv.block_tokens = 16;
  p.kv.messages_per_block = 2;
  p.link.bytes_per_s = 1e6;
  p.link.message_s = 0.001;
  p.network_rtt_s = 0;
  return p;
}

SimRequest request(int64_t id, double at, int32_t in, int32_t out) {
  SimRequest r;
  r.id = id;
  r.arrival_s = at;
  r.input_len = in;
  r.output_len = out;
  return r;
}

TEST(EventQueue, SameTimeRunsInPushOrder) {
  EventQueue q;
  q.push(2.0, EventKind::kStepDone, 1);
  q.push(1.0, EventKind::kStepDone, 2);
  q.push(1.0, EventKind::kStepDone, 3);
  EXPECT_EQ(q.pop().target, 2u);
  EXPECT_EQ(q.pop().target, 3u);
  EXPECT_DOUBLE_EQ(q.now(), 1.0);
  EXPECT_EQ(q.pop().target, 1u);
  EXPECT_TRUE(q.empty());
}

TEST(Profile, CostModelsByHand) {
  Profile p = simple_profile();
  EXPECT_DOUBLE_EQ(prefill_time(p, 100, 0, 1), 0.11);
  p.decode.per_seq_s = 0.001;
  p.decode.per_context_token_s = 1e-6;
  EXPECT_DOUBLE_EQ(decode_step_time(p, 10, 5000), 0.01 + 0.01 + 0.005);
  // 100 tokens: 0.1 s of bytes; one message, or 7 blocks of 2 messages.
  EXPECT_NEAR(kv_transfer_time(p, 100, true), 0.101, 1e-12);
  EXPECT_NEAR(kv_transfer_time(p, 100, false), 0.114, 1e-12);
}

TEST(Profile, ShippedProfilesLoadAndTyposAreRefused) {
  for (const char* name : {"cpu-2core", "h100-llama8b", "h100-llama8b-serving"}) {
    auto p = load_profile(name);
    ASSERT_TRUE(p.is_ok()) << p.status().to_string();
    EXPECT_EQ(p->name, name);
    EXPECT_GT(measured_prefill_rate(*p), 0);
  }
  auto h100 = load_profile("h100-llama8b");
  // Within 3% of the measured rows of docs/benchmarks.md it was built from.
  EXPECT_NEAR(prefill_time(*h100, 8192, 0, 1), 0.2885, 0.2885 * 0.03);
  EXPECT_NEAR(decode_step_time(*h100, 1, 1059), 0.00655, 0.00655 * 0.03);
  EXPECT_NEAR(decode_step_time(*h100, 256, 256 * 1033), 0.03475, 0.03475 * 0.03);
  EXPECT_FALSE(parse_profile("prefill: {tokens_per_sec: 5}").is_ok());
  EXPECT_FALSE(parse_profile("prefil: {tokens_per_s: 5}").is_ok());
  EXPECT_FALSE(parse_profile("prefill: {tokens_per_s: -5}").is_ok());
  EXPECT_FALSE(load_profile("no-such-profile").is_ok());
}

TEST(Cluster, OneMixedRequestByHand) {
  ClusterOptions o;
  o.profile = simple_profile();
  o.groups = {{"g", {}, 0, 0, 1}};
  ASSERT_TRUE(validate(o).is_ok());
  auto src = make_list_source({request(0, 0, 100, 3)});
  Summary s = simulate(o, *src);
  EXPECT_EQ(s.completed, 1);
  // Prefill 0.01 + 100/1000 s gives the first token; two decode steps of
  // 0.01 s give the other two.
  EXPECT_NEAR(s.ttft_mean_s, 0.11, 1e-6);
  EXPECT_NEAR(s.tpot_mean_s, 0.01, 1e-6);
  EXPECT_NEAR(s.duration_s, 0.13, 1e-9);
  EXPECT_EQ(s.transfer_mean_s, 0);
}

TEST(Cluster, OneDisaggregatedRequestByHand) {
  for (bool contiguous : {true, false}) {
    ClusterOptions o;
    o.profile = simple_profile();
    o.profile.network_rtt_s = 0.002;
    o.contiguous_kv = contiguous;
    o.groups = {{"g", {}, 1, 1, 0}};
    auto src = make_list_source({request(0, 0, 100, 3)});
    Summary s = simulate(o, *src);
    ASSERT_EQ(s.completed, 1);
    // Decode reservation (one round trip), half a trip to P, 0.11 s of
    // prefill, half a trip back with the first token.
    EXPECT_NEAR(s.ttft_mean_s, 0.002 + 0.001 + 0.11 + 0.001, 1e-6);
    const double transfer = contiguous ? 0.101 : 0.114;
    EXPECT_NEAR(s.transfer_mean_s, transfer, 1e-6);
    // Prefill ends at 0.113; the KV lands, two decode steps, half a trip.
    const double last = 0.113 + transfer + 0.02 + 0.001;
    EXPECT_NEAR(s.tpot_mean_s, (last - 0.114) / 2, 1e-6);
    EXPECT_NEAR(s.transfer_share, transfer / (0.114 + transfer), 1e-6);
  }
}

TEST(Cluster, AdmissionRejectsPastTheTtftBudgetAndStaleRoutingQueues) {
  // Rate 1000 tokens/s, budget 0.15 s. The first request starts at once;
  // the second waits (nothing waiting before it); the rest would start
  // (100 + 100) / 1000 = 0.2 s late and are refused, with no other
  // instance to forward to.
  ClusterOptions o;
  o.profile = simple_profile();
  o.profile.prefill.base_s = 0;
  o.groups = {{"g", {}, 1, 1, 0}};
  o.ttft_budget_s = 0.15;
  std::vector<SimRequest> reqs;
  for (int i = 0; i < 5; ++i) reqs.push_back(request(i, 0, 100, 2));
  auto src = make_list_source(reqs);
  Summary on_demand = simulate(o, *src);
  EXPECT_EQ(on_demand.completed, 2);
  EXPECT_EQ(on_demand.rejected, 3);

  o.routing = Routing::kStaleReports;  // no budget: everything queues
  auto src2 = make_list_source(reqs);
  Summary stale = simulate(o, *src2);
  EXPECT_EQ(stale.completed, 5);
  EXPECT_NEAR(stale.ttft_p99_s, 0.5, 1e-6);  // five back-to-back 0.1 s prefills
}

TEST(Cluster, ForwardingFindsTheIdleInstance) {
  // Two prefill instances; round robin sends the third request back to the
  // busy one, which refuses it; the gateway forwards it to the other.
  ClusterOptions o;
  o.profile = simple_profile();
  o.profile.prefill.base_s = 0;
  o.groups = {{"g", {}, 2, 1, 0}};
  o.prefill_policy = gateway::PolicyKind::kRoundRobin;
  o.ttft_budget_s = 0.15;
  std::vector<SimRequest> reqs;
  for (int i = 0; i < 4; ++i) reqs.push_back(request(i, 0, 100, 2));
  auto src = make_list_source(reqs);
  Summary s = simulate(o, *src);
  EXPECT_EQ(s.completed, 4);
  EXPECT_EQ(s.rejected, 0);
}

ClusterOptions busy_cluster(Routing routing) {
  ClusterOptions o;
  o.profile = simple_profile();
  o.profile.network_rtt_s = 0.001;
  o.groups = {{"a", {}, 3, 3, 0}, {"b", {"chat"}, 0, 0, 4}};
  o.routing = routing;
  o.report_interval_s = 0.5;
  o.ttft_budget_s = 0.3;
  o.client_timeout_s = 1.0;
  o.prefill_policy = gateway::PolicyKind::kPrefixAware;
  o.profile.kv.capacity_tokens = 4000;
  return o;
}

GeneratorOptions bursty(uint64_t seed) {
  GeneratorOptions g;
  g.requests = 3000;
  g.seed = seed;
  g.rate = 60;
  g.burstiness = 0.2;
  g.scenarios = {{"", 2, 150, 20, 0.5, 4, 50}, {"chat", 1, 60, 30, 0.5, 0, 0}};
  return g;
}

TEST(Cluster, SameSeedSameResult) {
  for (Routing routing : {Routing::kOnDemand, Routing::kStaleReports}) {
    ClusterOptions o = busy_cluster(routing);
    auto a_src = make_generator(bursty(7));
    auto b_src = make_generator(bursty(7));
    auto c_src = make_generator(bursty(8));
    Summary a = simulate(o, *a_src), b = simulate(o, *b_src), c = simulate(o, *c_src);
    EXPECT_EQ(a.events, b.events);
    EXPECT_EQ(a.completed, b.completed);
    EXPECT_EQ(a.rejected, b.rejected);
    EXPECT_EQ(a.timed_out, b.timed_out);
    EXPECT_EQ(a.ttft_mean_s, b.ttft_mean_s);
    EXPECT_EQ(a.tpot_p90_s, b.tpot_p90_s);
    EXPECT_NE(a.ttft_mean_s, c.ttft_mean_s);
  }
}

TEST(Cluster, EveryRequestEndsExactlyOnce) {
  for (Routing routing : {Routing::kOnDemand, Routing::kStaleReports}) {
    ClusterOptions o = busy_cluster(routing);
    auto src = make_generator(bursty(3));
    std::vector<int> seen(3000, 0);
    Summary s = simulate(o, *src, [&](int64_t id, Outcome) { ++seen.at(id); });
    for (int n : seen) ASSERT_EQ(n, 1);
    EXPECT_EQ(s.requests, 3000);
    EXPECT_EQ(s.completed + s.rejected + s.timed_out, 3000);
    // The load is high enough that some requests fail, so both paths run.
    EXPECT_GT(s.rejected + s.timed_out, 0);
    EXPECT_GT(s.completed, 1000);
  }
}

TEST(Cluster, ControllerMovesDecodeToPrefillUnderPrefillPressure) {
  ClusterOptions o;
  o.profile = simple_profile();
  o.profile.kv.bytes_per_token = 10;  // transfers too short to matter
  o.groups = {{"g", {}, 1, 3, 0}};
  o.dynamic_ratio = true;
  o.control_interval_s = 1;
  o.ratio.slo.ttft_s = 0.5;
  o.ratio.cooldown = std::chrono::milliseconds(2000);
  GeneratorOptions g;
  g.requests = 600;
  g.rate = 12;  // 12 x 0.11 s of prefill a second: more than one instance has
  g.scenarios = {{"", 1, 100, 8, 0, 0, 0}};
  auto src = make_generator(g);
  Summary s = simulate(o, *src);
  EXPECT_GE(s.role_changes, 1);
  EXPECT_EQ(s.completed + s.rejected + s.timed_out, 600);
}

TEST(Workload, GeneratorRateAndTraceReplay) {
  GeneratorOptions g;
  g.requests = 20000;
  g.rate = 50;
  g.burstiness = 0.5;
  ASSERT_TRUE(validate(g).is_ok());
  auto src = make_generator(g);
  double last = 0;
  int64_t n = 0;
  while (auto r = src->next()) {
    ASSERT_GE(r->arrival_s, last);
    last = r->arrival_s;
    ++n;
  }
  EXPECT_EQ(n, 20000);
  EXPECT_NEAR(n / last, 50, 50 * 0.05);

  auto path = std::filesystem::temp_directory_path() / "baton_sim_trace_test.jsonl";
  {
    std::ofstream out(path);
    out << R"({"arrival_s": 0.5, "input_len": 10, "output_len": 4, "scenario": "chat"})"
        << "\n"
        << R"({"arrival_s": 0.25, "input_len": 20, "output_len": 2, "prefix_group": 3,)"
        << R"( "prefix_len": 8})"
        << "\n";
  }
  auto trace = read_trace(path.string());
  ASSERT_TRUE(trace.is_ok()) << trace.status().to_string();
  auto first = (*trace)->next();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->id, 1);  // sorted by arrival; ids are line numbers
  EXPECT_EQ(first->prefix_group, 3);
  EXPECT_EQ((*trace)->scenarios()[(*trace)->next()->scenario], "chat");
  {
    std::ofstream out(path);
    out << R"({"arrival_s": 0.5, "input_len": 0, "output_len": 4})"
        << "\n";
  }
  EXPECT_FALSE(read_trace(path.string()).is_ok());
  std::filesystem::remove(path);
}

TEST(Experiments, RunAndCompareTheirRows) {
  auto profile = load_profile("cpu-2core");
  ASSERT_TRUE(profile.is_ok());
  ExperimentOptions e;
  e.profile = *profile;
  e.instances = 4;
  e.requests = 300;
  for (const auto& name : experiment_names()) {
    auto r = run_experiment(name, e);
    ASSERT_TRUE(r.is_ok()) << name << ": " << r.status().to_string();
    EXPECT_FALSE(r->rows.empty()) << name;
    EXPECT_EQ(r->plot_labels.size(), r->plot_values.size()) << name;
    for (const auto& row : r->rows) EXPECT_EQ(row.size(), r->columns.size()) << name;
    EXPECT_NE(format_table(*r).find(r->title), std::string::npos);
    EXPECT_EQ(r->json["rows"].size(), r->rows.size()) << name;
  }
  // Block-wise transfer sends more messages over the same link: never faster.
  auto kv = run_experiment("kv-transfer", e);
  for (const auto& row : kv->json["rows"]) {
    if (!row["contiguous"].get<bool>()) {
      EXPECT_GT(row["transfer_mean_s"].get<double>(), 0);
    }
  }
  for (size_t i = 0; i + 1 < kv->json["rows"].size(); i += 2) {
    EXPECT_LT(kv->json["rows"][i]["transfer_mean_s"].get<double>(),
              kv->json["rows"][i + 1]["transfer_mean_s"].get<double>());
  }
  EXPECT_FALSE(run_experiment("no-such-experiment", e).is_ok());
}

TEST(Workload, TidalMixtureTakesTurns) {
  GeneratorOptions g;
  g.requests = 4000;
  g.rate = 100;
  g.tide_period_s = 20;
  g.mix_tide_amplitude = 0.9;
  g.scenarios = {{"a", 1, 10, 10, 0, 0, 0}, {"b", 1, 10, 10, 0, 0, 0}};
  ASSERT_TRUE(validate(g).is_ok());
  auto src = make_generator(g);
  // Scenario a dominates the first half of each cycle, b the second.
  int64_t a_first = 0, first = 0, a_second = 0, second = 0;
  while (auto r = src->next()) {
    const bool first_half = std::fmod(r->arrival_s, 20.0) < 10.0;
    (first_half ? first : second) += 1;
    (first_half ? a_first : a_second) += r->scenario == 0;
  }
  EXPECT_GT(static_cast<double>(a_first) / first, 0.7);
  EXPECT_LT(static_cast<double>(a_second) / second, 0.3);
  g.mix_tide_amplitude = 1.0;
  EXPECT_FALSE(validate(g).is_ok());
}

}  // namespace
}  // namespace baton::sim
