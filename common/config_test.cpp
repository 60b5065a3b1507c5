#include "common/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

namespace baton {
namespace {

constexpr std::string_view kCluster = R"(server:
  host: 0.0.0.0
  port: abc
  workers: 8
  ratio: 0.75
  tls: yes
  models: [llama, qwen]
instances:
  - name: p0
    port: 8001
  - name: d0
    port: eighty
empty:
)";

Config cluster() {
  auto c = Config::parse(kCluster, "cluster.yaml");
  BATON_CHECK(c.is_ok());
  return *c;
}

TEST(ConfigTest, TypedGetters) {
  Config c = cluster();
  EXPECT_EQ(*c.get<std::string>("server.host"), "0.0.0.0");
  EXPECT_EQ(*c.get<int64_t>("server.workers"), 8);
  EXPECT_DOUBLE_EQ(*c.get<double>("server.ratio"), 0.75);
  EXPECT_DOUBLE_EQ(*c.get<double>("server.workers"), 8.0);
  EXPECT_TRUE(*c.get<bool>("server.tls"));
  EXPECT_EQ(*c.get<std::vector<std::string>>("server.models"),
            (std::vector<std::string>{"llama", "qwen"}));
  EXPECT_EQ(*c.get<std::string>("instances.1.name"), "d0");
  EXPECT_EQ(*c.get<std::string>("server.workers"), "8");
}

TEST(ConfigTest, WrongTypeNamesFileLineAndKey) {
  Config c = cluster();
  auto port = c.get<int64_t>("server.port");
  EXPECT_EQ(port.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(port.status().message(), "cluster.yaml:3: server.port: expected an integer, got 'abc'");
  EXPECT_EQ(c.get<bool>("server.host").status().message(),
            "cluster.yaml:2: server.host: expected a boolean (true or false), got '0.0.0.0'");
  EXPECT_EQ(c.get<std::string>("server").status().message(),
            "cluster.yaml:1: server: expected a string, got a map");
  EXPECT_EQ(c.get<int64_t>("server.models").status().message(),
            "cluster.yaml:7: server.models: expected an integer, got a list");
  EXPECT_EQ(c.get<std::vector<int64_t>>("server.models").status().message(),
            "cluster.yaml:7: server.models.0: expected an integer, got 'llama'");
  EXPECT_EQ(c.get<std::vector<std::string>>("server.host").status().message(),
            "cluster.yaml:2: server.host: expected a list of strings, got '0.0.0.0'");
  EXPECT_EQ(c.get<std::string>("empty").status().message(),
            "cluster.yaml:13: empty: expected a string, got nothing (null)");
}

TEST(ConfigTest, ScalarFormats) {
  auto c = Config::parse(R"(a: "on"
b: OFF
c: -42
d: +7
e: 99999999999999999999
f: .inf
g: -.Inf
h: 1e-3
i: 3.5
j: 0x10
)",
                         "s.yaml");
  ASSERT_TRUE(c.is_ok());
  EXPECT_TRUE(*c->get<bool>("a"));
  EXPECT_FALSE(*c->get<bool>("b"));
  EXPECT_EQ(*c->get<int64_t>("c"), -42);
  EXPECT_EQ(*c->get<int64_t>("d"), 7);
  EXPECT_FALSE(c->get<int64_t>("e").is_ok());
  EXPECT_TRUE(std::isinf(*c->get<double>("f")));
  EXPECT_LT(*c->get<double>("g"), 0);
  EXPECT_DOUBLE_EQ(*c->get<double>("h"), 0.001);
  EXPECT_EQ(c->get<int64_t>("i").status().message(), "s.yaml:9: i: expected an integer, got '3.5'");
  EXPECT_FALSE(c->get<int64_t>("j").is_ok());
}

TEST(ConfigTest, MissingKeysAndFallbacks) {
  Config c = cluster();
  auto missing = c.get<int64_t>("server.timeout");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "cluster.yaml: server.timeout: required key is missing");
  EXPECT_EQ(*c.get_or("server.timeout", 30), 30);
  EXPECT_EQ(*c.get_or("server.workers", 1), 8);
  EXPECT_EQ(*c.get_or("empty", "dflt"), "dflt");  // null counts as absent
  EXPECT_EQ(*c.get_or("nope.deeper", 1.5), 1.5);
  EXPECT_EQ(*c.get_or<bool>("server.debug", false), false);
  // A present value of the wrong type is an error, never the fallback.
  EXPECT_EQ(c.get_or("server.port", 8080).status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(c.get<std::string>("server.host.deeper").is_ok());
  EXPECT_FALSE(c.get<std::string>("instances.7.name").is_ok());
  EXPECT_FALSE(c.get<std::string>("instances.x.name").is_ok());
}

TEST(ConfigTest, HasAndKeysInDocumentOrder) {
  Config c = cluster();
  EXPECT_TRUE(c.has("server.port"));
  EXPECT_TRUE(c.has("empty"));
  EXPECT_TRUE(c.has("instances.0"));
  EXPECT_FALSE(c.has("server.nope"));
  EXPECT_EQ(c.keys(), (std::vector<std::string>{"server", "instances", "empty"}));
  EXPECT_EQ(c.keys("server"),
            (std::vector<std::string>{"host", "port", "workers", "ratio", "tls", "models"}));
  EXPECT_TRUE(c.keys("instances").empty());
  EXPECT_TRUE(c.keys("missing").empty());
}

TEST(ConfigTest, OverridesKeepYamlTypesAndNameTheFlag) {
  Config c = cluster();
  ASSERT_TRUE(c.apply_override("server.port=9000").is_ok());
  EXPECT_EQ(*c.get<int64_t>("server.port"), 9000);
  ASSERT_TRUE(c.apply_override("server.models=[a, b, c]").is_ok());
  EXPECT_EQ(c.get<std::vector<std::string>>("server.models")->size(), 3u);
  ASSERT_TRUE(c.apply_override("gateway.auth.key=").is_ok());  // creates maps
  EXPECT_EQ(*c.get<std::string>("gateway.auth.key"), "");
  ASSERT_TRUE(c.apply_override("instances.1.port=8002").is_ok());
  EXPECT_EQ(*c.get<int64_t>("instances.1.port"), 8002);
  EXPECT_EQ(*c.get<std::string>("instances.1.name"), "d0");

  ASSERT_TRUE(c.apply_override("server.workers=many").is_ok());
  EXPECT_EQ(c.get<int64_t>("server.workers").status().message(),
            "--set server.workers: expected an integer, got 'many'");
  ASSERT_TRUE(c.apply_override("limits={rps: fast}").is_ok());
  EXPECT_EQ(c.get<double>("limits.rps").status().message(),
            "--set limits: limits.rps: expected a number, got 'fast'");
  // A later override of an ancestor replaces the earlier, deeper one.
  ASSERT_TRUE(c.apply_override("limits.rps=slow").is_ok());
  ASSERT_TRUE(c.apply_override("limits={rps: x}").is_ok());
  EXPECT_EQ(c.get<double>("limits.rps").status().message(),
            "--set limits: limits.rps: expected a number, got 'x'");
  // Untouched neighbours still point at the file.
  EXPECT_EQ(c.get<int64_t>("server.host").status().message(),
            "cluster.yaml:2: server.host: expected an integer, got '0.0.0.0'");
}

TEST(ConfigTest, BadOverridesAreInvalidArgument) {
  Config c = cluster();
  for (const char* bad : {"server.port", "=1", "a..b=1", ".a=1", "a.=1", "server.port=[1,",
                          "server.host.x=1", "instances.9.port=1", "instances.x=1"}) {
    Status s = c.apply_override(bad);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("--set"), std::string::npos) << s.message();
  }
  EXPECT_EQ(*c.get<std::string>("server.host"), "0.0.0.0");
  EXPECT_EQ(c.keys("instances.0"), (std::vector<std::string>{"name", "port"}));
}

