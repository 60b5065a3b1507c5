#include "model/model_config.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace baton::model {

namespace {

using nlohmann::json;

// Reads typed values out of one JSON document, building errors that name the
// file and the key. nlohmann throws on type mismatches; every access here
// checks the type first so nothing escapes.
class JsonFields {
 public:
  explicit JsonFields(std::string_view source) : source_(source) {}

  Status error(std::string_view key, std::string_view what) const {
    return data_error(fmt::format("{}: {}: {}", source_, key, what));
  }
  Status unsupported(std::string_view key, std::string_view what) const {
    return unimplemented(fmt::format("{}: {}: {}", source_, key, what));
  }

  // nullptr when the key is absent or null: HF writes null for "unset".
  static const json* find(const json& obj, std::string_view key) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return nullptr;
    return &*it;
  }

  Result<std::optional<int64_t>> opt_int(const json& obj, std::string_view key,
                                         std::string_view path = {}) const {
    const json* v = find(obj, key);
    if (v == nullptr) return std::optional<int64_t>();
    BATON_ASSIGN_OR_RETURN(int64_t out, as_int(*v, path.empty() ? key : path));
    return std::optional<int64_t>(out);
  }

  Result<int64_t> as_int(const json& v, std::string_view key) const {
    if (v.is_number_integer()) return v.get<int64_t>();
    // Some exporters write integral values as floats (4096.0).
    if (v.is_number_float()) {
      double d = v.get<double>();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) {
        return static_cast<int64_t>(d);
      }
    }
    return error(key, fmt::format("expected an integer, got {}", v.dump()));
  }

  Result<int64_t> req_positive(const json& obj, std::string_view key) const {
    BATON_ASSIGN_OR_RETURN(auto v, opt_int(obj, key));
    if (!v) return error(key, "missing (required)");
    if (*v <= 0) return error(key, fmt::format("expected a positive integer, got {}", *v));
    return *v;
  }

  Result<std::optional<double>> opt_number(const json& obj, std::string_view key,
                                           std::string_view path = {}) const {
    const json* v = find(obj, key);
    if (v == nullptr) return std::optional<double>();
    if (!v->is_number()) {
      return error(path.empty() ? key : path, fmt::format("expected a number, got {}", v->dump()));
    }
    return std::optional<double>(v->get<double>());
  }

  Result<std::optional<bool>> opt_bool(const json& obj, std::string_view key) const {
    const json* v = find(obj, key);
    if (v == nullptr) return std::optional<bool>();
    if (!v->is_boolean())
      return error(key, fmt::format("expected true or false, got {}", v->dump()));
    return std::optional<bool>(v->get<bool>());
  }

  Result<std::optional<std::string>> opt_string(const json& obj, std::string_view key,
                                                std::string_view path = {}) const {
    const json* v = find(obj, key);
    if (v == nullptr) return std::optional<std::string>();
    if (!v->is_string()) {
      return error(path.empty() ? key : path, fmt::format("expected a string, got {}", v->dump()));
    }
    return std::optional<std::string>(v->get<std::string>());
  }

  Result<std::optional<int32_t>> opt_token(const json& obj, std::string_view key) const {
    BATON_ASSIGN_OR_RETURN(auto v, opt_int(obj, key));
    // Old Llama 2 exports write -1 for "no pad token".
    if (!v || *v < 0) return std::optional<int32_t>();
    if (*v > INT32_MAX) return error(key, fmt::format("token id {} out of range", *v));
    return std::optional<int32_t>(static_cast<int32_t>(*v));
  }

  // An int or a list of ints (eos_token_id in Llama 3 configs).
  Result<std::vector<int32_t>> token_list(const json& obj, std::string_view key) const {
    std::vector<int32_t> out;
    const json* v = find(obj, key);
    if (v == nullptr) return out;
    auto add = [&](const json& item) -> Status {
      BATON_ASSIGN_OR_RETURN(int64_t id, as_int(item, key));
      if (id < 0 || id > INT32_MAX) return error(key, fmt::format("token id {} out of range", id));
      out.push_back(static_cast<int32_t>(id));
      return Status::ok();
    };
    if (v->is_array()) {
      for (const json& item : *v) BATON_RETURN_IF_ERROR(add(item));
    } else {
      BATON_RETURN_IF_ERROR(add(*v));
    }
    return out;
  }

  std::string_view source() const { return source_; }

 private:
  std::string_view source_;
};

