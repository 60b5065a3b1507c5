#include "model/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

namespace baton::model {
namespace {

using nlohmann::json;

std::span<const std::byte> bytes_of(const std::vector<float>& v) {
  return std::as_bytes(std::span<const float>(v));
}

void expect_error(const Status& s, StatusCode code, std::initializer_list<std::string> parts) {
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), code) << s.to_string();
  for (const auto& p : parts) EXPECT_NE(s.message().find(p), std::string::npos) << s.message();
}

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::temp_directory_path() /
           (std::string("baton_st_") + info->name() + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A file with an arbitrary header, for the malformed cases the writer
  // refuses to produce. `len` overrides the header length prefix.
  std::filesystem::path write_raw(const std::string& name, const std::string& header,
                                  size_t data_bytes, std::optional<uint64_t> len = std::nullopt) {
    std::filesystem::path p = dir_ / name;
    std::ofstream out(p, std::ios::binary);
    uint64_t n = len.value_or(header.size());
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
    out << header << std::string(data_bytes, '\0');
    return p;
  }
  std::filesystem::path write_header(const json& header, size_t data_bytes) {
    return write_raw("bad.safetensors", header.dump(), data_bytes);
  }
  Status open_status(const std::filesystem::path& p) { return SafetensorsFile::open(p).status(); }

  // Writes a shard holding `names`, each a 2-float f32 tensor.
  void write_shard(const std::string& file, const std::vector<std::string>& names) {
    std::vector<TensorToWrite> ts;
    for (const auto& n : names) ts.push_back({n, DType::kF32, {2}, bytes_of(two_)});
    ASSERT_TRUE(write_safetensors(dir_ / file, ts).is_ok());
  }
  void write_index(const json& weight_map) {
    std::ofstream(dir_ / "model.safetensors.index.json")
        << json{{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}.dump();
  }

  std::filesystem::path dir_;
  std::vector<float> two_ = {1.5f, -2.0f};
};

TEST_F(SafetensorsTest, WriteThenReadRoundTrips) {
  std::vector<float> a = {1, 2, 3, 4, 5, 6};
  std::vector<uint16_t> b = {f32_to_bf16(0.5f), f32_to_bf16(-1.0f), f32_to_bf16(2.0f)};
  std::vector<int64_t> c = {7, -8};
  std::vector<TensorToWrite> ts = {
      {"w.a", DType::kF32, {2, 3}, bytes_of(a)},
      {"w.b", DType::kBF16, {3}, std::as_bytes(std::span<const uint16_t>(b))},
      {"empty", DType::kF16, {0, 4}, {}},
      {"c", DType::kI64, {2}, std::as_bytes(std::span<const int64_t>(c))},
  };
  ASSERT_TRUE(write_safetensors(dir_ / "x.safetensors", ts, {{"format", "pt"}}).is_ok());

  auto f = SafetensorsFile::open(dir_ / "x.safetensors");
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  const SafetensorsFile& file = **f;
  EXPECT_EQ(file.metadata().at("format"), "pt");
  ASSERT_EQ(file.tensors().size(), 4u);
  EXPECT_EQ(file.tensors()[0].name, "c");  // sorted by name

  const SafetensorsTensor* ta = file.find("w.a");
  ASSERT_NE(ta, nullptr);
  EXPECT_EQ(ta->dtype, DType::kF32);
  EXPECT_EQ(ta->shape, (std::vector<int64_t>{2, 3}));
  ASSERT_EQ(ta->bytes(), 24u);
  EXPECT_EQ(std::memcmp(ta->data, a.data(), 24), 0);

  const SafetensorsTensor* tb = file.find("w.b");
  ASSERT_NE(tb, nullptr);
  EXPECT_EQ(tb->dtype, DType::kBF16);
  uint16_t second;
  std::memcpy(&second, tb->data + 2, 2);
  EXPECT_EQ(bf16_to_f32(second), -1.0f);

  const SafetensorsTensor* tc = file.find("c");
  ASSERT_NE(tc, nullptr);
  int64_t c1;
  std::memcpy(&c1, tc->data + 8, 8);
  EXPECT_EQ(c1, -8);

  ASSERT_NE(file.find("empty"), nullptr);
  EXPECT_EQ(file.find("empty")->bytes(), 0u);
  EXPECT_EQ(file.find("missing"), nullptr);
}

TEST_F(SafetensorsTest, WriterRejectsBadInput) {
  std::vector<TensorToWrite> dup = {{"a", DType::kF32, {2}, bytes_of(two_)},
                                    {"a", DType::kF32, {2}, bytes_of(two_)}};
  expect_error(write_safetensors(dir_ / "d.safetensors", dup), StatusCode::kInvalidArgument,
               {"duplicate", "\"a\""});
  std::vector<TensorToWrite> wrong = {{"a", DType::kF32, {3}, bytes_of(two_)}};
  expect_error(write_safetensors(dir_ / "w.safetensors", wrong), StatusCode::kInvalidArgument,
               {"\"a\""});
}

TEST_F(SafetensorsTest, RejectsMalformedFiles) {
  const std::string bad = (dir_ / "bad.safetensors").string();
  expect_error(open_status(dir_ / "nope.safetensors"), StatusCode::kNotFound, {"nope.safetensors"});

  std::ofstream(dir_ / "bad.safetensors") << "abc";
  expect_error(open_status(bad), StatusCode::kUnprocessable, {bad, "too small"});

  write_raw("bad.safetensors", "{}", 0, 1000);
  expect_error(open_status(bad), StatusCode::kUnprocessable, {bad, "beyond the file"});

  write_raw("bad.safetensors", "{}", 0, 200ull * 1024 * 1024);
  expect_error(open_status(bad), StatusCode::kUnprocessable, {bad, "limit"});

  write_raw("bad.safetensors", "{\"a\": ", 0);
  expect_error(open_status(bad), StatusCode::kUnprocessable, {bad, "not valid JSON"});

  write_raw("bad.safetensors", "[1]", 0);
  expect_error(open_status(bad), StatusCode::kUnprocessable, {bad, "not a JSON object"});

  write_header({{"__metadata__", {{"k", 1}}}}, 0);
  expect_error(open_status(bad), StatusCode::kUnprocessable, {bad, "__metadata__"});
}

TEST_F(SafetensorsTest, RejectsBadTensorEntriesNamingFileAndTensor) {
  const std::string bad = (dir_ / "bad.safetensors").string();
  struct Case {
    const char* what;
    json entry;
    size_t data_bytes;
    const char* message;
  };
  const Case cases[] = {
      {"unknown dtype",
       {{"dtype", "F8_E4M3"}, {"shape", {2}}, {"data_offsets", {0, 2}}},
       2,
       "F8_E4M3"},
      {"beyond data",
       {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}},
       4,
       "beyond the data region"},
      {"end < begin",
       {{"dtype", "F32"}, {"shape", {0}}, {"data_offsets", {8, 4}}},
       8,
       "end before begin"},
      {"size mismatch",
       {{"dtype", "F32"}, {"shape", {3}}, {"data_offsets", {0, 8}}},
       8,
       "needs 12"},
      {"shape overflow",
       {{"dtype", "F32"}, {"shape", {1ll << 40, 1ll << 40}}, {"data_offsets", {0, 8}}},
       8,
       "overflow"},
      {"negative dim", {{"dtype", "F32"}, {"shape", {-2}}, {"data_offsets", {0, 8}}}, 8, "shape"},
      {"no shape", {{"dtype", "F32"}, {"data_offsets", {0, 8}}}, 8, "shape"},
      {"bad offsets", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0}}}, 8, "data_offsets"},
      {"not an object", json::array({1, 2}), 8, "not an object"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    write_header({{"model.w", c.entry}}, c.data_bytes);
    expect_error(open_status(bad), StatusCode::kUnprocessable, {bad, "\"model.w\"", c.message});
  }
}

