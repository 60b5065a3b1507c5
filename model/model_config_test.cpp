#include "model/model_config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

namespace baton::model {
namespace {

using nlohmann::json;

// Llama-3.1-8B's config.json as published (transformers 4.x format).
json llama31_v4() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "attention_bias": false, "mlp_bias": false, "hidden_act": "silu",
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
    "hidden_size": 4096, "intermediate_size": 14336, "max_position_embeddings": 131072,
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "tie_word_embeddings": false, "torch_dtype": "bfloat16", "vocab_size": 128256
  })");
}

// The same model as transformers 5.x writes it.
json llama31_v5() {
  json j = llama31_v4();
  j.erase("rope_theta");
  j.erase("rope_scaling");
  j.erase("torch_dtype");
  j["dtype"] = "bfloat16";
  j["rope_parameters"] = {{"rope_type", "llama3"},   {"rope_theta", 500000.0},
                          {"factor", 8.0},           {"low_freq_factor", 1.0},
                          {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  return j;
}

Result<ModelConfig> parse(const json& j) { return parse_model_config(j.dump(), "m/config.json"); }

// Expects an error of `code` whose message names every one of `parts`.
void expect_error(const Status& s, StatusCode code, std::initializer_list<std::string> parts) {
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), code) << s.to_string();
  for (const auto& p : parts) EXPECT_NE(s.message().find(p), std::string::npos) << s.message();
}

TEST(ModelConfig, ParsesLlama31) {
  auto c = parse(llama31_v4());
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->architecture, "LlamaForCausalLM");
  EXPECT_EQ(c->model_type, "llama");
  EXPECT_EQ(c->vocab_size, 128256);
  EXPECT_EQ(c->hidden_size, 4096);
  EXPECT_EQ(c->num_key_value_heads, 8);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_FALSE(c->head_dim_explicit);
  EXPECT_EQ(c->q_size(), 4096);
  EXPECT_EQ(c->kv_size(), 1024);
  EXPECT_FLOAT_EQ(c->rms_norm_eps, 1e-5f);
  EXPECT_EQ(c->bos_token_id, 128000);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int32_t>{128001, 128008, 128009}));
  EXPECT_EQ(c->dtype, DType::kBF16);
  EXPECT_FALSE(c->qkv_bias || c->o_bias || c->mlp_bias);
  EXPECT_FALSE(c->sliding_window.has_value());
  EXPECT_EQ(c->rope.type, RopeScaling::Type::kLlama3);
  EXPECT_FLOAT_EQ(c->rope.theta, 500000.0f);
  EXPECT_FLOAT_EQ(c->rope.factor, 8.0f);
  EXPECT_FLOAT_EQ(c->rope.low_freq_factor, 1.0f);
  EXPECT_FLOAT_EQ(c->rope.high_freq_factor, 4.0f);
  EXPECT_EQ(c->rope.original_max_position_embeddings, 8192);
  EXPECT_EQ(c->rotary_dim(), 128);
}

TEST(ModelConfig, BothRopeFormatsGiveTheSameConfig) {
  auto v4 = parse(llama31_v4());
  auto v5 = parse(llama31_v5());
  ASSERT_TRUE(v4.is_ok() && v5.is_ok()) << v5.status().to_string();
  EXPECT_EQ(v4->rope, v5->rope);
  EXPECT_EQ(*v4, *v5);

  // Linear scaling, old style with "type" (Llama 2 era) and new style.
  json old_linear = llama31_v4();
  old_linear["rope_theta"] = 10000.0;
  old_linear["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
  json new_linear = llama31_v5();
  new_linear["rope_parameters"] = {
      {"rope_type", "linear"}, {"rope_theta", 10000.0}, {"factor", 4.0}};
  auto a = parse(old_linear);
  auto b = parse(new_linear);
  ASSERT_TRUE(a.is_ok() && b.is_ok()) << a.status().to_string() << b.status().to_string();
  EXPECT_EQ(a->rope.type, RopeScaling::Type::kLinear);
  EXPECT_FLOAT_EQ(a->rope.factor, 4.0f);
  EXPECT_FLOAT_EQ(a->rope.theta, 10000.0f);
  EXPECT_EQ(a->rope, b->rope);

  // Default RoPE: null rope_scaling vs rope_parameters with only a theta.
  json old_default = llama31_v4();
  old_default["rope_scaling"] = nullptr;
  json new_default = llama31_v5();
  new_default["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 500000.0}};
  auto c = parse(old_default);
  auto d = parse(new_default);
  ASSERT_TRUE(c.is_ok() && d.is_ok());
  EXPECT_EQ(c->rope.type, RopeScaling::Type::kDefault);
  EXPECT_FLOAT_EQ(c->rope.theta, 500000.0f);
  EXPECT_EQ(c->rope, d->rope);
}

TEST(ModelConfig, DefaultsWhenKeysAreAbsent) {
  json j = llama31_v4();
  for (const char* k : {"num_key_value_heads", "rope_theta", "rope_scaling", "torch_dtype",
                        "tie_word_embeddings", "hidden_act", "eos_token_id"}) {
    j.erase(k);
  }
  auto c = parse(j);
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->num_key_value_heads, 32);
  EXPECT_FLOAT_EQ(c->rope.theta, 10000.0f);
  EXPECT_EQ(c->rope.type, RopeScaling::Type::kDefault);
  EXPECT_FALSE(c->dtype.has_value());
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_TRUE(c->eos_token_ids.empty());
}

TEST(ModelConfig, Qwen2HasQkvBiasOnly) {
  auto c = parse(json::parse(R"({
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu",
    "hidden_size": 896, "intermediate_size": 4864, "max_position_embeddings": 32768,
    "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768,
    "use_sliding_window": false, "tie_word_embeddings": true, "vocab_size": 151936,
    "bos_token_id": 151643, "eos_token_id": 151645, "torch_dtype": "bfloat16"
  })"));
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_TRUE(c->qkv_bias);
  EXPECT_FALSE(c->o_bias);
  EXPECT_FALSE(c->mlp_bias);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_FALSE(c->sliding_window.has_value());  // use_sliding_window is false
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>{151645});
  EXPECT_TRUE(c->tie_word_embeddings);
}