Result<json> parse_json_object(std::string_view text, std::string_view source) {
  json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return data_error(fmt::format("{}: not valid JSON", source));
  if (!doc.is_object()) return data_error(fmt::format("{}: expected a JSON object", source));
  return doc;
}

Result<std::string> read_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return not_found(fmt::format("{}: no such file", path.string()));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found(fmt::format("{}: cannot open", path.string()));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return internal_error(fmt::format("{}: read failed", path.string()));
  return ss.str();
}

struct ArchInfo {
  std::string_view architecture;
  std::string_view model_type;
};
constexpr ArchInfo kArchitectures[] = {
    {"LlamaForCausalLM", "llama"},
    {"MistralForCausalLM", "mistral"},
    {"Qwen2ForCausalLM", "qwen2"},
};

Result<std::optional<DType>> parse_dtype(const JsonFields& f, const json& root) {
  // transformers 5 renamed torch_dtype to dtype; accept either.
  std::string_view key = JsonFields::find(root, "dtype") != nullptr ? "dtype" : "torch_dtype";
  BATON_ASSIGN_OR_RETURN(auto name, f.opt_string(root, key));
  if (!name || *name == "auto") return std::optional<DType>();
  std::string_view n = *name;
  if (n.starts_with("torch.")) n.remove_prefix(6);
  if (n == "bfloat16" || n == "bf16") return std::optional<DType>(DType::kBF16);
  if (n == "float16" || n == "half" || n == "fp16") return std::optional<DType>(DType::kF16);
  if (n == "float32" || n == "float" || n == "fp32") return std::optional<DType>(DType::kF32);
  return f.unsupported(
      key, fmt::format("dtype \"{}\" is not supported (bfloat16, float16, float32)", n));
}

