#include "model/dummy_model.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

namespace baton::model {
namespace {

void expect_error(const Status& s, StatusCode code, std::initializer_list<std::string> parts) {
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), code) << s.to_string();
  for (const auto& p : parts) EXPECT_NE(s.message().find(p), std::string::npos) << s.message();
}

// Small enough to fill in a debug build, with several chunks per big tensor.
ModelConfig small_config() {
  ModelConfig c = dummy_config("qwen2.5-0.5b").value();  // q/k/v biases, tied
  c.num_hidden_layers = 2;
  c.vocab_size = 3000;  // embeddings of 2.7M elements span several fill chunks
  c.intermediate_size = 1024;
  return c;
}

float value_at(const TensorRef& t, int64_t i) {
  switch (t.dtype) {
    case DType::kF32: {
      float f;
      std::memcpy(&f, static_cast<const std::byte*>(t.data) + i * 4, 4);
      return f;
    }
    case DType::kBF16: {
      uint16_t h;
      std::memcpy(&h, static_cast<const std::byte*>(t.data) + i * 2, 2);
      return bf16_to_f32(h);
    }
    default: {
      uint16_t h;
      std::memcpy(&h, static_cast<const std::byte*>(t.data) + i * 2, 2);
      return f16_to_f32(h);
    }
  }
}

bool same_bytes(const ModelWeights& a, const ModelWeights& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const TensorRef& x = a.tensors()[i];
    const TensorRef& y = b.tensors()[i];
    if (x.name != y.name || x.bytes != y.bytes || std::memcmp(x.data, y.data, x.bytes) != 0) {
      return false;
    }
  }
  return true;
}

TEST(DummyConfig, PresetsHaveThePublishedSizes) {
  struct Want {
    const char* preset;
    int64_t params;
  };
  // Parameter counts of the published checkpoints.
  for (const Want& w : {Want{"llama-3.1-8b", 8030261248}, Want{"llama-3.2-1b", 1235814400},
                        Want{"llama-3.2-3b", 3212749824}, Want{"qwen2.5-7b", 7615616512},
                        Want{"qwen2.5-0.5b", 494032768}, Want{"mistral-7b", 7248023552}}) {
    SCOPED_TRACE(w.preset);
    auto c = dummy_config(w.preset);
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    EXPECT_EQ(count_parameters(*c), w.params);
    EXPECT_TRUE(validate_model_config(*c).is_ok());
  }
  auto small = dummy_config("llama-100m");
  ASSERT_TRUE(small.is_ok());
  EXPECT_GT(count_parameters(*small), 90'000'000);
  EXPECT_LT(count_parameters(*small), 110'000'000);
  EXPECT_EQ(dummy_presets().size(), 7u);
}

TEST(DummyConfig, PresetRopeAndTokens) {
  ModelConfig l = dummy_config("llama-3.1-8b").value();
  EXPECT_EQ(l.rope.type, RopeScaling::Type::kLlama3);
  EXPECT_FLOAT_EQ(l.rope.theta, 500000.0f);
  EXPECT_FLOAT_EQ(l.rope.factor, 8.0f);
  EXPECT_EQ(l.rope.original_max_position_embeddings, 8192);
  EXPECT_EQ(l.eos_token_ids, (std::vector<int32_t>{128001, 128008, 128009}));
  EXPECT_FLOAT_EQ(dummy_config("llama-3.2-1b")->rope.factor, 32.0f);
  EXPECT_TRUE(dummy_config("llama-3.2-1b")->tie_word_embeddings);
  ModelConfig q = dummy_config("qwen2.5-7b").value();
  EXPECT_TRUE(q.qkv_bias);
  EXPECT_FALSE(q.o_bias);
  EXPECT_EQ(q.rope.type, RopeScaling::Type::kDefault);
  EXPECT_FLOAT_EQ(q.rope.theta, 1000000.0f);
}

TEST(DummyConfig, UnknownPresetListsKnownOnes) {
  expect_error(dummy_config("llama-9").status(), StatusCode::kNotFound,
               {"llama-9", "llama-3.1-8b", "llama-100m"});
}

TEST(DummyWeights, MatchTheExpectedTensors) {
  ModelConfig c = small_config();
  auto w = make_dummy_weights(c, DType::kBF16, 7);
  ASSERT_TRUE(w.is_ok()) << w.status().to_string();
  auto expected = expected_tensors(c);
  ASSERT_EQ(w->size(), expected.size());
  for (const auto& x : expected) {
    const TensorRef* t = w->find(x.name);
    ASSERT_NE(t, nullptr) << x.name;
    EXPECT_EQ(t->shape, x.shape);
    EXPECT_EQ(t->dtype, DType::kBF16);
    EXPECT_EQ(t->bytes, static_cast<size_t>(t->numel()) * 2);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t->data) % 64, 0u);
  }
}

