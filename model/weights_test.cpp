#include "model/weights.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/safetensors.h"

namespace baton::model {
namespace {

using nlohmann::json;

void expect_error(const Status& s, StatusCode code, std::initializer_list<std::string> parts) {
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), code) << s.to_string();
  for (const auto& p : parts) EXPECT_NE(s.message().find(p), std::string::npos) << s.message();
}

// A tiny Llama: 2 layers, hidden 8, 2 heads of 4, 1 kv head, vocab 32.
json tiny_llama_json() {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"vocab_size", 32},
          {"hidden_size", 8},
          {"intermediate_size", 16},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 2},
          {"num_key_value_heads", 1},
          {"max_position_embeddings", 64},
          {"rms_norm_eps", 1e-5},
          {"tie_word_embeddings", false}};
}

struct OwnedTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;
};

// Every expected tensor, element i of tensor t holding the f32 value
// t + i / 1000 converted to `dtype`, so tests can check which bytes arrived.
std::vector<OwnedTensor> make_tensors(const ModelConfig& c, DType dtype) {
  std::vector<OwnedTensor> out;
  int t = 0;
  for (const auto& x : expected_tensors(c)) {
    OwnedTensor o{x.name, dtype, x.shape, {}};
    int64_t n = checked_numel(x.shape).value();
    o.bytes.resize(static_cast<size_t>(n) * dtype_size(dtype));
    for (int64_t i = 0; i < n; ++i) {
      float v = static_cast<float>(t) + static_cast<float>(i) / 1000.0f;
      if (dtype == DType::kF32) {
        std::memcpy(o.bytes.data() + i * 4, &v, 4);
      } else {
        uint16_t h = dtype == DType::kBF16 ? f32_to_bf16(v) : f32_to_f16(v);
        std::memcpy(o.bytes.data() + i * 2, &h, 2);
      }
    }
    out.push_back(std::move(o));
    ++t;
  }
  return out;
}