Result<RopeScaling> parse_rope(const JsonFields& f, const json& root) {
  RopeScaling r;
  BATON_ASSIGN_OR_RETURN(auto theta, f.opt_number(root, "rope_theta"));
  if (theta) r.theta = static_cast<float>(*theta);
  BATON_ASSIGN_OR_RETURN(auto partial, f.opt_number(root, "partial_rotary_factor"));
  if (partial) r.partial_rotary_factor = static_cast<float>(*partial);

  // transformers 5 keeps every RoPE setting, theta included, in
  // rope_parameters; older configs split theta from an optional rope_scaling.
  std::string_view where = "rope_parameters";
  const json* params = JsonFields::find(root, where);
  if (params == nullptr) {
    where = "rope_scaling";
    params = JsonFields::find(root, where);
  }
  if (params == nullptr) return r;
  if (!params->is_object()) {
    return f.error(where, fmt::format("expected an object or null, got {}", params->dump()));
  }
  auto path = [&](std::string_view key) { return fmt::format("{}.{}", where, key); };

  std::string type = "default";
  for (std::string_view key : {"rope_type", "type"}) {
    BATON_ASSIGN_OR_RETURN(auto t, f.opt_string(*params, key, path(key)));
    if (t) {
      type = *t;
      break;
    }
  }
  BATON_ASSIGN_OR_RETURN(auto ptheta, f.opt_number(*params, "rope_theta", path("rope_theta")));
  if (ptheta) r.theta = static_cast<float>(*ptheta);
  BATON_ASSIGN_OR_RETURN(
      auto ppartial, f.opt_number(*params, "partial_rotary_factor", path("partial_rotary_factor")));
  if (ppartial) r.partial_rotary_factor = static_cast<float>(*ppartial);

  auto number = [&](std::string_view key, bool required, float& out) -> Status {
    BATON_ASSIGN_OR_RETURN(auto v, f.opt_number(*params, key, path(key)));
    if (!v) {
      return required ? f.error(path(key), fmt::format("required for rope type \"{}\"", type))
                      : Status::ok();
    }
    if (!(*v > 0) || !std::isfinite(*v)) {
      return f.error(path(key), fmt::format("expected a positive number, got {}", *v));
    }
    out = static_cast<float>(*v);
    return Status::ok();
  };
  auto original_max = [&](bool required) -> Status {
    std::string_view key = "original_max_position_embeddings";
    BATON_ASSIGN_OR_RETURN(auto v, f.opt_int(*params, key, path(key)));
    if (!v) {
      if (required) return f.error(path(key), fmt::format("required for rope type \"{}\"", type));
      // HF falls back to the model's own context length.
      BATON_ASSIGN_OR_RETURN(auto m, f.opt_int(root, "max_position_embeddings"));
      r.original_max_position_embeddings = m.value_or(0);
      return Status::ok();
    }
    if (*v <= 0) return f.error(path(key), fmt::format("expected a positive integer, got {}", *v));
    r.original_max_position_embeddings = *v;
    return Status::ok();
  };

  if (type == "default") {
    r.type = RopeScaling::Type::kDefault;
  } else if (type == "linear") {
    r.type = RopeScaling::Type::kLinear;
    BATON_RETURN_IF_ERROR(number("factor", true, r.factor));
  } else if (type == "llama3") {
    r.type = RopeScaling::Type::kLlama3;
    BATON_RETURN_IF_ERROR(number("factor", true, r.factor));
    BATON_RETURN_IF_ERROR(number("low_freq_factor", true, r.low_freq_factor));
    BATON_RETURN_IF_ERROR(number("high_freq_factor", true, r.high_freq_factor));
    BATON_RETURN_IF_ERROR(original_max(true));
    // The smoothing band divides by (high - low).
    if (!(r.high_freq_factor > r.low_freq_factor)) {
      return f.error(path("high_freq_factor"),
                     fmt::format("must be greater than low_freq_factor ({} <= {})",
                                 r.high_freq_factor, r.low_freq_factor));
    }
  } else if (type == "dynamic") {
    r.type = RopeScaling::Type::kDynamic;
    BATON_RETURN_IF_ERROR(number("factor", true, r.factor));
    BATON_RETURN_IF_ERROR(original_max(false));
  } else if (type == "yarn") {
    r.type = RopeScaling::Type::kYarn;
    BATON_RETURN_IF_ERROR(number("factor", true, r.factor));
    BATON_RETURN_IF_ERROR(original_max(false));
    BATON_RETURN_IF_ERROR(number("beta_fast", false, r.beta_fast));
    BATON_RETURN_IF_ERROR(number("beta_slow", false, r.beta_slow));
    float attention_factor = 0;
    BATON_RETURN_IF_ERROR(number("attention_factor", false, attention_factor));
    if (attention_factor > 0) r.attention_factor = attention_factor;
  } else {
    return f.unsupported(path("rope_type"), fmt::format("RoPE type \"{}\" is not supported", type));
  }
  return r;
}

