#include "model/weights.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <set>

#include "model/safetensors.h"

namespace baton::model {

namespace {

bool is_float(DType t) { return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16; }

// Non-parameter buffers some exporters save with the weights; harmless.
bool is_ignorable_extra(std::string_view name) {
  for (std::string_view suffix :
       {".rotary_emb.inv_freq", ".rotary_emb.cos_cached", ".rotary_emb.sin_cached"}) {
    if (name.ends_with(suffix)) return true;
  }
  return false;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

}  // namespace

int64_t TensorRef::numel() const { return checked_numel(shape).value_or(0); }

std::vector<ExpectedTensor> expected_tensors(const ModelConfig& c) {
  using K = ExpectedTensor::Kind;
  std::vector<ExpectedTensor> out;
  const int64_t h = c.hidden_size;
  const int64_t q = c.q_size();
  const int64_t kv = c.kv_size();
  const int64_t inter = c.intermediate_size;
  out.push_back({"model.embed_tokens.weight", {c.vocab_size, h}, K::kEmbedding});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = fmt::format("model.layers.{}.", i);
    out.push_back({p + "input_layernorm.weight", {h}, K::kNorm});
    struct Proj {
      const char* name;
      int64_t out_dim, in_dim;
      bool bias;
    };
    for (const Proj& pr : {Proj{"q_proj", q, h, c.qkv_bias}, Proj{"k_proj", kv, h, c.qkv_bias},
                           Proj{"v_proj", kv, h, c.qkv_bias}, Proj{"o_proj", h, q, c.o_bias}}) {
      out.push_back(
          {fmt::format("{}self_attn.{}.weight", p, pr.name), {pr.out_dim, pr.in_dim}, K::kLinear});
      if (pr.bias)
        out.push_back({fmt::format("{}self_attn.{}.bias", p, pr.name), {pr.out_dim}, K::kBias});
    }
    out.push_back({p + "post_attention_layernorm.weight", {h}, K::kNorm});
    for (const Proj& pr :
         {Proj{"gate_proj", inter, h, c.mlp_bias}, Proj{"up_proj", inter, h, c.mlp_bias},
          Proj{"down_proj", h, inter, c.mlp_bias}}) {
      out.push_back(
          {fmt::format("{}mlp.{}.weight", p, pr.name), {pr.out_dim, pr.in_dim}, K::kLinear});
      if (pr.bias)
        out.push_back({fmt::format("{}mlp.{}.bias", p, pr.name), {pr.out_dim}, K::kBias});
    }
  }
  out.push_back({"model.norm.weight", {h}, K::kNorm});
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {c.vocab_size, h}, K::kLinear});
  return out;
}

int64_t count_parameters(const ModelConfig& config) {
  int64_t n = 0;
  for (const auto& t : expected_tensors(config)) n += checked_numel(t.shape).value_or(0);
  return n;
}

ModelWeights::ModelWeights(std::vector<TensorRef> tensors, std::shared_ptr<const void> owner)
    : tensors_(std::move(tensors)), owner_(std::move(owner)) {
  std::sort(tensors_.begin(), tensors_.end(),
            [](const TensorRef& a, const TensorRef& b) { return a.name < b.name; });
}

const TensorRef* ModelWeights::find(std::string_view name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorRef& t, std::string_view n) { return t.name < n; });
  if (it == tensors_.end() || it->name != name) return nullptr;
  return &*it;
}

Result<const TensorRef*> ModelWeights::get(std::string_view name) const {
  const TensorRef* t = find(name);
  if (t == nullptr) return not_found(fmt::format("model has no tensor \"{}\"", name));
  return t;
}

uint64_t ModelWeights::total_bytes() const {
  uint64_t n = 0;
  for (const auto& t : tensors_) n += t.bytes;
  return n;
}

Result<ModelWeights> load_model_weights(const std::filesystem::path& model_dir,
                                        const ModelConfig& config) {
  BATON_ASSIGN_OR_RETURN(SafetensorsCheckpoint ckpt, SafetensorsCheckpoint::open(model_dir));
  auto shared = std::make_shared<SafetensorsCheckpoint>(std::move(ckpt));

  std::vector<TensorRef> refs;
  auto add = [&](const SafetensorsCheckpoint::Entry& e) {
    const SafetensorsTensor& t = *e.tensor;
    refs.push_back({t.name, t.dtype, t.shape, t.data, t.bytes(), e.file->path().string()});
  };
  auto check = [&](const SafetensorsCheckpoint::Entry& e,
                   const std::vector<int64_t>& shape) -> Status {
    const SafetensorsTensor& t = *e.tensor;
    if (t.shape != shape) {
      return data_error(fmt::format("{}: tensor \"{}\": shape {} but the config needs {}",
                                    e.file->path().string(), t.name, shape_str(t.shape),
                                    shape_str(shape)));
    }
    if (!is_float(t.dtype)) {
      return data_error(
          fmt::format("{}: tensor \"{}\": dtype {} is not a float type (F32, F16, BF16)",
                      e.file->path().string(), t.name, dtype_name(t.dtype)));
    }
    return Status::ok();
  };

  std::vector<ExpectedTensor> expected = expected_tensors(config);
  std::vector<std::string> missing;
  std::set<std::string_view> wanted;
  for (const auto& x : expected) {
    wanted.insert(x.name);
    const SafetensorsCheckpoint::Entry* e = shared->find(x.name);
    if (e == nullptr) {
      missing.push_back(x.name);
      continue;
    }
    BATON_RETURN_IF_ERROR(check(*e, x.shape));
    add(*e);
  }
  if (!missing.empty()) {
    std::string more =
        missing.size() > 1 ? fmt::format(" (and {} more missing)", missing.size() - 1) : "";
    return data_error(fmt::format("{}: tensor \"{}\" is missing from the checkpoint{}",
                                  model_dir.string(), missing.front(), more));
  }
  for (const auto& [name, e] : shared->tensors()) {
    if (wanted.count(name) != 0 || is_ignorable_extra(name)) continue;
    if (name == "lm_head.weight" && config.tie_word_embeddings) {
      // Some tied exports still save the head; it must at least fit.
      BATON_RETURN_IF_ERROR(check(e, {config.vocab_size, config.hidden_size}));
      continue;
    }
    return data_error(fmt::format("{}: tensor \"{}\" is not part of a {} with this config",
                                  e.file->path().string(), name, config.architecture));
  }
  return ModelWeights(std::move(refs), std::move(shared));
}

}  // namespace baton::model