TEST(ModelConfig, LlamaAttentionAndMlpBias) {
  json j = llama31_v4();
  j["attention_bias"] = true;
  j["mlp_bias"] = true;
  auto c = parse(j);
  ASSERT_TRUE(c.is_ok());
  EXPECT_TRUE(c->qkv_bias);
  EXPECT_TRUE(c->o_bias);
  EXPECT_TRUE(c->mlp_bias);
}

TEST(ModelConfig, MistralSlidingWindowMayBeNull) {
  json j = llama31_v4();
  j["architectures"] = {"MistralForCausalLM"};
  j["model_type"] = "mistral";
  j["rope_scaling"] = nullptr;
  j["sliding_window"] = 4096;
  auto c = parse(j);
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->sliding_window, 4096);
  j["sliding_window"] = nullptr;
  c = parse(j);
  ASSERT_TRUE(c.is_ok());
  EXPECT_FALSE(c->sliding_window.has_value());
}

TEST(ModelConfig, ExplicitHeadDimNeedNotDivideHidden) {
  json j = llama31_v4();
  j["hidden_size"] = 3000;  // not 32 * 128, but head_dim is explicit
  j["head_dim"] = 128;
  auto c = parse(j);
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_TRUE(c->head_dim_explicit);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->q_size(), 4096);
}

TEST(ModelConfig, PartialRotaryFactor) {
  json j = llama31_v4();
  j["partial_rotary_factor"] = 0.5;
  auto c = parse(j);
  ASSERT_TRUE(c.is_ok());
  EXPECT_EQ(c->rotary_dim(), 64);
  j["partial_rotary_factor"] = 1.5;
  expect_error(parse(j).status(), StatusCode::kUnprocessable,
               {"m/config.json", "partial_rotary_factor"});
}

TEST(ModelConfig, UnsupportedArchitectureIsNamed) {
  json j = llama31_v4();
  j["architectures"] = {"GPT2LMHeadModel"};
  expect_error(parse(j).status(), StatusCode::kUnimplemented, {"m/config.json", "GPT2LMHeadModel"});
}

TEST(ModelConfig, InvalidValuesNameFileAndKey) {
  struct Case {
    const char* key;
    json value;
  };
  for (const Case& c :
       {Case{"hidden_size", "4096"}, Case{"hidden_size", 0}, Case{"vocab_size", -5},
        Case{"num_hidden_layers", 1.5}, Case{"num_key_value_heads", 5}, Case{"rms_norm_eps", "x"},
        Case{"tie_word_embeddings", 1}, Case{"eos_token_id", "2"}, Case{"rope_scaling", 3}}) {
    json j = llama31_v4();
    j[c.key] = c.value;
    SCOPED_TRACE(std::string(c.key) + "=" + c.value.dump());
    expect_error(parse(j).status(), StatusCode::kUnprocessable, {"m/config.json", c.key});
  }
  json j = llama31_v4();
  j.erase("intermediate_size");
  expect_error(parse(j).status(), StatusCode::kUnprocessable, {"intermediate_size", "missing"});
  j = llama31_v4();
  j["hidden_size"] = 4001;  // not divisible by 32 heads, no head_dim
  expect_error(parse(j).status(), StatusCode::kUnprocessable, {"hidden_size"});
}

TEST(ModelConfig, UnsupportedActivationAndDtype) {
  json j = llama31_v4();
  j["hidden_act"] = "gelu";
  expect_error(parse(j).status(), StatusCode::kUnimplemented, {"hidden_act", "gelu"});
  j = llama31_v4();
  j["torch_dtype"] = "float8_e4m3";
  expect_error(parse(j).status(), StatusCode::kUnimplemented, {"torch_dtype", "float8_e4m3"});
}

