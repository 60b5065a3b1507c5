#include "gateway/gateway_config.h"

#include <gtest/gtest.h>

namespace baton::gateway {
namespace {

Result<GatewayConfig> parse(std::string_view yaml) {
  auto doc = Config::parse(yaml, "gw.yaml");
  if (!doc.is_ok()) return doc.status();
  return parse_gateway_config(*doc);
}

TEST(GatewayConfigTest, ParsesAFullConfig) {
  auto c = parse(R"(
listen: {host: 0.0.0.0, port: 9000, io_threads: 3}
cluster_token: tok
instances:
  - {name: p0, url: "http://10.0.0.1:8001/", role: prefill, group: chat}
  - {name: d0, host: 10.0.0.2, port: 8002, role: decode, group: chat}
  - {url: "127.0.0.1:8003"}
groups:
  - {name: chat, models: [m1], scenario: chat, max_prompt_chars: 1000, prefill_policy: prefix_aware,
     decode_policy: power_of_two, imbalance_threshold: 2}
  - {name: default, policy: consistent_hash, affinity_header: x-user}
api_keys:
  - {key: sk-1, name: one, requests_per_minute: 10, tokens_per_minute: 1000}
limits: {max_body_kb: 16, max_prompt_chars: 5000, connect_timeout_ms: 100}
retry: {max_attempts: 2, backoff_ms: 5}
breaker: {failure_threshold: 2, open_ms: 50}
health: {interval_ms: 0}
pd: {max_prefill_tries: 3, forward_deadline_ms: 500, lease_ms: 1000}
)");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->host, "0.0.0.0");
  EXPECT_EQ(c->port, 9000);
  EXPECT_EQ(c->io_threads, 3);
  ASSERT_EQ(c->instances.size(), 3u);
  EXPECT_EQ(c->instances[0].host, "10.0.0.1");
  EXPECT_EQ(c->instances[0].port, 8001);
  EXPECT_EQ(c->instances[0].role, Role::kPrefill);
  EXPECT_EQ(c->instances[1].address(), "10.0.0.2:8002");
  EXPECT_EQ(c->instances[2].name, "127.0.0.1:8003");
  EXPECT_EQ(c->instances[2].group, "default");
  ASSERT_EQ(c->groups.size(), 2u);
  EXPECT_EQ(c->groups[0].decode_policy, PolicyKind::kPowerOfTwo);
  EXPECT_EQ(c->groups[0].max_prompt_chars, 1000);
  EXPECT_EQ(c->groups[1].policy, PolicyKind::kConsistentHash);
  EXPECT_EQ(c->groups[1].affinity_header, "x-user");
  EXPECT_EQ(c->api_keys[0].tokens_per_minute, 1000);
  EXPECT_EQ(c->limits.max_body_bytes, 16 * 1024);
  EXPECT_EQ(c->limits.connect_timeout.count(), 100);
  EXPECT_EQ(c->retry.max_attempts, 2);
  EXPECT_EQ(c->breaker.failure_threshold, 2);
  EXPECT_EQ(c->health.interval.count(), 0);
  EXPECT_EQ(c->pd.max_prefill_tries, 3);
  EXPECT_EQ(c->pd.lease_ms, 1000);
}

TEST(GatewayConfigTest, DefaultsToOneGroup) {
  auto c = parse("instances: [{url: 'http://h:1'}]\n");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  ASSERT_EQ(c->groups.size(), 1u);
  EXPECT_EQ(c->groups[0].name, "default");
}

TEST(GatewayConfigTest, ErrorsNameTheProblem) {
  auto typo = parse("instances: [{url: 'http://h:1'}]\nretry: {max_atempts: 2}\n");
  ASSERT_FALSE(typo.is_ok());
  EXPECT_NE(typo.status().message().find("max_atempts"), std::string::npos);
  auto group = parse("instances: [{url: 'http://h:1', group: nope}]\n");
  ASSERT_FALSE(group.is_ok());
  EXPECT_NE(group.status().message().find("unknown group 'nope'"), std::string::npos);
  auto token = parse("instances: [{url: 'http://h:1', role: decode}]\n");
  ASSERT_FALSE(token.is_ok());
  EXPECT_NE(token.status().message().find("cluster_token"), std::string::npos);
  auto policy = parse("groups: [{name: a, policy: random}]\n");
  ASSERT_FALSE(policy.is_ok());
  EXPECT_NE(policy.status().message().find("round_robin"), std::string::npos);
  auto dup = parse("instances: [{url: 'http://h:1'}, {url: 'h:1'}]\n");
  ASSERT_FALSE(dup.is_ok());
  EXPECT_NE(dup.status().message().find("duplicate"), std::string::npos);
}

TEST(GatewayConfigTest, InstanceUrls) {
  EXPECT_TRUE(parse_instance_url("http://localhost:8000").is_ok());
  EXPECT_EQ(parse_instance_url("[::1]:80")->host, "::1");
  EXPECT_FALSE(parse_instance_url("https://h:443").is_ok());
  EXPECT_FALSE(parse_instance_url("http://h").is_ok());
  EXPECT_FALSE(parse_instance_url("http://h:0").is_ok());
  EXPECT_FALSE(parse_instance_url("http://h:80/v1").is_ok());
}

}  // namespace
}  // namespace baton::gateway
