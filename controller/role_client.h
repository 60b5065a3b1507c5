#pragma once

// The controller's side of an instance's role endpoint (docs/controller.md):
//
//   POST /internal/role   {"role": "prefill", "drain_timeout_ms": 30000,
//                          "reason": "prefill_bottleneck: ..."}
//     -> 202 {"role": "decode", "target": "prefill", "state": "draining",
//             "in_flight": 3}          the change started
//     -> 200 {"role": "prefill", "state": "serving"}   already that role
//     -> 409 another change is in progress; 400 bad role; 401/403 token
//   GET /internal/role
//     -> 200 {"role": ..., "state": "serving" | "draining", "target": ...,
//             "in_flight": N}
//
// Both carry the cluster token in the x-baton-cluster-token header. The
// instance drains (admits no new work of its old role, finishes what it has)
// and switches its scheduler mode in place, without reloading weights.
//
// Free functions, one fresh connection per call; thread-safe.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "controller/membership.h"
#include "controller/ratio_policy.h"
#include "protocol/http_client.h"

namespace baton::controller {

inline constexpr std::string_view kRolePath = "/internal/role";
// The same header the P/D endpoints use for the cluster token.
inline constexpr std::string_view kClusterTokenHeader = "x-baton-cluster-token";

struct RoleStatus {
  Role role = Role::kMixed;    // the role it serves now
  bool draining = false;       // a change is under way
  std::optional<Role> target;  // the role it is changing to
  int64_t in_flight = 0;       // requests still running in the old role

  // True once the instance serves `role` and nothing is pending.
  bool settled_at(Role r) const { return !draining && role == r; }
};

// Parses the JSON body of either answer. Errors: kBadGateway naming the field.
Result<RoleStatus> parse_role_status(std::string_view json);

// Asks `member` to change to `to`. The answer's status is the instance's
// state after the call (draining, or already settled). Errors: the HTTP
// status as a Status (kUnimplemented for 404/405/501: the instance has no
// role endpoint), or the transport's error.
Result<RoleStatus> request_role_change(const Member& member, std::string_view token, Role to,
                                       std::chrono::milliseconds drain_timeout,
                                       std::string_view reason, protocol::HttpDeadline deadline);

// The instance's current role and whether a change is under way.
Result<RoleStatus> get_role_status(const Member& member, std::string_view token,
                                   protocol::HttpDeadline deadline);

}  // namespace baton::controller