TEST_F(SafetensorsTest, RejectsOverlappingTensors) {
  const std::string bad = (dir_ / "bad.safetensors").string();
  write_header({{"a", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}},
                {"b", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {4, 12}}}}},
               12);
  expect_error(open_status(bad), StatusCode::kUnprocessable, {bad, "\"a\"", "\"b\"", "overlap"});
  // Adjacent is fine.
  write_header({{"a", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}},
                {"b", {{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {8, 12}}}}},
               12);
  EXPECT_TRUE(open_status(bad).is_ok());
}

TEST_F(SafetensorsTest, CheckpointSingleFile) {
  write_shard("model.safetensors", {"x", "y"});
  auto ck = SafetensorsCheckpoint::open(dir_);
  ASSERT_TRUE(ck.is_ok()) << ck.status().to_string();
  EXPECT_EQ(ck->files().size(), 1u);
  EXPECT_EQ(ck->tensors().size(), 2u);
  ASSERT_NE(ck->find("y"), nullptr);
  EXPECT_EQ(ck->find("y")->file->path(), dir_ / "model.safetensors");
}

TEST_F(SafetensorsTest, CheckpointSharded) {
  write_shard("model-00001-of-00002.safetensors", {"a", "b"});
  write_shard("model-00002-of-00002.safetensors", {"c"});
  write_index({{"a", "model-00001-of-00002.safetensors"},
               {"b", "model-00001-of-00002.safetensors"},
               {"c", "model-00002-of-00002.safetensors"}});
  auto ck = SafetensorsCheckpoint::open(dir_);
  ASSERT_TRUE(ck.is_ok()) << ck.status().to_string();
  EXPECT_EQ(ck->files().size(), 2u);  // each shard opened once
  ASSERT_EQ(ck->tensors().size(), 3u);
  EXPECT_EQ(ck->find("c")->file->path(), dir_ / "model-00002-of-00002.safetensors");
  float v;
  std::memcpy(&v, ck->find("c")->tensor->data, 4);
  EXPECT_EQ(v, 1.5f);
}

