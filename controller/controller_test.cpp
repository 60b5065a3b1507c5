// The controller loop against fake instances: in-process HTTP servers on
// loopback that serve /health, a scripted /metrics and the role endpoint.

#include "controller/controller.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/basic_file_sink.h>

#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <mutex>
#include <nlohmann/json.hpp>

#include "common/logging.h"
#include "controller/role_client.h"
#include "protocol/http_client.h"

namespace baton::controller {
namespace {

using namespace std::chrono_literals;

const std::vector<double> kBounds = {0.01, 0.05, 0.1, 0.5, 1, 2, 4, 8};

class FakeInstance {
 public:
  explicit FakeInstance(Role role) : role_(role) {
    auto s = protocol::HttpServer::start(
        protocol::HttpServerOptions{},
        [this](protocol::HttpRequest req, std::shared_ptr<protocol::ResponseWriter> w) {
          handle(std::move(req), std::move(w));
        });
    BATON_CHECK(s.is_ok());
    server_ = std::move(*s);
  }

  uint16_t port() const { return server_->port(); }
  Member member(const std::string& id) const {
    return Member{id, "127.0.0.1", port(), role_, "default"};
  }

  void set_healthy(bool h) {
    std::lock_guard lock(mu_);
    healthy_ = h;
  }
  void set_role_endpoint(bool present) {
    std::lock_guard lock(mu_);
    role_endpoint_ = present;
  }
  // n observations of `seconds` each into the TTFT (prefill) or TPOT
  // (decode) histogram.
  void observe(double seconds, int n) {
    std::lock_guard lock(mu_);
    auto& h = role_ == Role::kPrefill ? ttft_ : tpot_;
    for (size_t i = 0; i < kBounds.size(); ++i) {
      if (seconds <= kBounds[i]) h[i] += n;
    }
    h[kBounds.size()] += n;
  }
  Role role() const {
    std::lock_guard lock(mu_);
    return role_;
  }
  std::vector<nlohmann::json> role_requests() const {
    std::lock_guard lock(mu_);
    return role_requests_;
  }

 private:
  static std::string histogram(const std::string& name, const std::vector<double>& cum) {
    std::string t;
    for (size_t i = 0; i < kBounds.size(); ++i) {
      t += name + "_bucket{le=\"" + std::to_string(kBounds[i]) + "\"} " + std::to_string(cum[i]) +
           "\n";
    }
    t += name + "_bucket{le=\"+Inf\"} " + std::to_string(cum.back()) + "\n";
    return t;
  }

  std::string role_json() const {
    nlohmann::json j = {{"role", std::string(role_name(role_))},
                        {"state", target_ ? "draining" : "serving"},
                        {"in_flight", 0}};
    if (target_) j["target"] = std::string(role_name(*target_));
    return j.dump();
  }

  void handle(protocol::HttpRequest req, std::shared_ptr<protocol::ResponseWriter> w) {
    std::lock_guard lock(mu_);
    if (req.path == "/health") {
      if (healthy_) {
        w->send(200, "application/json", "{}");
      } else {
        w->send_error(unavailable("fake: unhealthy"));
      }
    } else if (req.path == "/metrics") {
      std::string t = "baton:num_requests_running 2\nbaton:num_requests_waiting 0\n";
      t += "baton:kv_cache_usage_perc 0.1\n";
      t += histogram("baton:time_to_first_token_seconds", ttft_);
      t += histogram("baton:time_per_output_token_seconds", tpot_);
      t += "baton:instance_role{role=\"" + std::string(role_name(role_)) + "\"} 1\n";
      w->send(200, "text/plain", t);
    } else if (req.path == kRolePath && role_endpoint_) {
      if (req.header(kClusterTokenHeader) != "secret") {
        w->send_error(401, "bad token");
        return;
      }
      if (req.method == "POST") {
        auto body = nlohmann::json::parse(req.body);
        role_requests_.push_back(body);
        target_ = *parse_role(body["role"].get<std::string>());
        w->send(202, "application/json", role_json());
      } else {
        // The drain is over by the first status poll.
        if (target_) {
          role_ = *target_;
          target_.reset();
        }
        w->send(200, "application/json", role_json());
      }
    } else {
      w->send_error(not_found("no route"));
    }
  }

