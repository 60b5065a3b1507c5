// The controller's settings as `baton up` and `baton controller` read them
// from flags and YAML.

#include "cli/controller_settings.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace baton::cli {
namespace {

struct Parsed {
  CLI::App app{"test"};
  ControllerSettings s;
  void add_flags(const ControllerFlagNames& names) {
    app.add_option(names.port, s.port);
    app.add_flag(names.no_adjust_ratio, s.no_adjust_ratio);
    app.add_option("--interval-ms", s.interval_ms);
    add_slo_flags(app, s);
  }
  void parse(std::vector<std::string> args) {
    std::reverse(args.begin(), args.end());  // CLI11 takes them last first
    app.parse(args);
  }
};

Config yaml(std::string_view text) {
  auto c = Config::parse(text, "test.yaml");
  EXPECT_TRUE(c.is_ok()) << c.status().to_string();
  return c.is_ok() ? *c : Config();
}

TEST(ControllerSettings, YamlSetsWhatNoFlagGave) {
  Parsed p;
  p.add_flags({});
  p.parse({"--ttft-slo-ms", "750", "--no-adjust-ratio"});
  auto doc = yaml(
      "port: 9100\nttft_slo_ms: 3000\ntpot_slo_ms: 50\nadjust_ratio: true\ninterval_ms: 250\n");
  ASSERT_TRUE(read_controller_settings(doc, "", p.app, {}, p.s).is_ok());
  EXPECT_EQ(p.s.port, 9100);
  EXPECT_EQ(p.s.ttft_slo_ms, 750) << "the flag wins";
  EXPECT_EQ(p.s.tpot_slo_ms, 50);
  EXPECT_TRUE(p.s.no_adjust_ratio) << "the flag wins";
  EXPECT_EQ(p.s.interval_ms, 250);

  auto o = controller_options(p.s);
  EXPECT_EQ(o.http->port, 9100);
  EXPECT_DOUBLE_EQ(o.ratio.slo.ttft_s, 0.75);
  EXPECT_DOUBLE_EQ(o.ratio.slo.tpot_s, 0.05);
  EXPECT_FALSE(o.adjust_ratio);
  EXPECT_EQ(o.interval, std::chrono::milliseconds(250));
}

TEST(ControllerSettings, ASectionAndOtherFlagNamesAsBatonUpUsesThem) {
  Parsed p;
  ControllerFlagNames names;
  names.port = "--controller-port";
  names.no_adjust_ratio = "--no-ratio";
  p.add_flags(names);
  p.parse({"--controller-port", "7000"});
  auto doc = yaml("controller: {port: 9100, adjust_ratio: false}\n");
  ASSERT_TRUE(read_controller_settings(doc, "controller", p.app, names, p.s).is_ok());
  EXPECT_EQ(p.s.port, 7000);
  EXPECT_TRUE(p.s.no_adjust_ratio);
  EXPECT_EQ(p.s.ttft_slo_ms, 2000) << "defaults stay";
}

TEST(ControllerSettings, BadValuesAreErrorsThatNameTheKey) {
  for (const char* text : {"port: 70000\n", "ttft_slo_ms: -1\n", "interval_ms: 1\n",
                           "adjust_ratio: maybe\n", "tpot_slo_ms: fast\n"}) {
    Parsed p;
    p.add_flags({});
    p.parse({});
    Status s = read_controller_settings(yaml(text), "", p.app, {}, p.s);
    EXPECT_FALSE(s.is_ok()) << text;
    std::string key(text, std::string_view(text).find(':'));
    EXPECT_NE(s.message().find(key), std::string::npos) << s.message();
  }
}

TEST(ControllerSettings, EtcdTargetAddsTheTrailingSlash) {
  auto t = etcd_target({"http://10.0.0.1:2379", "/baton/instances"});
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  EXPECT_EQ(t->endpoint.host, "10.0.0.1");
  EXPECT_EQ(t->endpoint.port, 2379);
  EXPECT_EQ(t->prefix, "/baton/instances/");
  EXPECT_EQ(etcd_target({"etcd", "/x/"})->prefix, "/x/");
  EXPECT_FALSE(etcd_target({"http://10.0.0.1:2379", ""}).is_ok());
  EXPECT_FALSE(etcd_target({"https://10.0.0.1:2379", "/x/"}).is_ok());
}

}  // namespace
}  // namespace baton::cli