TEST(ModelConfig, Llama3RopeNeedsAllItsKeys) {
  json j = llama31_v4();
  j["rope_scaling"].erase("low_freq_factor");
  expect_error(parse(j).status(), StatusCode::kUnprocessable,
               {"m/config.json", "rope_scaling.low_freq_factor"});
  j = llama31_v5();
  j["rope_parameters"]["factor"] = -1.0;
  expect_error(parse(j).status(), StatusCode::kUnprocessable, {"rope_parameters.factor"});
}

TEST(ModelConfig, YarnAndDynamicParseButAreNotSupportedYet) {
  json j = llama31_v4();
  j["rope_scaling"] = {{"rope_type", "yarn"},
                       {"factor", 4.0},
                       {"original_max_position_embeddings", 32768},
                       {"beta_fast", 16.0}};
  auto rope = parse_rope_scaling(j.dump());
  ASSERT_TRUE(rope.is_ok()) << rope.status().to_string();
  EXPECT_EQ(rope->type, RopeScaling::Type::kYarn);
  EXPECT_FLOAT_EQ(rope->factor, 4.0f);
  EXPECT_EQ(rope->original_max_position_embeddings, 32768);
  EXPECT_FLOAT_EQ(rope->beta_fast, 16.0f);
  expect_error(parse(j).status(), StatusCode::kUnimplemented, {"yarn", "not supported yet"});

  j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  rope = parse_rope_scaling(j.dump());
  ASSERT_TRUE(rope.is_ok());
  EXPECT_EQ(rope->type, RopeScaling::Type::kDynamic);
  // Falls back to the model's context length, as transformers does.
  EXPECT_EQ(rope->original_max_position_embeddings, 131072);
  expect_error(parse(j).status(), StatusCode::kUnimplemented, {"dynamic"});

  j["rope_scaling"] = {{"rope_type", "longrope"}, {"factor", 2.0}};
  expect_error(parse_rope_scaling(j.dump()).status(), StatusCode::kUnimplemented, {"longrope"});
}

TEST(ModelConfig, InvalidJson) {
  expect_error(parse_model_config("{not json", "x/config.json").status(),
               StatusCode::kUnprocessable, {"x/config.json"});
  expect_error(parse_model_config("[1, 2]", "x/config.json").status(), StatusCode::kUnprocessable,
               {"x/config.json"});
}

class ModelDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("baton_model_config_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
  }
  std::filesystem::path dir_;
};

TEST_F(ModelDirTest, LoadsConfigAndErrorsNameThePath) {
  expect_error(load_model_config(dir_).status(), StatusCode::kNotFound, {"config.json"});
  json j = llama31_v4();
  j["vocab_size"] = "big";
  write("config.json", j.dump());
  expect_error(load_model_config(dir_).status(), StatusCode::kUnprocessable,
               {(dir_ / "config.json").string(), "vocab_size"});
  write("config.json", llama31_v4().dump());
  auto c = load_model_config(dir_);
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->hidden_size, 4096);
}

TEST_F(ModelDirTest, GenerationConfigIsOptional) {
  auto none = load_generation_config(dir_);
  ASSERT_TRUE(none.is_ok());
  EXPECT_FALSE(none->has_value());

  write("generation_config.json", R"({"bos_token_id": 128000, "eos_token_id": [128001, 128009],
      "do_sample": true, "temperature": 0.6, "top_p": 0.9, "top_k": 50,
      "max_new_tokens": 256, "repetition_penalty": 1.1, "transformers_version": "4.45.0"})");
  auto g = load_generation_config(dir_);
  ASSERT_TRUE(g.is_ok()) << g.status().to_string();
  ASSERT_TRUE(g->has_value());
  const GenerationConfig& gc = **g;
  EXPECT_EQ(gc.bos_token_id, 128000);
  EXPECT_EQ(gc.eos_token_ids, (std::vector<int32_t>{128001, 128009}));
  EXPECT_EQ(gc.do_sample, true);
  EXPECT_FLOAT_EQ(gc.temperature.value(), 0.6f);
  EXPECT_FLOAT_EQ(gc.top_p.value(), 0.9f);
  EXPECT_EQ(gc.top_k, 50);
  EXPECT_EQ(gc.max_new_tokens, 256);
  EXPECT_FLOAT_EQ(gc.repetition_penalty.value(), 1.1f);

  // Stop ids merge config.json's and generation_config.json's, once each.
  ModelConfig mc = parse(llama31_v4()).value();
  EXPECT_EQ(stop_token_ids(mc, *g), (std::vector<int32_t>{128001, 128008, 128009}));
  mc.eos_token_ids = {2};
  EXPECT_EQ(stop_token_ids(mc, *g), (std::vector<int32_t>{2, 128001, 128009}));

  write("generation_config.json", R"({"eos_token_id": 2})");
  g = load_generation_config(dir_);
  ASSERT_TRUE(g.is_ok());
  EXPECT_EQ((*g)->eos_token_ids, std::vector<int32_t>{2});
  EXPECT_FALSE((*g)->temperature.has_value());

  write("generation_config.json", R"({"temperature": "hot"})");
  expect_error(load_generation_config(dir_).status(), StatusCode::kUnprocessable,
               {"generation_config.json", "temperature"});
}

}  // namespace
}  // namespace baton::model