  mutable std::mutex mu_;
  Role role_;
  std::optional<Role> target_;
  bool healthy_ = true;
  bool role_endpoint_ = true;
  std::vector<double> ttft_ = std::vector<double>(kBounds.size() + 1, 0);
  std::vector<double> tpot_ = std::vector<double>(kBounds.size() + 1, 0);
  std::vector<nlohmann::json> role_requests_;
  std::unique_ptr<protocol::HttpServer> server_;
};

ControllerOptions manual_options() {
  ControllerOptions o;
  o.start_loop = false;
  o.cluster_token = "secret";
  o.probe_timeout = 2s;
  o.ratio.slo = {1.0, 0.1, 0.9};
  o.ratio.sustain_rounds = 3;
  return o;
}

std::string get(uint16_t port, const std::string& path) {
  auto r =
      protocol::http_request("127.0.0.1", port, "GET", path, "", {}, protocol::deadline_in(2s));
  EXPECT_TRUE(r.is_ok());
  return r.is_ok() ? r->body : std::string();
}

const InstanceStatus* find(const ControllerView& v, const std::string& id) {
  for (const auto& s : v.instances) {
    if (s.member.id == id) return &s;
  }
  return nullptr;
}

TEST(Controller, TakesAFailingInstanceOutAndBringsItBack) {
  FakeInstance a(Role::kMixed), b(Role::kMixed);
  StaticMembership members({a.member("a"), b.member("b")});
  FakeClock clock;
  auto c = Controller::start(manual_options(), members, clock);
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  std::vector<ControllerEvent> events;
  (*c)->on_event([&](const ControllerEvent& e) { events.push_back(e); });

  (*c)->run_round();
  EXPECT_TRUE(find((*c)->view(), "a")->health.routable());
  EXPECT_TRUE(find((*c)->view(), "b")->health.routable());

  b.set_healthy(false);
  for (int i = 0; i < 3; ++i) {
    clock.advance(1s);
    (*c)->run_round();
  }
  ControllerView v = (*c)->view();
  EXPECT_FALSE(find(v, "b")->health.routable());
  EXPECT_TRUE(find(v, "a")->health.routable());
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().instance, "b");
  EXPECT_NE(events.back().message.find("out: unhealthy"), std::string::npos)
      << events.back().message;

  auto cluster = nlohmann::json::parse(get((*c)->port(), "/cluster"));
  ASSERT_EQ(cluster["instances"].size(), 2u);
  EXPECT_EQ(cluster["instances"][1]["id"], "b");
  EXPECT_EQ(cluster["instances"][1]["routable"], false);
  EXPECT_EQ(cluster["groups"][0]["mixed"], 1);
  EXPECT_EQ(cluster["groups"][0]["last_decision"]["reason"], "not_disaggregated");

