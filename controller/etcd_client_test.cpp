#include "controller/etcd_client.h"

#include <gtest/gtest.h>

#include "controller/membership.h"

namespace baton::controller {
namespace {

TEST(Base64, RoundTripsEveryLengthAndByte) {
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("/baton/x"), "L2JhdG9uL3g=");
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  for (size_t n = 0; n < all.size(); n += 7) {
    std::string s = all.substr(0, n);
    auto back = base64_decode(base64_encode(s));
    ASSERT_TRUE(back.is_ok());
    EXPECT_EQ(*back, s);
  }
}

TEST(Base64, RejectsBadInput) {
  EXPECT_FALSE(base64_decode("abc").is_ok());
  EXPECT_FALSE(base64_decode("ab!c").is_ok());
  EXPECT_FALSE(base64_decode("a=bc").is_ok());
  EXPECT_FALSE(base64_decode("Zg==Zg==").is_ok());
}

TEST(EtcdClient, PrefixRangeEndIncrementsTheLastByte) {
  EXPECT_EQ(prefix_range_end("/baton/"), "/baton0");
  EXPECT_EQ(prefix_range_end(std::string("a\xff", 2)), "b");
}

TEST(EtcdClient, ParsesEndpoints) {
  auto e = parse_etcd_endpoint("http://10.0.0.1:2380/");
  ASSERT_TRUE(e.is_ok());
  EXPECT_EQ(e->host, "10.0.0.1");
  EXPECT_EQ(e->port, 2380);
  EXPECT_EQ(parse_etcd_endpoint("etcd")->port, 2379);
  EXPECT_FALSE(parse_etcd_endpoint("https://etcd:2379").is_ok());
  EXPECT_FALSE(parse_etcd_endpoint("etcd:http").is_ok());
}

TEST(Member, JsonRoundTripAndSpecs) {
  Member m{"p0", "10.1.2.3", 8001, Role::kPrefill, "chat"};
  auto back = parse_member_json(member_to_json(m));
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(*back, m);
  EXPECT_FALSE(parse_member_json("{\"id\": \"x\", \"host\": \"h\"}").is_ok());
  EXPECT_FALSE(
      parse_member_json("{\"id\": \"x\", \"host\": \"h\", \"port\": 1, \"role\": \"both\"}")
          .is_ok());

  auto spec = parse_member_spec("address=127.0.0.1:9000,role=decode");
  ASSERT_TRUE(spec.is_ok()) << spec.status().to_string();
  EXPECT_EQ(spec->id, "127.0.0.1:9000");
  EXPECT_EQ(spec->role, Role::kDecode);
  EXPECT_EQ(spec->group, "default");
  EXPECT_FALSE(parse_member_spec("role=decode").is_ok());
  EXPECT_FALSE(parse_member_spec("address=h:0").is_ok());
  EXPECT_FALSE(parse_member_spec("address=h:1,colour=red").is_ok());
}

TEST(StaticMembership, VersionsAndWaiters) {
  StaticMembership m({{"a", "127.0.0.1", 1, Role::kMixed, "default"}});
  uint64_t v = m.version();
  // Nothing changes: the wait ends at its deadline with the same version.
  EXPECT_EQ(m.wait_for_change(v, SteadyClock::instance().now()), v);
  ASSERT_TRUE(m.set_role("a", Role::kDecode).is_ok());
  EXPECT_GT(m.version(), v);
  EXPECT_EQ(m.members()[0].role, Role::kDecode);
  EXPECT_EQ(m.set_role("zz", Role::kDecode).code(), StatusCode::kNotFound);
  uint64_t v2 = m.version();
  m.set(m.members());  // same set: no new version
  EXPECT_EQ(m.version(), v2);
}

}  // namespace
}  // namespace baton::controller