TEST(ConfigTest, OverridesOnAnEmptyDocument) {
  Config c;
  EXPECT_FALSE(c.has("a"));
  ASSERT_TRUE(c.apply_overrides({"a.b=1", "a.c=true"}).is_ok());
  EXPECT_EQ(*c.get<int64_t>("a.b"), 1);
  EXPECT_TRUE(*c.get<bool>("a.c"));
  auto scalar_doc = Config::parse("just a string", "s.yaml");
  ASSERT_TRUE(scalar_doc.is_ok());
  EXPECT_EQ(scalar_doc->apply_override("a=1").code(), StatusCode::kInvalidArgument);
}

TEST(ConfigTest, SubConfigsForListsOfMaps) {
  Config c = cluster();
  auto instances = c.sub_list("instances");
  ASSERT_TRUE(instances.is_ok());
  ASSERT_EQ(instances->size(), 2u);
  const Config& d0 = (*instances)[1];
  EXPECT_EQ(d0.path(), "instances.1");
  EXPECT_EQ(*d0.get<std::string>("name"), "d0");
  EXPECT_EQ(d0.get<int64_t>("port").status().message(),
            "cluster.yaml:12: instances.1.port: expected an integer, got 'eighty'");
  EXPECT_EQ(d0.keys(), (std::vector<std::string>{"name", "port"}));

  auto server = c.sub("server");
  ASSERT_TRUE(server.is_ok());
  EXPECT_EQ(*server->get<int64_t>("workers"), 8);
  // Views share the document: an override through the root is visible.
  ASSERT_TRUE(c.apply_override("server.workers=16").is_ok());
  EXPECT_EQ(*server->get<int64_t>("workers"), 16);
  ASSERT_TRUE(server->apply_override("workers=4").is_ok());
  EXPECT_EQ(*c.get<int64_t>("server.workers"), 4);
  EXPECT_EQ(server->get<bool>("workers").status().message(),
            "--set server.workers: expected a boolean (true or false), got '4'");

  EXPECT_EQ(c.sub("nope").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(c.sub_list("nope")->empty());
  EXPECT_TRUE(c.sub_list("empty")->empty());
  EXPECT_EQ(c.sub_list("server").status().message(),
            "cluster.yaml:1: server: expected a list, got a map");
}

TEST(ConfigTest, UnknownKeysAreReportedWithTheirLine) {
  auto c = Config::parse("server:\n  host: x\n  prot: 1\n  zzzzzz: 2\n", "cluster.yaml");
  ASSERT_TRUE(c.is_ok());
  Status s = c->check_known_keys("server", {"host", "port"});
  EXPECT_EQ(s.message(), "cluster.yaml:3: server.prot: unknown key (did you mean 'port'?)");
  s = c->check_known_keys("server", {"host", "port", "prot"});
  EXPECT_EQ(s.message(),
            "cluster.yaml:4: server.zzzzzz: unknown key (known keys: host, port, prot)");
  EXPECT_TRUE(c->check_known_keys("server", {"host", "prot", "zzzzzz"}).is_ok());
  EXPECT_TRUE(c->check_known_keys("absent", {}).is_ok());
  EXPECT_EQ(c->check_known_keys("server.host", {}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c->check_known_keys("", {"server"}).code(), StatusCode::kOk);
  ASSERT_TRUE(c->apply_override("server.extra=1").is_ok());
  EXPECT_EQ(c->check_known_keys("server", {"host", "prot", "zzzzzz"}).message(),
            "--set server.extra: unknown key (known keys: host, prot, zzzzzz)");
}

TEST(ConfigTest, SyntaxErrorsGiveFileLineAndColumn) {
  auto c = Config::parse("a: 1\nb: [1, 2\nc: 3\n", "bad.yaml");
  ASSERT_FALSE(c.is_ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(c.status().message().starts_with("bad.yaml:")) << c.status().message();
  auto d = Config::parse("a: 1\n  b: 2\n", "bad.yaml");
  ASSERT_FALSE(d.is_ok());
  EXPECT_TRUE(d.status().message().starts_with("bad.yaml:2:")) << d.status().message();
}

TEST(ConfigTest, LoadFile) {
  auto dir =
      std::filesystem::temp_directory_path() / ("baton_config_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto path = (dir / "cluster.yaml").string();
  std::ofstream(path) << "server:\n  port: abc\n";
  auto c = Config::load_file(path);
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->source_name(), path);
  EXPECT_EQ(c->get<int64_t>("server.port").status().message(),
            path + ":2: server.port: expected an integer, got 'abc'");

  auto missing = Config::load_file((dir / "nope.yaml").string());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("nope.yaml"), std::string::npos);
  EXPECT_EQ(Config::load_file(dir.string()).status().code(), StatusCode::kNotFound);
  std::filesystem::remove_all(dir);
}

TEST(ConfigTest, ToYamlReflectsOverrides) {
  Config c = cluster();
  ASSERT_TRUE(c.apply_override("server.port=1").is_ok());
  auto again = Config::parse(c.to_yaml(), "dump");
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(*again->get<int64_t>("server.port"), 1);
  EXPECT_EQ(*again->get<std::string>("instances.0.name"), "p0");
}

TEST(ConfigTest, NeverCrashesOnOddInput) {
  const std::vector<std::string> inputs = {
      "",
      "---\n...\n",
      "{",
      "]",
      "- - - -",
      "a: &x [1, *x]",
      "a: *undefined",
      "? [complex, key]\n: v\n",
      "a: !!binary AAAA",
      "a: !!int notanint",
      "\t- tab",
      std::string("a: \0b", 5),
      "a:\n  - {b: [c, {d: e}]}\n",
      std::string(2000, '[') + std::string(2000, ']'),
      "a: 1\na: 2\n",
      "a: \"unterminated",
  };
  for (const auto& text : inputs) {
    auto c = Config::parse(text, "odd.yaml");
    if (!c.is_ok()) {
      EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument) << text;
      continue;
    }
    for (const char* key : {"", "a", "a.0", "a.0.b", "a.1.0", "x.y"}) {
      (void)c->has(key);
      (void)c->keys(key);
      (void)c->get<int64_t>(key);
      (void)c->get<std::string>(key);
      (void)c->get<std::vector<std::string>>(key);
      (void)c->get_or<double>(key, 1.0);
      (void)c->sub_list(key);
      (void)c->check_known_keys(key, {"b"});
    }
    (void)c->to_yaml();
    (void)c->apply_override("a.b=1");
    (void)c->apply_override("a.0=[x]");
  }
}

}  // namespace
}  // namespace baton