Result<ModelConfig> parse_config_object(const json& root, std::string_view source) {
  JsonFields f(source);
  ModelConfig c;

  // Architecture: the first entry of `architectures`, else from model_type.
  BATON_ASSIGN_OR_RETURN(auto model_type, f.opt_string(root, "model_type"));
  if (const json* archs = JsonFields::find(root, "architectures")) {
    if (!archs->is_array() || archs->empty() || !(*archs)[0].is_string()) {
      return f.error("architectures", "expected a non-empty list of strings");
    }
    c.architecture = (*archs)[0].get<std::string>();
  } else if (model_type) {
    for (const auto& a : kArchitectures) {
      if (a.model_type == *model_type) c.architecture = a.architecture;
    }
    if (c.architecture.empty()) {
      return f.unsupported("model_type",
                           fmt::format("model type \"{}\" is not supported", *model_type));
    }
  } else {
    return f.error("architectures", "missing (and no model_type either)");
  }
  const ArchInfo* arch = nullptr;
  for (const auto& a : kArchitectures) {
    if (a.architecture == c.architecture) arch = &a;
  }
  if (arch == nullptr) {
    return f.unsupported("architectures",
                         fmt::format("architecture \"{}\" is not supported (supported: "
                                     "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)",
                                     c.architecture));
  }
  c.model_type = model_type.value_or(std::string(arch->model_type));

  BATON_ASSIGN_OR_RETURN(c.vocab_size, f.req_positive(root, "vocab_size"));
  BATON_ASSIGN_OR_RETURN(c.hidden_size, f.req_positive(root, "hidden_size"));
  BATON_ASSIGN_OR_RETURN(c.intermediate_size, f.req_positive(root, "intermediate_size"));
  BATON_ASSIGN_OR_RETURN(c.num_hidden_layers, f.req_positive(root, "num_hidden_layers"));
  BATON_ASSIGN_OR_RETURN(c.num_attention_heads, f.req_positive(root, "num_attention_heads"));
  BATON_ASSIGN_OR_RETURN(c.max_position_embeddings,
                         f.req_positive(root, "max_position_embeddings"));
  BATON_ASSIGN_OR_RETURN(auto kv_heads, f.opt_int(root, "num_key_value_heads"));
  c.num_key_value_heads = kv_heads.value_or(c.num_attention_heads);
  BATON_ASSIGN_OR_RETURN(auto head_dim, f.opt_int(root, "head_dim"));
  c.head_dim_explicit = head_dim.has_value();
  if (head_dim) {
    c.head_dim = *head_dim;
  } else if (c.hidden_size % c.num_attention_heads != 0) {
    return f.error("hidden_size",
                   fmt::format("{} is not divisible by num_attention_heads {} (and no head_dim)",
                               c.hidden_size, c.num_attention_heads));
  } else {
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }

  BATON_ASSIGN_OR_RETURN(auto eps, f.opt_number(root, "rms_norm_eps"));
  if (eps) c.rms_norm_eps = static_cast<float>(*eps);
  BATON_ASSIGN_OR_RETURN(auto tie, f.opt_bool(root, "tie_word_embeddings"));
  c.tie_word_embeddings = tie.value_or(false);
  BATON_ASSIGN_OR_RETURN(auto act, f.opt_string(root, "hidden_act"));
  c.hidden_act = act.value_or("silu");

  if (c.architecture == "Qwen2ForCausalLM") {
    // Qwen2 hard-codes biases on q/k/v and none on o_proj or the MLP.
    c.qkv_bias = true;
    BATON_ASSIGN_OR_RETURN(auto use_sw, f.opt_bool(root, "use_sliding_window"));
    if (use_sw.value_or(false)) {
      return f.unsupported("use_sliding_window",
                           "Qwen2 sliding-window attention (max_window_layers) is not supported");
    }
  } else if (c.architecture == "LlamaForCausalLM") {
    BATON_ASSIGN_OR_RETURN(auto attn_bias, f.opt_bool(root, "attention_bias"));
    c.qkv_bias = c.o_bias = attn_bias.value_or(false);
    BATON_ASSIGN_OR_RETURN(auto mlp_bias, f.opt_bool(root, "mlp_bias"));
    c.mlp_bias = mlp_bias.value_or(false);
  } else {  // Mistral: no biases; optional sliding window.
    BATON_ASSIGN_OR_RETURN(auto sw, f.opt_int(root, "sliding_window"));
    if (sw && *sw <= 0) {
      return f.error("sliding_window",
                     fmt::format("expected a positive integer or null, got {}", *sw));
    }
    c.sliding_window = sw;
  }

  BATON_ASSIGN_OR_RETURN(c.bos_token_id, f.opt_token(root, "bos_token_id"));
  BATON_ASSIGN_OR_RETURN(c.eos_token_ids, f.token_list(root, "eos_token_id"));
  BATON_ASSIGN_OR_RETURN(c.pad_token_id, f.opt_token(root, "pad_token_id"));
  BATON_ASSIGN_OR_RETURN(c.dtype, parse_dtype(f, root));
  BATON_ASSIGN_OR_RETURN(c.rope, parse_rope(f, root));

  BATON_RETURN_IF_ERROR(validate_model_config(c, source));
  return c;
}

}  // namespace