OwnedTensor* find(std::vector<OwnedTensor>& ts, const std::string& name) {
  for (auto& t : ts) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

class WeightsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::temp_directory_path() /
           (std::string("baton_weights_") + info->name() + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    set_config(tiny_llama_json());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void set_config(const json& j) {
    std::ofstream(dir_ / "config.json") << j.dump();
    auto c = load_model_config(dir_);
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    config_ = *c;
  }

  void write_file(const std::string& file, const std::vector<OwnedTensor>& ts) {
    std::vector<TensorToWrite> w;
    for (const auto& t : ts) w.push_back({t.name, t.dtype, t.shape, t.bytes});
    Status s = write_safetensors(dir_ / file, w);
    ASSERT_TRUE(s.is_ok()) << s.to_string();
  }

  // Two shards: layer 1 and the head in the second, the rest in the first.
  void write_sharded(const std::vector<OwnedTensor>& ts) {
    std::vector<OwnedTensor> a, b;
    json map;
    for (const auto& t : ts) {
      bool second = t.name.starts_with("model.layers.1.") || t.name == "lm_head.weight";
      (second ? b : a).push_back(t);
      map[t.name] = second ? kShard2 : kShard1;
    }
    write_file(kShard1, a);
    write_file(kShard2, b);
    std::ofstream(dir_ / "model.safetensors.index.json") << json{{"weight_map", map}}.dump();
  }

  Status load_status() { return load_model_weights(dir_, config_).status(); }

  static constexpr const char* kShard1 = "model-00001-of-00002.safetensors";
  static constexpr const char* kShard2 = "model-00002-of-00002.safetensors";
  std::filesystem::path dir_;
  ModelConfig config_;
};

TEST(ExpectedTensors, FollowsTheConfig) {
  ModelConfig c = parse_model_config(tiny_llama_json().dump()).value();
  auto names = expected_tensors(c);
  ASSERT_EQ(names.size(), 1u + 2 * 9 + 1 + 1);
  EXPECT_EQ(names.front().name, "model.embed_tokens.weight");
  EXPECT_EQ(names.front().shape, (std::vector<int64_t>{32, 8}));
  EXPECT_EQ(names.back().name, "lm_head.weight");
  auto shape_of = [&](const std::string& n) {
    for (const auto& x : names) {
      if (x.name == n) return x.shape;
    }
    return std::vector<int64_t>{-1};
  };
  EXPECT_EQ(shape_of("model.layers.1.self_attn.q_proj.weight"), (std::vector<int64_t>{8, 8}));
  EXPECT_EQ(shape_of("model.layers.1.self_attn.k_proj.weight"), (std::vector<int64_t>{4, 8}));
  EXPECT_EQ(shape_of("model.layers.1.self_attn.v_proj.weight"), (std::vector<int64_t>{4, 8}));
  EXPECT_EQ(shape_of("model.layers.1.self_attn.o_proj.weight"), (std::vector<int64_t>{8, 8}));
  EXPECT_EQ(shape_of("model.layers.0.mlp.gate_proj.weight"), (std::vector<int64_t>{16, 8}));
  EXPECT_EQ(shape_of("model.layers.0.mlp.down_proj.weight"), (std::vector<int64_t>{8, 16}));
  EXPECT_EQ(shape_of("model.layers.0.post_attention_layernorm.weight"), (std::vector<int64_t>{8}));
  EXPECT_EQ(shape_of("model.norm.weight"), (std::vector<int64_t>{8}));

  c.tie_word_embeddings = true;
  EXPECT_EQ(expected_tensors(c).size(), names.size() - 1);
  c.qkv_bias = true;  // Qwen2
  EXPECT_EQ(expected_tensors(c).size(), names.size() - 1 + 2 * 3);
  c.o_bias = c.mlp_bias = true;  // Llama attention_bias + mlp_bias
  EXPECT_EQ(expected_tensors(c).size(), names.size() - 1 + 2 * 7);
  EXPECT_EQ(count_parameters(c),
            32 * 8 + 2 * (8 + 8 + 64 + 32 + 32 + 64 + 8 + 4 + 4 + 8 + 3 * 128 + 16 + 16 + 8) + 8);
}

TEST_F(WeightsTest, LoadsSingleFile) {
  auto ts = make_tensors(config_, DType::kBF16);
  write_file("model.safetensors", ts);
  auto w = load_model_weights(dir_, config_);
  ASSERT_TRUE(w.is_ok()) << w.status().to_string();
  EXPECT_EQ(w->size(), ts.size());
  for (const auto& t : ts) {
    const TensorRef* r = w->find(t.name);
    ASSERT_NE(r, nullptr) << t.name;
    EXPECT_EQ(r->dtype, DType::kBF16);
    EXPECT_EQ(r->shape, t.shape);
    ASSERT_EQ(r->bytes, t.bytes.size());
    EXPECT_EQ(std::memcmp(r->data, t.bytes.data(), r->bytes), 0) << t.name;
    EXPECT_EQ(r->file, (dir_ / "model.safetensors").string());
  }
  EXPECT_EQ(w->find("nope"), nullptr);
  expect_error(w->get("nope").status(), StatusCode::kNotFound, {"nope"});
  auto got = w->get("model.norm.weight");
  ASSERT_TRUE(got.is_ok());
  EXPECT_EQ((*got)->numel(), 8);

  // The data outlives the loader's locals: copies share ownership.
  ModelWeights copy = *w;
  w = ModelWeights();
  const TensorRef* emb = copy.find("model.embed_tokens.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(std::memcmp(emb->data, ts[0].bytes.data(), emb->bytes), 0);
}

TEST_F(WeightsTest, LoadsShardedAndMixedDtypes) {
  auto ts = make_tensors(config_, DType::kBF16);
  auto f32 = make_tensors(config_, DType::kF32);
  // Norms in f32, as some exports keep them.
  for (size_t i = 0; i < ts.size(); ++i) {
    if (ts[i].name.find("norm") != std::string::npos) ts[i] = f32[i];
  }
  ts.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq", DType::kF32, {2}, f32[1].bytes});
  ts.back().bytes.resize(8);
  write_sharded(ts);
  auto w = load_model_weights(dir_, config_);
  ASSERT_TRUE(w.is_ok()) << w.status().to_string();
  EXPECT_EQ(w->size(), ts.size() - 1);  // inv_freq dropped
  EXPECT_EQ(w->find("model.layers.0.self_attn.rotary_emb.inv_freq"), nullptr);
  EXPECT_EQ(w->find("model.norm.weight")->dtype, DType::kF32);
  EXPECT_EQ(w->find("model.layers.1.mlp.up_proj.weight")->file, (dir_ / kShard2).string());
  EXPECT_EQ(w->find("model.layers.0.mlp.up_proj.weight")->file, (dir_ / kShard1).string());
  const TensorRef* head = w->find("lm_head.weight");
  ASSERT_NE(head, nullptr);
  EXPECT_EQ(std::memcmp(head->data, find(ts, "lm_head.weight")->bytes.data(), head->bytes), 0);
}

TEST_F(WeightsTest, MissingTensorIsNamed) {
  auto ts = make_tensors(config_, DType::kF16);
  ts.erase(
      std::remove_if(ts.begin(), ts.end(),
                     [](const auto& t) { return t.name == "model.layers.1.mlp.up_proj.weight"; }),
      ts.end());
  write_sharded(ts);
  expect_error(load_status(), StatusCode::kUnprocessable,
               {"model.layers.1.mlp.up_proj.weight", "missing", dir_.string()});
}

TEST_F(WeightsTest, WrongShapeIsNamedWithFile) {
  auto ts = make_tensors(config_, DType::kF32);
  OwnedTensor* k = find(ts, "model.layers.1.self_attn.k_proj.weight");
  k->shape = {8, 4};  // transposed: same bytes, wrong layout
  write_sharded(ts);
  expect_error(load_status(), StatusCode::kUnprocessable,
               {"model.layers.1.self_attn.k_proj.weight", kShard2, "[8, 4]", "[4, 8]"});
}

TEST_F(WeightsTest, NonFloatDtypeIsRejected) {
  auto ts = make_tensors(config_, DType::kF32);
  find(ts, "model.norm.weight")->dtype = DType::kI32;
  write_file("model.safetensors", ts);
  expect_error(load_status(), StatusCode::kUnprocessable,
               {"model.norm.weight", "model.safetensors", "I32"});
}

TEST_F(WeightsTest, UnexpectedTensorIsNamedWithFile) {
  auto ts = make_tensors(config_, DType::kF32);
  OwnedTensor extra = ts[1];
  extra.name = "model.layers.2.input_layernorm.weight";  // a layer the config does not have
  ts.push_back(extra);
  write_sharded(ts);
  expect_error(load_status(), StatusCode::kUnprocessable,
               {"model.layers.2.input_layernorm.weight", kShard1, "not part of"});
}

TEST_F(WeightsTest, QwenBiasesAreRequired) {
  json j = tiny_llama_json();
  j["architectures"] = {"Qwen2ForCausalLM"};
  j["model_type"] = "qwen2";
  set_config(j);
  auto ts = make_tensors(config_, DType::kBF16);
  ASSERT_NE(find(ts, "model.layers.0.self_attn.q_proj.bias"), nullptr);
  EXPECT_EQ(find(ts, "model.layers.0.self_attn.o_proj.bias"), nullptr);
  write_file("model.safetensors", ts);
  ASSERT_TRUE(load_status().is_ok()) << load_status().to_string();

  ts.erase(std::remove_if(
               ts.begin(), ts.end(),
               [](const auto& t) { return t.name == "model.layers.0.self_attn.v_proj.bias"; }),
           ts.end());
  write_file("model.safetensors", ts);
  expect_error(load_status(), StatusCode::kUnprocessable, {"model.layers.0.self_attn.v_proj.bias"});
}

TEST_F(WeightsTest, TiedModelMayCarryLmHead) {
  json j = tiny_llama_json();
  j["tie_word_embeddings"] = true;
  set_config(j);
  auto ts = make_tensors(config_, DType::kBF16);
  EXPECT_EQ(find(ts, "lm_head.weight"), nullptr);
  write_file("model.safetensors", ts);
  ASSERT_TRUE(load_status().is_ok()) << load_status().to_string();

  OwnedTensor head = ts[0];  // a copy of the embeddings
  head.name = "lm_head.weight";
  ts.push_back(head);
  write_file("model.safetensors", ts);
  auto w = load_model_weights(dir_, config_);
  ASSERT_TRUE(w.is_ok()) << w.status().to_string();
  EXPECT_EQ(w->find("lm_head.weight"), nullptr);  // tied: embed_tokens is the head

  ts.back().shape = {16, 16};
  write_file("model.safetensors", ts);
  expect_error(load_status(), StatusCode::kUnprocessable, {"lm_head.weight", "[16, 16]"});
}

TEST_F(WeightsTest, NoCheckpointIsNotFound) {
  expect_error(load_status(), StatusCode::kNotFound, {dir_.string()});
}

}  // namespace
}  // namespace baton::model
