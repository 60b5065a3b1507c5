#pragma once

// The instances `baton gateway --etcd` routes to: those of its configuration
// plus the members registered in etcd that the configuration can route.

#include <string>
#include <vector>

#include "controller/membership.h"
#include "gateway/gateway_config.h"

namespace baton::cli {

// `config` with one instance per member (name = member id), except members
// whose id is already an instance's name, whose group is not one of the
// config's groups, or whose prefill/decode role needs a cluster token the
// config lacks; each of those gets a line in `left_out` (when given) saying
// why. Pure: no I/O.
gateway::GatewayConfig with_etcd_members(gateway::GatewayConfig config,
                                         const std::vector<controller::Member>& members,
                                         std::vector<std::string>* left_out = nullptr);

}  // namespace baton::cli