  b.set_healthy(true);
  for (int i = 0; i < 2; ++i) {
    clock.advance(1s);
    (*c)->run_round();
  }
  EXPECT_TRUE(find((*c)->view(), "b")->health.routable());
  std::string metrics = get((*c)->port(), "/metrics");
  EXPECT_NE(metrics.find("baton:controller_health_transitions_total{to=\"unhealthy\"} 1"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("baton:controller_instances{group=\"default\",role=\"mixed\","
                         "health=\"healthy\"} 2"),
            std::string::npos)
      << metrics;
}

TEST(Controller, MovesADecodeInstanceToPrefillThroughItsRoleEndpoint) {
  FakeInstance p0(Role::kPrefill), d0(Role::kDecode), d1(Role::kDecode);
  StaticMembership members({p0.member("p0"), d0.member("d0"), d1.member("d1")});
  FakeClock clock;
  auto c = Controller::start(manual_options(), members, clock);
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  std::vector<ControllerEvent> events;
  (*c)->on_event([&](const ControllerEvent& e) { events.push_back(e); });

  // Prefill misses its 1 s TTFT target; decode is fast and nearly empty.
  auto load = [&] {
    p0.observe(3.0, 20);
    d0.observe(0.01, 20);
    d1.observe(0.01, 20);
    clock.advance(1s);
    (*c)->run_round();
  };
  (*c)->run_round();  // first scrape: everything so far
  for (int i = 0; i < 3; ++i) load();
  ASSERT_EQ(d0.role_requests().size(), 1u) << "the third sustained round acted";
  EXPECT_EQ(d0.role_requests()[0]["role"], "prefill");
  EXPECT_NE(d0.role_requests()[0]["reason"].get<std::string>().find("prefill_bottleneck"),
            std::string::npos);
  EXPECT_TRUE(d1.role_requests().empty());
  EXPECT_TRUE(find((*c)->view(), "d0")->changing_role);

  load();  // follows the drain: the instance now serves prefill
  ControllerView v = (*c)->view();
  EXPECT_FALSE(find(v, "d0")->changing_role);
  EXPECT_EQ(find(v, "d0")->role, Role::kPrefill);
  EXPECT_EQ(v.groups[0].prefill, 2);
  EXPECT_EQ(v.groups[0].decode, 1);
  bool done = false;
  for (const auto& e : events) {
    done = done || (e.kind == ControllerEvent::Kind::kRoleChange &&
                    e.message.find("d0 now serves prefill") != std::string::npos);
  }
  EXPECT_TRUE(done);

  std::string metrics = get((*c)->port(), "/metrics");
  EXPECT_NE(metrics.find("baton:controller_decisions_total{group=\"default\",action=\"decode_to_"
                         "prefill\",reason=\"prefill_bottleneck\"} 1"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("baton:controller_decisions_total{group=\"default\",action=\"hold\","
                         "reason=\"not_sustained\"} 2"),
            std::string::npos);
  // The round the change ended: d0's load as a decode instance is forgotten.
  EXPECT_NE(metrics.find("baton:controller_decisions_total{group=\"default\",action=\"hold\","
                         "reason=\"insufficient_data\"} 1"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("baton:controller_role_changes_total{group=\"default\",from=\"decode\","
                         "to=\"prefill\",result=\"done\"} 1"),
            std::string::npos);
  EXPECT_NE(metrics.find("baton:controller_pd_ratio{group=\"default\"} 2"), std::string::npos);

  // The last decode instance is never taken: at the minimum.
  for (int i = 0; i < 40; ++i) load();
  EXPECT_TRUE(d1.role_requests().empty());
}

TEST(Controller, AnInstanceWithoutARoleEndpointFailsTheChangeCleanly) {
  FakeInstance p0(Role::kPrefill), d0(Role::kDecode), d1(Role::kDecode);
  d0.set_role_endpoint(false);
  StaticMembership members({p0.member("p0"), d0.member("d0"), d1.member("d1")});
  FakeClock clock;
  auto c = Controller::start(manual_options(), members, clock);
  ASSERT_TRUE(c.is_ok());
  (*c)->run_round();
  for (int i = 0; i < 3; ++i) {
    p0.observe(3.0, 20);
    clock.advance(1s);
    (*c)->run_round();
  }
  ControllerView v = (*c)->view();
  EXPECT_FALSE(find(v, "d0")->changing_role) << "a refused change does not block the group";
  EXPECT_EQ(find(v, "d0")->role, Role::kDecode);
  std::string metrics = get((*c)->port(), "/metrics");
  EXPECT_NE(metrics.find("result=\"failed\"} 1"), std::string::npos) << metrics;

  // After the cool-down the next change goes to an instance that can make it.
  for (int i = 0; i < 40 && d1.role_requests().empty(); ++i) {
    p0.observe(3.0, 20);
    clock.advance(1s);
    (*c)->run_round();
  }
  ASSERT_EQ(d1.role_requests().size(), 1u);
  EXPECT_EQ(d1.role_requests()[0]["role"], "prefill");
}

TEST(Controller, LowTrafficIsJudgedOverTheLoadWindow) {
  FakeInstance p0(Role::kPrefill), d0(Role::kDecode), d1(Role::kDecode);
  StaticMembership members({p0.member("p0"), d0.member("d0"), d1.member("d1")});
  FakeClock clock;
  ControllerOptions o = manual_options();
  o.load_window = 10s;
  auto c = Controller::start(o, members, clock);
  ASSERT_TRUE(c.is_ok());
  (*c)->run_round();
  // Two slow requests a second: under the 5 observations one interval needs,
  // but plenty over the 10 s window.
  for (int i = 0; i < 8 && d0.role_requests().empty(); ++i) {
    p0.observe(3.0, 2);
    clock.advance(1s);
    (*c)->run_round();
  }
  EXPECT_EQ(d0.role_requests().size(), 1u);
  ControllerView v = (*c)->view();
  ASSERT_TRUE(find(v, "p0")->load.has_value());
  EXPECT_GE(find(v, "p0")->load->ttft.total(), 5);
}

TEST(Controller, TheLoopProbesOnItsOwnAndStops) {
  FakeInstance a(Role::kMixed);
  StaticMembership members({a.member("a")});
  ControllerOptions o;
  o.interval = 20ms;
  o.http.reset();
  auto c = Controller::start(o, members);
  ASSERT_TRUE(c.is_ok());
  std::mutex mu;
  std::condition_variable cv;
  bool in = false;
  (*c)->on_event([&](const ControllerEvent& e) {
    std::lock_guard lock(mu);
    in = in || e.message.find("a (127.0.0.1") != std::string::npos;
    cv.notify_all();
  });
  std::unique_lock lock(mu);
  EXPECT_TRUE(cv.wait_for(lock, 10s, [&] { return in; }));
  lock.unlock();
  EXPECT_EQ((*c)->port(), 0);
  (*c)->stop();
  uint64_t rounds = (*c)->view().rounds;
  EXPECT_GE(rounds, 1u);
}

TEST(Controller, ItsLogFileIsCurrentWhileItRuns) {
  // Decisions and health transitions are info lines; the file must have them
  // after the round, not only once the process exits (`baton up` reads it as
  // controller.log while the cluster runs, and after a kill).
  const std::string path = ::testing::TempDir() + "controller_log_test.log";
  std::remove(path.c_str());
  auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, true);
  auto logger = make_logger(LogOptions{}, sink);
  ASSERT_TRUE(logger.is_ok());
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(*logger);

  FakeInstance p0(Role::kPrefill), d0(Role::kDecode);
  StaticMembership members({p0.member("p0"), d0.member("d0")});
  FakeClock clock;
  ControllerOptions o = manual_options();
  o.http.reset();
  auto c = Controller::start(o, members, clock);
  ASSERT_TRUE(c.is_ok());
  (*c)->run_round();
  auto read_all = [&] {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  std::string text = read_all();
  EXPECT_NE(text.find("p0 (127.0.0.1"), std::string::npos) << text;
  EXPECT_NE(text.find("group default: hold"), std::string::npos) << text;
  (*c)->stop();
  spdlog::set_default_logger(previous);
  std::remove(path.c_str());
}

TEST(RoleClient, ParsesStatusAnswers) {
  auto s = parse_role_status(
      R"({"role": "decode", "target": "prefill", "state": "draining", "in_flight": 3})");
  ASSERT_TRUE(s.is_ok());
  EXPECT_TRUE(s->draining);
  EXPECT_EQ(s->target, Role::kPrefill);
  EXPECT_EQ(s->in_flight, 3);
  EXPECT_FALSE(s->settled_at(Role::kPrefill));
  EXPECT_TRUE(parse_role_status(R"({"role": "prefill"})")->settled_at(Role::kPrefill));
  EXPECT_FALSE(parse_role_status(R"({"role": "both"})").is_ok());
  EXPECT_FALSE(parse_role_status(R"({"role": "decode", "state": "sleeping"})").is_ok());
}

}  // namespace
}  // namespace baton::controller
