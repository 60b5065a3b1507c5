#include "cli/etcd_members.h"

#include <set>

namespace baton::cli {

gateway::GatewayConfig with_etcd_members(gateway::GatewayConfig c,
                                         const std::vector<controller::Member>& members,
                                         std::vector<std::string>* left_out) {
  std::set<std::string> names, groups;
  for (const auto& inst : c.instances) names.insert(inst.name);
  for (const auto& g : c.groups) groups.insert(g.name);
  auto leave_out = [&](const controller::Member& m, const std::string& why) {
    if (left_out != nullptr) left_out->push_back("etcd member " + m.id + ": " + why);
  };
  for (const controller::Member& m : members) {
    if (names.contains(m.id)) {
      leave_out(m, "a configured instance has that name; left out");
      continue;
    }
    if (!groups.contains(m.group)) {
      leave_out(m, "group '" + m.group + "' is not one of the gateway's; left out");
      continue;
    }
    if (m.role != gateway::Role::kMixed && c.cluster_token.empty()) {
      leave_out(m, "role " + std::string(gateway::role_name(m.role)) +
                       " needs a cluster token (--cluster-token); left out");
      continue;
    }
    gateway::InstanceConfig inst;
    inst.name = m.id;
    inst.host = m.host;
    inst.port = m.port;
    inst.role = m.role;
    inst.group = m.group;
    c.instances.push_back(std::move(inst));
    names.insert(m.id);
  }
  return c;
}

}  // namespace baton::cli
