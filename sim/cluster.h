#pragma once

// The simulated cluster: scenario groups of prefill, decode and mixed
// instances behind one gateway, with an optional controller moving instances
// between prefill and decode.
//
// What runs unchanged from production: the routing policies
// (gateway::rank_instances over ClusterSnapshot values the simulator keeps
// up to date), the on-demand forwarding decision (gateway::may_forward_prefill)
// and the controller's ratio decision (controller::evaluate_group over
// LoadReports built from the simulated instances), all with simulated time.
// What is modelled: engine step times, KV transfer and admission, from a
// Profile (profile.h) and the rule of server/admission.h.
//
// simulate() is a pure function of its options and requests: the same seed
// gives the same Summary. Not thread-safe inside one run; separate runs may
// go in parallel.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "controller/ratio_policy.h"
#include "gateway/gateway_config.h"
#include "sim/profile.h"
#include "sim/workload.h"

namespace baton::sim {

struct GroupSpec {
  std::string name;
  // Scenarios this group serves; an empty list makes it a default group.
  // Requests of a scenario no group names are spread over the default
  // groups by request id.
  std::vector<std::string> scenarios;
  int32_t prefill = 0;
  int32_t decode = 0;
  int32_t mixed = 0;
};

// How the gateway learns the load of the instances it ranks.
enum class Routing {
  // The production design: the gateway's own live counts, and each prefill
  // instance answers for itself (TTFT-budget admission), rejected requests
  // forwarded at once to the next candidate.
  kOnDemand,
  // A central scheduler that ranks by load reports refreshed every
  // report_interval_s; instances queue whatever they are sent.
  kStaleReports,
};

struct ClusterOptions {
  Profile profile;
  std::vector<GroupSpec> groups;
  gateway::PolicyKind prefill_policy = gateway::PolicyKind::kLeastLoad;
  gateway::PolicyKind decode_policy = gateway::PolicyKind::kLeastLoad;
  gateway::PolicyKind mixed_policy = gateway::PolicyKind::kLeastLoad;
  Routing routing = Routing::kOnDemand;
  double report_interval_s = 1.0;
  gateway::PdConfig pd;        // prefill tries, forward deadline, decode lease
  int32_t retry_attempts = 3;  // mixed or decode instances tried per request
  // Admission of every prefill and mixed instance (server/admission.h).
  int32_t max_waiting = 256;
  int32_t max_in_flight = 1024;
  double ttft_budget_s = 0;  // on-demand routing only; 0: none
  // A client gives up on a request whose first token has not come by then
  // (counted as a timeout); 0: never.
  double client_timeout_s = 0;
  bool contiguous_kv = true;
  // SLOs a completed request is judged by.
  double ttft_slo_s = 2.0;
  double tpot_slo_s = 0.1;
  // The controller (controller/ratio_policy.h), every control_interval_s.
  bool dynamic_ratio = false;
  controller::RatioPolicy ratio;
  double control_interval_s = 5.0;
  uint64_t seed = 0;
};

Status validate(const ClusterOptions& options);

enum class Outcome { kCompleted, kRejected, kTimedOut };

struct Summary {
  int64_t requests = 0;
  int64_t completed = 0;
  int64_t rejected = 0;   // refused by every candidate (an explicit, fast error)
  int64_t timed_out = 0;  // the client gave up waiting for the first token
  double duration_s = 0;  // first arrival to last completion
  double ttft_mean_s = 0, ttft_p50_s = 0, ttft_p90_s = 0, ttft_p99_s = 0;
  double tpot_mean_s = 0, tpot_p90_s = 0;
  double ttft_attainment = 0;  // share of all requests completed within the TTFT SLO
  double slo_attainment = 0;   // share of all requests within both SLOs
  double goodput_rps = 0;      // requests within both SLOs per second
  double output_tokens_per_s = 0;
  double transfer_mean_s = 0, transfer_p99_s = 0;
  // Mean KV transfer time over mean time to the first decoded token (TTFT
  // plus transfer): how much of the hand-over the transfer is.
  double transfer_share = 0;
  int64_t forwards = 0;  // prefill attempts beyond the first
  int64_t role_changes = 0;
  uint64_t events = 0;
};

// Called once per request when its fate is known (tests).
using OutcomeFn = std::function<void(int64_t id, Outcome outcome)>;

// Runs the simulation to the end of `source`. Precondition:
// validate(options) is ok.
Summary simulate(const ClusterOptions& options, RequestSource& source,
                 const OutcomeFn& on_outcome = {});

}  // namespace baton::sim
