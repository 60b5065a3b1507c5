#pragma once

// ModelConfig: the architecture of a Llama-family model (Llama 2/3, Mistral,
// Qwen2) as read from a Hugging Face model directory's config.json.
//
// Both generations of the Hugging Face format are accepted and normalised into
// one value: transformers 5.x writes `rope_parameters` and `dtype`, older
// releases (and most published models) write `rope_theta` + `rope_scaling` and
// `torch_dtype`. Everything the engine needs is resolved here (head_dim,
// default kv heads, which projections carry a bias), so later stages never look
// at the JSON again. Errors name the file and the key.
//
// GenerationConfig: the optional generation_config.json beside it (stop ids
// and default sampling parameters).
//
// All functions are pure (apart from reading the file in load_model_config)
// and thread-safe; ModelConfig is a plain value.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"

namespace baton::model {

// Rotary position embedding parameters, normalised from either format.
struct RopeScaling {
  enum class Type { kDefault, kLinear, kLlama3, kDynamic, kYarn };

  Type type = Type::kDefault;
  float theta = 10000.0f;  // base frequency (rope_theta)
  float factor = 1.0f;     // linear, llama3, dynamic, yarn
  // llama3 only.
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  // llama3 and yarn: the context length the model was pre-trained at; 0 when
  // the type does not use it.
  int64_t original_max_position_embeddings = 0;
  // yarn only (parsed, not yet supported by the engine).
  float beta_fast = 32.0f;
  float beta_slow = 1.0f;
  std::optional<float> attention_factor;
  // Fraction of head_dim that is rotated (rest passes through); 1.0 = all.
  float partial_rotary_factor = 1.0f;

  bool operator==(const RopeScaling&) const = default;
};

// "default", "linear", "llama3", "dynamic", "yarn".
std::string_view rope_type_name(RopeScaling::Type type);

struct ModelConfig {
  std::string architecture;  // e.g. "LlamaForCausalLM"
  std::string model_type;    // e.g. "llama"

  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // defaults to num_attention_heads
  int64_t head_dim = 0;             // explicit, or hidden_size / num_attention_heads
  bool head_dim_explicit = false;   // config.json carried head_dim
  int64_t max_position_embeddings = 0;
  float rms_norm_eps = 1e-6f;
  bool tie_word_embeddings = false;

  // Which linear layers carry a bias (Qwen2: q/k/v only; Llama:
  // attention_bias covers q/k/v/o and mlp_bias the three MLP projections).
  bool qkv_bias = false;
  bool o_bias = false;
  bool mlp_bias = false;

  std::string hidden_act = "silu";  // only silu is supported
  // Sliding-window attention width in tokens (Mistral v0.1; Qwen2 when
  // use_sliding_window is true); nullopt = full attention.
  std::optional<int64_t> sliding_window;

  std::optional<int32_t> bos_token_id;
  std::vector<int32_t> eos_token_ids;  // config.json may hold an int or a list
  std::optional<int32_t> pad_token_id;

  // The dtype the checkpoint was published in (torch_dtype / dtype); nullopt
  // when absent.
  std::optional<DType> dtype;

  RopeScaling rope;

  // Derived sizes.
  int64_t q_size() const { return num_attention_heads * head_dim; }
  int64_t kv_size() const { return num_key_value_heads * head_dim; }
  // Number of leading dimensions of each head that RoPE rotates (even).
  int64_t rotary_dim() const;

  bool operator==(const ModelConfig&) const = default;
};

// Optional generation defaults from generation_config.json. Every field is
// unset unless the file sets it (and sets it to non-null).
struct GenerationConfig {
  std::optional<int32_t> bos_token_id;
  std::vector<int32_t> eos_token_ids;  // an int or a list in the file
  std::optional<int32_t> pad_token_id;
  std::optional<float> temperature;
  std::optional<float> top_p;
  std::optional<int64_t> top_k;
  std::optional<bool> do_sample;
  std::optional<int64_t> max_new_tokens;
  std::optional<float> repetition_penalty;

  bool operator==(const GenerationConfig&) const = default;
};

// Parses a config.json document. `source` names the file in error messages
// (e.g. "/models/llama/config.json"). Unsupported architectures, activations
// and RoPE types give kUnimplemented; malformed or inconsistent values give
// kUnprocessable naming `source` and the key.
Result<ModelConfig> parse_model_config(std::string_view json_text,
                                       std::string_view source = "config.json");

// Reads <model_dir>/config.json (kNotFound when absent) and parses it.
Result<ModelConfig> load_model_config(const std::filesystem::path& model_dir);

// Parses a generation_config.json document; errors name `source` and the key.
Result<GenerationConfig> parse_generation_config(
    std::string_view json_text, std::string_view source = "generation_config.json");

// Reads <model_dir>/generation_config.json: nullopt when the file is absent
// (it is optional), an error when it is present but malformed.
Result<std::optional<GenerationConfig>> load_generation_config(
    const std::filesystem::path& model_dir);

// The token ids that end generation: the union of config.json's and
// generation_config.json's eos ids, in first-seen order, without duplicates.
std::vector<int32_t> stop_token_ids(const ModelConfig& config,
                                    const std::optional<GenerationConfig>& generation);

// Parses only the RoPE settings of a config.json document, in either format,
// accepting every type RopeScaling can describe (including dynamic and yarn,
// which parse_model_config rejects as not supported yet).
Result<RopeScaling> parse_rope_scaling(std::string_view json_text,
                                       std::string_view source = "config.json");

// Checks a config's internal consistency (positive sizes, heads divisible by
// kv heads, hidden = heads * head_dim unless head_dim is explicit, supported
// activation and RoPE type). parse_model_config calls it; dummy presets and
// hand-built configs should too.
Status validate_model_config(const ModelConfig& config, std::string_view source = "config.json");

}  // namespace baton::model