std::string_view rope_type_name(RopeScaling::Type type) {
  switch (type) {
    case RopeScaling::Type::kDefault:
      return "default";
    case RopeScaling::Type::kLinear:
      return "linear";
    case RopeScaling::Type::kLlama3:
      return "llama3";
    case RopeScaling::Type::kDynamic:
      return "dynamic";
    case RopeScaling::Type::kYarn:
      return "yarn";
  }
  return "?";
}

int64_t ModelConfig::rotary_dim() const {
  auto dim = static_cast<int64_t>(
      std::lround(static_cast<double>(head_dim) * static_cast<double>(rope.partial_rotary_factor)));
  return dim - dim % 2;
}

Status validate_model_config(const ModelConfig& c, std::string_view source) {
  JsonFields f(source);
  struct Positive {
    std::string_view key;
    int64_t value;
  };
  for (const Positive& p : {Positive{"vocab_size", c.vocab_size},
                            {"hidden_size", c.hidden_size},
                            {"intermediate_size", c.intermediate_size},
                            {"num_hidden_layers", c.num_hidden_layers},
                            {"num_attention_heads", c.num_attention_heads},
                            {"num_key_value_heads", c.num_key_value_heads},
                            {"head_dim", c.head_dim},
                            {"max_position_embeddings", c.max_position_embeddings}}) {
    if (p.value <= 0) {
      return f.error(p.key, fmt::format("expected a positive integer, got {}", p.value));
    }
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return f.error("num_key_value_heads",
                   fmt::format("num_attention_heads {} is not divisible by num_key_value_heads {}",
                               c.num_attention_heads, c.num_key_value_heads));
  }
  if (!c.head_dim_explicit && c.num_attention_heads * c.head_dim != c.hidden_size) {
    return f.error("hidden_size", fmt::format("{} != num_attention_heads {} * head_dim {}",
                                              c.hidden_size, c.num_attention_heads, c.head_dim));
  }
  if (!(c.rms_norm_eps > 0) || !std::isfinite(c.rms_norm_eps)) {
    return f.error("rms_norm_eps",
                   fmt::format("expected a positive number, got {}", c.rms_norm_eps));
  }
  if (c.hidden_act != "silu") {
    return f.unsupported(
        "hidden_act", fmt::format("activation \"{}\" is not supported (only silu)", c.hidden_act));
  }
  if (c.sliding_window && *c.sliding_window <= 0) {
    return f.error("sliding_window",
                   fmt::format("expected a positive integer, got {}", *c.sliding_window));
  }
  const RopeScaling& r = c.rope;
  if (!(r.theta > 0) || !std::isfinite(r.theta)) {
    return f.error("rope_theta", fmt::format("expected a positive number, got {}", r.theta));
  }
  if (!(r.partial_rotary_factor > 0 && r.partial_rotary_factor <= 1)) {
    return f.error("partial_rotary_factor",
                   fmt::format("expected a number in (0, 1], got {}", r.partial_rotary_factor));
  }
  if (c.rotary_dim() <= 0) {
    return f.error("partial_rotary_factor",
                   fmt::format("rotates no dimension of head_dim {}", c.head_dim));
  }
  if (r.type == RopeScaling::Type::kDynamic || r.type == RopeScaling::Type::kYarn) {
    return f.unsupported("rope_scaling", fmt::format("RoPE type \"{}\" is not supported yet "
                                                     "(supported: default, linear, llama3)",
                                                     rope_type_name(r.type)));
  }
  return Status::ok();
}

