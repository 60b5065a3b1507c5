#include "model/model_path.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace baton::model {
namespace {

namespace fs = std::filesystem;

class ModelPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/baton_model_path_XXXXXX";
    base_ = mkdtemp(tmpl);
    root_ = base_ / "models";
    fs::create_directories(root_ / "tiny");
    std::ofstream(root_ / "tiny" / "config.json") << "{}";
    fs::create_directories(base_ / "secret");
    std::ofstream(base_ / "secret" / "key") << "s3cret";
  }
  void TearDown() override { fs::remove_all(base_); }

  fs::path base_, root_;
};

TEST_F(ModelPathTest, NoRootLeavesTheNameAlone) {
  auto r = resolve_model_path("", "../../etc");
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->string(), "../../etc");
}

TEST_F(ModelPathTest, NamesResolveUnderTheRoot) {
  auto r = resolve_model_path(root_.string(), "tiny");
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(*r, fs::canonical(root_ / "tiny"));
  auto abs = resolve_model_path(root_.string(), (root_ / "tiny").string());
  ASSERT_TRUE(abs.is_ok()) << abs.status().message();
  EXPECT_EQ(*abs, *r);
  EXPECT_TRUE(resolve_model_path(root_.string(), "dummy:tiny").is_ok());
}

TEST_F(ModelPathTest, TraversalOutsideTheRootIsRefused) {
  for (const std::string& name : std::vector<std::string>{
           "../secret", "../../etc", "tiny/../../secret", "/etc", (base_ / "secret").string()}) {
    auto r = resolve_model_path(root_.string(), name);
    ASSERT_FALSE(r.is_ok()) << name;
    EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied) << name;
    EXPECT_NE(r.status().message().find("outside the model root"), std::string::npos)
        << r.status().message();
  }
  auto missing = resolve_model_path(root_.string(), "nope");
  ASSERT_FALSE(missing.is_ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

TEST_F(ModelPathTest, SymlinksEscapingTheRootAreRefused) {
  fs::create_directory_symlink(base_ / "secret", root_ / "escape");
  auto dir = resolve_model_path(root_.string(), "escape");
  ASSERT_FALSE(dir.is_ok());
  EXPECT_EQ(dir.status().code(), StatusCode::kPermissionDenied);

  fs::create_symlink(base_ / "secret" / "key", root_ / "tiny" / "model.safetensors");
  auto file = resolve_model_path(root_.string(), "tiny");
  ASSERT_FALSE(file.is_ok());
  EXPECT_NE(file.status().message().find("model.safetensors is a link"), std::string::npos)
      << file.status().message();

  // Links that stay inside the root are fine.
  fs::remove(root_ / "tiny" / "model.safetensors");
  fs::create_directory_symlink(root_ / "tiny", root_ / "alias");
  EXPECT_TRUE(resolve_model_path(root_.string(), "alias").is_ok());
}

}  // namespace
}  // namespace baton::model