TEST(DummyWeights, DeterministicForASeedWhateverTheThreadCount) {
  ModelConfig c = small_config();
  auto a = make_dummy_weights(c, DType::kBF16, 42, 1);
  auto b = make_dummy_weights(c, DType::kBF16, 42, 3);
  auto other = make_dummy_weights(c, DType::kBF16, 43, 2);
  ASSERT_TRUE(a.is_ok() && b.is_ok() && other.is_ok());
  EXPECT_TRUE(same_bytes(*a, *b));
  EXPECT_FALSE(same_bytes(*a, *other));
  // Tensors are distinct streams, not copies of one another.
  const TensorRef* q0 = a->find("model.layers.0.self_attn.q_proj.weight");
  const TensorRef* q1 = a->find("model.layers.1.self_attn.q_proj.weight");
  EXPECT_NE(std::memcmp(q0->data, q1->data, q0->bytes), 0);
}

TEST(DummyWeights, SameValuesInEveryDtype) {
  ModelConfig c = small_config();
  auto f32 = make_dummy_weights(c, DType::kF32, 5, 2);
  auto bf16 = make_dummy_weights(c, DType::kBF16, 5, 2);
  auto f16 = make_dummy_weights(c, DType::kF16, 5, 2);
  ASSERT_TRUE(f32.is_ok() && bf16.is_ok() && f16.is_ok());
  const std::string name = "model.layers.1.mlp.down_proj.weight";
  const TensorRef* a = f32->find(name);
  const TensorRef* b = bf16->find(name);
  const TensorRef* h = f16->find(name);
  for (int64_t i = 0; i < a->numel(); i += 997) {
    float v = value_at(*a, i);
    EXPECT_EQ(value_at(*b, i), bf16_to_f32(f32_to_bf16(v)));
    EXPECT_EQ(value_at(*h, i), f16_to_f32(f32_to_f16(v)));
  }
}

TEST(DummyWeights, ValuesStayInTheirRanges) {
  ModelConfig c = small_config();
  auto w = make_dummy_weights(c, DType::kF32, 1, 2);
  ASSERT_TRUE(w.is_ok());
  for (const auto& x : expected_tensors(c)) {
    const TensorRef* t = w->find(x.name);
    float center = x.kind == ExpectedTensor::Kind::kNorm ? 1.0f : 0.0f;
    float radius = x.kind == ExpectedTensor::Kind::kBias ? 0.01f : 0.05f;
    double sum = 0;
    float lo = 1e9f, hi = -1e9f;
    for (int64_t i = 0; i < t->numel(); ++i) {
      float v = value_at(*t, i);
      sum += v;
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    SCOPED_TRACE(x.name);
    EXPECT_GE(lo, center - radius);
    EXPECT_LE(hi, center + radius);
    if (t->numel() >= 100000) {
      // Uniform: the mean sits near the centre and the values span the range.
      EXPECT_NEAR(sum / static_cast<double>(t->numel()), center, radius * 0.02);
      EXPECT_LT(lo, center - radius * 0.99f);
      EXPECT_GT(hi, center + radius * 0.99f);
    }
  }
}

TEST(DummyWeights, RejectsNonFloatDtype) {
  expect_error(make_dummy_weights(small_config(), DType::kI32, 1).status(),
               StatusCode::kInvalidArgument, {"I32"});
}

TEST(ModelSpec, ResolvesDummyAndDirectories) {
  auto d = resolve_model_spec("dummy:llama-3.2-1b");
  ASSERT_TRUE(d.is_ok()) << d.status().to_string();
  EXPECT_EQ(d->kind, ModelSource::Kind::kDummy);
  EXPECT_EQ(d->preset, "llama-3.2-1b");
  auto cfg = load_source_config(*d);
  ASSERT_TRUE(cfg.is_ok());
  EXPECT_EQ(cfg->hidden_size, 2048);

  expect_error(resolve_model_spec("dummy:gpt-5").status(), StatusCode::kNotFound, {"gpt-5"});
  expect_error(resolve_model_spec("").status(), StatusCode::kInvalidArgument, {});

  std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("baton_model_spec_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  expect_error(resolve_model_spec(dir.string()).status(), StatusCode::kNotFound, {dir.string()});
  std::filesystem::create_directories(dir);
  expect_error(resolve_model_spec(dir.string()).status(), StatusCode::kNotFound, {"config.json"});
  std::ofstream(dir / "config.json") << "{}";
  auto src = resolve_model_spec(dir.string());
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(src.is_ok()) << src.status().to_string();
  EXPECT_EQ(src->kind, ModelSource::Kind::kDirectory);
  EXPECT_EQ(src->directory, dir);
}

TEST(ModelSpec, DummySourceGivesDummyWeights) {
  ModelSource src = resolve_model_spec("dummy:qwen2.5-0.5b").value();
  ModelConfig c = small_config();
  auto w = load_source_weights(src, c, DType::kF16, 9);
  ASSERT_TRUE(w.is_ok()) << w.status().to_string();
  auto direct = make_dummy_weights(c, DType::kF16, 9);
  ASSERT_TRUE(direct.is_ok());
  EXPECT_TRUE(same_bytes(*w, *direct));
}

}  // namespace
}  // namespace baton::model