TEST_F(SafetensorsTest, CheckpointShardErrors) {
  const std::string s1 = "model-00001-of-00002.safetensors";
  const std::string s2 = "model-00002-of-00002.safetensors";
  write_shard(s1, {"a", "b"});
  write_shard(s2, {"c", "b"});

  // "b" is in both shards.
  write_index({{"a", s1}, {"b", s1}, {"c", s2}});
  expect_error(SafetensorsCheckpoint::open(dir_).status(), StatusCode::kUnprocessable,
               {s2, "\"b\"", "two shards"});

  // The index names a tensor its shard does not hold.
  write_shard(s2, {"c"});
  write_index({{"a", s1}, {"b", s1}, {"c", s2}, {"d", s2}});
  expect_error(SafetensorsCheckpoint::open(dir_).status(), StatusCode::kUnprocessable,
               {s2, "\"d\"", "not present"});

  // A shard holds a tensor the index leaves out.
  write_index({{"a", s1}, {"c", s2}});
  expect_error(SafetensorsCheckpoint::open(dir_).status(), StatusCode::kUnprocessable,
               {s1, "\"b\"", "not listed"});

  // Missing shard file.
  write_index({{"a", s1}, {"b", s1}, {"c", "model-00003-of-00003.safetensors"}});
  expect_error(SafetensorsCheckpoint::open(dir_).status(), StatusCode::kNotFound,
               {"model-00003-of-00003.safetensors"});

  // Shard names may not leave the model directory.
  for (const std::string shard : {"../outside.safetensors", "/etc/passwd", "sub/../../x"}) {
    write_index({{"a", s1}, {"b", s1}, {"c", shard}});
    expect_error(SafetensorsCheckpoint::open(dir_).status(), StatusCode::kUnprocessable,
                 {"model.safetensors.index.json", "\"c\"", shard});
  }

  std::ofstream(dir_ / "model.safetensors.index.json") << R"({"weight_map": [1]})";
  expect_error(SafetensorsCheckpoint::open(dir_).status(), StatusCode::kUnprocessable,
               {"model.safetensors.index.json", "weight_map"});
}

TEST_F(SafetensorsTest, CheckpointWithNoWeights) {
  expect_error(SafetensorsCheckpoint::open(dir_).status(), StatusCode::kNotFound,
               {dir_.string(), "model.safetensors"});
}

TEST(CheckedNumel, OverflowAndNegative) {
  EXPECT_EQ(checked_numel(std::vector<int64_t>{}), 1);
  EXPECT_EQ(checked_numel(std::vector<int64_t>{3, 4}), 12);
  EXPECT_EQ(checked_numel(std::vector<int64_t>{3, 0}), 0);
  EXPECT_EQ(checked_numel(std::vector<int64_t>{-1, 4}), std::nullopt);
  EXPECT_EQ(checked_numel(std::vector<int64_t>{1ll << 40, 1ll << 40}), std::nullopt);
}

}  // namespace
}  // namespace baton::model
