#pragma once

// Controller: the process loop around the pure decision functions.
//
// Every round (ControllerOptions::interval) it
//  1. reads the membership,
//  2. probes every member (GET /health) and scrapes its load (GET /metrics),
//     in parallel, each call bounded by probe_timeout,
//  3. updates each member's health (health.h) and load report
//     (load_report.h), logging every health transition,
//  4. per scenario group, runs the P/D ratio policy (ratio_policy.h), counts
//     the decision by reason and logs it, and
//  5. carries out a decision to change a role through the instance's role
//     endpoint (role_client.h), following the drain on later rounds.
//
// It serves GET /metrics (its own metrics, below), GET /health and
// GET /cluster (the members with health, role and load, and each group's
// ratio and last decision, as JSON: what a gateway needs to route).
//
// Metrics: baton:controller_decisions_total{group,action,reason},
// baton:controller_instances{group,role,health},
// baton:controller_pd_ratio{group} (prefill/decode of healthy instances),
// baton:controller_role_changes_total{group,from,to,result},
// baton:controller_health_transitions_total{to}, baton:controller_rounds_total.
//
// Logging: decisions and health transitions go to the process's default
// logger, flushed at the end of every round and on stop(), so that a log file
// is current while the controller runs.
//
// Thread-safety: all public members are thread-safe. The clock is injected:
// with start_loop = false and a FakeClock a test drives rounds itself.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "controller/health.h"
#include "controller/load_report.h"
#include "controller/membership.h"
#include "controller/ratio_policy.h"
#include "protocol/http_server.h"

namespace baton::controller {

struct ControllerOptions {
  std::chrono::milliseconds interval{1000};
  std::chrono::milliseconds probe_timeout{1000};
  HealthPolicy health;
  RatioPolicy ratio;
  // Off: health and metrics only, no role changes.
  bool adjust_ratio = true;
  // Sent with role changes (x-baton-cluster-token).
  std::string cluster_token;
  // How long an instance may drain before it switches anyway (sent to it),
  // and how long the controller follows a change before calling it failed.
  std::chrono::milliseconds drain_timeout{30000};
  std::chrono::milliseconds role_change_timeout{90000};
  // Rejections are judged over the reports of this span (at least the last
  // one), not just the last interval; latencies over the newest of them that
  // hold at least `window_observations` observations (or all of the span):
  // a busy instance is judged on what it does now, a quiet one on enough
  // requests.
  std::chrono::milliseconds load_window{10000};
  double window_observations = 20;
  // The controller's own HTTP endpoint; nullopt: none.
  std::optional<protocol::HttpServerOptions> http = protocol::HttpServerOptions{};
  int probe_threads = 8;
  // False: no loop thread; call run_round() yourself.
  bool start_loop = true;
};

// One member as the controller sees it.
struct InstanceStatus {
  Member member;             // as in the membership
  Role role = Role::kMixed;  // the role it serves (instance's word over membership's)
  InstanceHealth health;
  std::optional<LoadReport> load;
  bool changing_role = false;
  std::optional<Role> target;  // while changing
};

struct GroupStatus {
  std::string group;
  int prefill = 0;  // healthy instances by role
  int decode = 0;
  int mixed = 0;
  std::optional<RatioDecision> last_decision;
};

struct ControllerView {
  uint64_t rounds = 0;
  std::vector<InstanceStatus> instances;  // by member id
  std::vector<GroupStatus> groups;        // by group name
};

// What happened in a round, for whoever runs the controller (`baton up`
// prints these).
struct ControllerEvent {
  enum class Kind { kHealth, kDecision, kRoleChange };
  Kind kind = Kind::kHealth;
  std::string instance;  // for kHealth and kRoleChange
  std::string group;
  std::string message;  // one line, with the reason
};

class Controller {
 public:
  // Starts the HTTP endpoint (when configured) and the loop (when
  // start_loop). `membership` and `clock` must outlive the controller.
  // Errors: a bad ratio policy, the port cannot be bound.
  static Result<std::unique_ptr<Controller>> start(ControllerOptions options,
                                                   const Membership& membership,
                                                   const Clock& clock = SteadyClock::instance());
  ~Controller();  // stop()
  Controller(const Controller&) = delete;
  Controller& operator=(const Controller&) = delete;

  // Ends the loop (within one probe timeout) and the HTTP endpoint.
  void stop();
  // The bound port of the HTTP endpoint; 0 when none.
  uint16_t port() const;

  // One round now, on the calling thread. Not concurrently with the loop
  // (for start_loop = false).
  void run_round();
  ControllerView view() const;
  // Subscribes to events; the callback runs on the loop thread and must not
  // call back into the controller's run_round().
  void on_event(std::function<void(const ControllerEvent&)> callback);

  // The /cluster JSON of a view.
  static std::string cluster_json(const ControllerView& view);

  class Impl;

 private:
  explicit Controller(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace baton::controller
