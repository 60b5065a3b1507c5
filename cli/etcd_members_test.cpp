// What `baton gateway --etcd` makes of the registered members.

#include "cli/etcd_members.h"

#include <gtest/gtest.h>

namespace baton::cli {
namespace {

using controller::Member;
using gateway::Role;

gateway::GatewayConfig config_with(std::vector<std::string> groups, std::string token) {
  gateway::GatewayConfig c;
  for (auto& g : groups) {
    gateway::GroupConfig gc;
    gc.name = std::move(g);
    c.groups.push_back(std::move(gc));
  }
  c.cluster_token = std::move(token);
  auto inst = gateway::parse_instance_url("http://127.0.0.1:9000");
  EXPECT_TRUE(inst.is_ok());
  inst->name = "static";
  c.instances.push_back(*inst);
  return c;
}

TEST(EtcdMembers, MembersJoinTheConfiguredInstancesWithTheirAddressRoleAndGroup) {
  auto c = config_with({"default", "chat"}, "s3cret");
  std::vector<std::string> left_out;
  auto out = with_etcd_members(c,
                               {Member{"p0", "10.0.0.5", 8001, Role::kPrefill, "chat"},
                                Member{"m0", "10.0.0.6", 8002, Role::kMixed, "default"}},
                               &left_out);
  EXPECT_TRUE(left_out.empty());
  ASSERT_EQ(out.instances.size(), 3u);
  EXPECT_EQ(out.instances[0].name, "static");
  EXPECT_EQ(out.instances[1].name, "p0");
  EXPECT_EQ(out.instances[1].address(), "10.0.0.5:8001");
  EXPECT_EQ(out.instances[1].role, Role::kPrefill);
  EXPECT_EQ(out.instances[1].group, "chat");
  EXPECT_FALSE(out.instances[1].draining);
  EXPECT_EQ(out.instances[2].name, "m0");
  EXPECT_EQ(out.instances[2].role, Role::kMixed);
  // The result passes the same checks as a config from a file.
  EXPECT_TRUE(gateway::finish_gateway_config(out).is_ok());
}

TEST(EtcdMembers, MembersTheConfigCannotRouteAreLeftOutWithAReason) {
  auto c = config_with({"default"}, "");
  std::vector<std::string> left_out;
  auto out = with_etcd_members(c,
                               {Member{"static", "10.0.0.1", 8001, Role::kMixed, "default"},
                                Member{"c0", "10.0.0.2", 8002, Role::kMixed, "chat"},
                                Member{"d0", "10.0.0.3", 8003, Role::kDecode, "default"},
                                Member{"ok", "10.0.0.4", 8004, Role::kMixed, "default"}},
                               &left_out);
  ASSERT_EQ(out.instances.size(), 2u);
  EXPECT_EQ(out.instances[0].address(), "127.0.0.1:9000") << "the configured one is kept";
  EXPECT_EQ(out.instances[1].name, "ok");
  ASSERT_EQ(left_out.size(), 3u);
  EXPECT_NE(left_out[0].find("static: a configured instance has that name"), std::string::npos)
      << left_out[0];
  EXPECT_NE(left_out[1].find("c0: group 'chat'"), std::string::npos) << left_out[1];
  EXPECT_NE(left_out[2].find("d0: role decode needs a cluster token"), std::string::npos)
      << left_out[2];
  EXPECT_TRUE(gateway::finish_gateway_config(out).is_ok());
}

TEST(EtcdMembers, NoMembersLeavesTheConfigAsItIs) {
  auto c = config_with({"default"}, "");
  auto out = with_etcd_members(c, {});
  ASSERT_EQ(out.instances.size(), 1u);
  EXPECT_EQ(out.instances[0].name, "static");
}

}  // namespace
}  // namespace baton::cli