Result<ModelConfig> parse_model_config(std::string_view json_text, std::string_view source) {
  BATON_ASSIGN_OR_RETURN(json root, parse_json_object(json_text, source));
  return parse_config_object(root, source);
}

Result<ModelConfig> load_model_config(const std::filesystem::path& model_dir) {
  std::filesystem::path path = model_dir / "config.json";
  BATON_ASSIGN_OR_RETURN(std::string text, read_file(path));
  return parse_model_config(text, path.string());
}

Result<RopeScaling> parse_rope_scaling(std::string_view json_text, std::string_view source) {
  BATON_ASSIGN_OR_RETURN(json root, parse_json_object(json_text, source));
  return parse_rope(JsonFields(source), root);
}

Result<GenerationConfig> parse_generation_config(std::string_view json_text,
                                                 std::string_view source) {
  BATON_ASSIGN_OR_RETURN(json root, parse_json_object(json_text, source));
  JsonFields f(source);
  GenerationConfig g;
  BATON_ASSIGN_OR_RETURN(g.bos_token_id, f.opt_token(root, "bos_token_id"));
  BATON_ASSIGN_OR_RETURN(g.eos_token_ids, f.token_list(root, "eos_token_id"));
  BATON_ASSIGN_OR_RETURN(g.pad_token_id, f.opt_token(root, "pad_token_id"));
  auto opt_float = [&](std::string_view key, std::optional<float>& out) -> Status {
    BATON_ASSIGN_OR_RETURN(auto v, f.opt_number(root, key));
    if (v) {
      if (*v < 0 || !std::isfinite(*v)) {
        return f.error(key, fmt::format("expected a non-negative number, got {}", *v));
      }
      out = static_cast<float>(*v);
    }
    return Status::ok();
  };
  BATON_RETURN_IF_ERROR(opt_float("temperature", g.temperature));
  BATON_RETURN_IF_ERROR(opt_float("top_p", g.top_p));
  BATON_RETURN_IF_ERROR(opt_float("repetition_penalty", g.repetition_penalty));
  if (g.top_p && *g.top_p > 1)
    return f.error("top_p", fmt::format("expected <= 1, got {}", *g.top_p));
  BATON_ASSIGN_OR_RETURN(g.top_k, f.opt_int(root, "top_k"));
  BATON_ASSIGN_OR_RETURN(g.do_sample, f.opt_bool(root, "do_sample"));
  BATON_ASSIGN_OR_RETURN(g.max_new_tokens, f.opt_int(root, "max_new_tokens"));
  return g;
}

Result<std::optional<GenerationConfig>> load_generation_config(
    const std::filesystem::path& model_dir) {
  std::filesystem::path path = model_dir / "generation_config.json";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::optional<GenerationConfig>();
  BATON_ASSIGN_OR_RETURN(std::string text, read_file(path));
  BATON_ASSIGN_OR_RETURN(GenerationConfig g, parse_generation_config(text, path.string()));
  return std::optional<GenerationConfig>(std::move(g));
}

std::vector<int32_t> stop_token_ids(const ModelConfig& config,
                                    const std::optional<GenerationConfig>& generation) {
  std::vector<int32_t> out;
  auto add = [&](const std::vector<int32_t>& ids) {
    for (int32_t id : ids) {
      if (std::find(out.begin(), out.end(), id) == out.end()) out.push_back(id);
    }
  };
  add(config.eos_token_ids);
  if (generation) add(generation->eos_token_ids);
  return out;
}

}  // namespace baton::model
