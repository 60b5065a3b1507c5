#include "engine/llama_model.h"

#include <cmath>
#include <cstring>
#include <string>

#include "kernels/rope.h"
#if BATON_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

namespace baton::engine {

using kernels::Tensor;

namespace {

void to_f32(const model::TensorRef& t, float* out) {
  const auto n = static_cast<size_t>(t.numel());
  switch (t.dtype) {
    case DType::kF32:
      std::memcpy(out, t.data, n * 4);
      break;
    case DType::kBF16:
    case DType::kF16: {
      const auto* p = static_cast<const unsigned char*>(t.data);
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);  // safetensors data need not be aligned
        out[i] = t.dtype == DType::kBF16 ? bf16_to_f32(h) : f16_to_f32(h);
      }
      break;
    }
    default:
      BATON_CHECK_MSG(false, "weights are validated as float dtypes");
  }
}

kernels::RopeParams rope_params(const model::ModelConfig& c) {
  kernels::RopeParams p;
  p.theta = c.rope.theta;
  p.rotary_dim = static_cast<int32_t>(c.rotary_dim());
  p.factor = c.rope.factor;
  p.low_freq_factor = c.rope.low_freq_factor;
  p.high_freq_factor = c.rope.high_freq_factor;
  p.original_max_positions = static_cast<int32_t>(c.rope.original_max_position_embeddings);
  switch (c.rope.type) {
    case model::RopeScaling::Type::kLinear:
      p.scaling = kernels::RopeParams::Scaling::kLinear;
      break;
    case model::RopeScaling::Type::kLlama3:
      p.scaling = kernels::RopeParams::Scaling::kLlama3;
      break;
    default:
      p.scaling = kernels::RopeParams::Scaling::kNone;
  }
  return p;
}

}  // namespace

void ForwardBatch::clear() {
  tokens.clear();
  positions.clear();
  slots.clear();
  seqs.clear();
  logit_rows.clear();
}

LlamaModel::LlamaModel(kernels::Backend& backend, const model::ModelConfig& config,
                       const ModelOptions& options)
    : backend_(backend), config_(config), options_(options) {}

Result<std::unique_ptr<LlamaModel>> LlamaModel::create(kernels::Backend& backend,
                                                       const model::ModelConfig& config,
                                                       const model::ModelWeights& weights,
                                                       const ModelOptions& options) {
  ModelOptions opts = options;
  if (opts.max_model_len <= 0)
    opts.max_model_len = static_cast<int32_t>(config.max_position_embeddings);
  if (opts.max_num_tokens <= 0 || opts.max_num_seqs <= 0 || opts.num_blocks <= 0 ||
      opts.block_size <= 0) {
    return invalid_argument(
        "model options: max_num_tokens, max_num_seqs, num_blocks and "
        "block_size must be positive");
  }
  if (config.rope.type != model::RopeScaling::Type::kDefault &&
      config.rope.type != model::RopeScaling::Type::kLinear &&
      config.rope.type != model::RopeScaling::Type::kLlama3) {
    return unimplemented(std::string("rope type ") +
                         std::string(model::rope_type_name(config.rope.type)));
  }
  std::unique_ptr<LlamaModel> m(new LlamaModel(backend, config, opts));
  BATON_RETURN_IF_ERROR(m->load(weights));
  BATON_RETURN_IF_ERROR(m->allocate_runtime());
#if BATON_HAVE_CUDA
  if (opts.cuda_graphs) m->graphs_ = kernels::cuda::step_graphs(backend);
#endif
  return m;
}

Result<Tensor> LlamaModel::scratch(DType dtype, std::initializer_list<int64_t> dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  BATON_ASSIGN_OR_RETURN(kernels::DeviceBuffer buf,
                         backend_.allocate(static_cast<size_t>(n) * dtype_size(dtype)));
  Tensor t = buf.tensor(dtype, dims);
  buffers_.push_back(std::move(buf));
  return t;
}

// Concatenates `parts` along rows (all share trailing dims) into one backend
// tensor. Norms and biases go to f32; matrices keep their dtype unless the
// parts disagree.
Result<Tensor> LlamaModel::upload(const std::vector<const model::TensorRef*>& parts,
                                  bool to_f32_always) {
  BATON_CHECK(!parts.empty());
  const auto& first = *parts[0];
  bool same = true;
  int64_t rows = 0;
  for (const auto* p : parts) {
    same = same && p->dtype == first.dtype;
    rows += p->shape[0];
  }
  // Matrices keep their dtype where the backend takes it; otherwise (a
  // backend whose GEMMs want the activation dtype, or parts that disagree)
  // they become activation-dtype matrices.
  const kernels::Capabilities caps = backend_.capabilities();
  const bool supported = (first.dtype == DType::kF32 && caps.weights_f32) ||
                         (first.dtype == DType::kBF16 && caps.weights_bf16) ||
                         (first.dtype == DType::kF16 && caps.weights_f16);
  DType dtype = first.dtype;
  if (to_f32_always) {
    dtype = DType::kF32;
  } else if (!same || !supported) {
    dtype = caps.activation_dtype;
  }
  const bool matrix = first.shape.size() == 2;
  const int64_t cols = matrix ? first.shape[1] : 1;
  Result<Tensor> t = matrix ? scratch(dtype, {rows, cols}) : scratch(dtype, {rows});
  if (!t.is_ok()) return t.status();
  char* dst = static_cast<char*>(t->data);
  std::vector<float> tmp;
  std::vector<uint16_t> narrow;
  for (const auto* p : parts) {
    size_t bytes = static_cast<size_t>(p->numel()) * dtype_size(dtype);
    if (dtype == p->dtype) {
      BATON_RETURN_IF_ERROR(backend_.upload(p->data, bytes, dst));
    } else {
      tmp.resize(static_cast<size_t>(p->numel()));
      to_f32(*p, tmp.data());
      if (dtype == DType::kF32) {
        BATON_RETURN_IF_ERROR(backend_.upload(tmp.data(), bytes, dst));
      } else {
        BATON_CHECK(dtype == DType::kBF16 || dtype == DType::kF16);
        narrow.resize(tmp.size());
        for (size_t i = 0; i < tmp.size(); ++i) {
          narrow[i] = dtype == DType::kBF16 ? f32_to_bf16(tmp[i]) : f32_to_f16(tmp[i]);
        }
        BATON_RETURN_IF_ERROR(backend_.upload(narrow.data(), bytes, dst));
      }
    }
    dst += bytes;
  }
  return t;
}

Status LlamaModel::load(const model::ModelWeights& w) {
  auto get = [&](const std::string& name) { return w.get(name); };
  auto one = [&](const std::string& name, bool f32) -> Result<Tensor> {
    BATON_ASSIGN_OR_RETURN(const model::TensorRef* t, get(name));
    return upload({t}, f32);
  };
  BATON_ASSIGN_OR_RETURN(embed_, one("model.embed_tokens.weight", false));
  BATON_ASSIGN_OR_RETURN(final_norm_, one("model.norm.weight", true));
  if (config_.tie_word_embeddings) {
    lm_head_ = embed_;
  } else {
    BATON_ASSIGN_OR_RETURN(lm_head_, one("lm_head.weight", false));
  }
  layers_.resize(static_cast<size_t>(config_.num_hidden_layers));
  for (size_t i = 0; i < layers_.size(); ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    Layer& L = layers_[i];
    BATON_ASSIGN_OR_RETURN(L.input_norm, one(p + "input_layernorm.weight", true));
    BATON_ASSIGN_OR_RETURN(L.post_norm, one(p + "post_attention_layernorm.weight", true));
    BATON_ASSIGN_OR_RETURN(const model::TensorRef* wq, get(p + "self_attn.q_proj.weight"));
    BATON_ASSIGN_OR_RETURN(const model::TensorRef* wk, get(p + "self_attn.k_proj.weight"));
    BATON_ASSIGN_OR_RETURN(const model::TensorRef* wv, get(p + "self_attn.v_proj.weight"));
    BATON_ASSIGN_OR_RETURN(L.qkv, upload({wq, wk, wv}, false));
    const int64_t qs = config_.q_size(), kvs = config_.kv_size();
    L.q = L.qkv.slice_rows(0, qs);
    L.k = L.qkv.slice_rows(qs, kvs);
    L.v = L.qkv.slice_rows(qs + kvs, kvs);
    BATON_ASSIGN_OR_RETURN(L.o, one(p + "self_attn.o_proj.weight", false));
    BATON_ASSIGN_OR_RETURN(const model::TensorRef* gate, get(p + "mlp.gate_proj.weight"));
    BATON_ASSIGN_OR_RETURN(const model::TensorRef* up, get(p + "mlp.up_proj.weight"));
    BATON_ASSIGN_OR_RETURN(L.gate_up, upload({gate, up}, false));
    BATON_ASSIGN_OR_RETURN(L.down, one(p + "mlp.down_proj.weight", false));
    L.has_q_bias = config_.qkv_bias;
    L.has_o_bias = config_.o_bias;
    L.has_mlp_bias = config_.mlp_bias;
    if (L.has_q_bias) {
      BATON_ASSIGN_OR_RETURN(const model::TensorRef* bq, get(p + "self_attn.q_proj.bias"));
      BATON_ASSIGN_OR_RETURN(const model::TensorRef* bk, get(p + "self_attn.k_proj.bias"));
      BATON_ASSIGN_OR_RETURN(const model::TensorRef* bv, get(p + "self_attn.v_proj.bias"));
      BATON_ASSIGN_OR_RETURN(L.qkv_bias, upload({bq, bk, bv}, true));
      L.q_bias = L.qkv_bias.slice_rows(0, qs);
      L.k_bias = L.qkv_bias.slice_rows(qs, kvs);
      L.v_bias = L.qkv_bias.slice_rows(qs + kvs, kvs);
    }
    if (L.has_o_bias) {
      BATON_ASSIGN_OR_RETURN(L.o_bias, one(p + "self_attn.o_proj.bias", true));
    }
    if (L.has_mlp_bias) {
      BATON_ASSIGN_OR_RETURN(const model::TensorRef* gb, get(p + "mlp.gate_proj.bias"));
      BATON_ASSIGN_OR_RETURN(const model::TensorRef* ub, get(p + "mlp.up_proj.bias"));
      BATON_ASSIGN_OR_RETURN(L.gate_up_bias, upload({gb, ub}, true));
      BATON_ASSIGN_OR_RETURN(L.down_bias, one(p + "mlp.down_proj.bias", true));
    }
  }
  return Status::ok();
}

Status LlamaModel::allocate_runtime() {
  const int64_t T = options_.max_num_tokens;
  const int64_t S = options_.max_num_seqs;
  const int64_t H = config_.hidden_size;
  const DType act = backend_.activation_dtype();

  // KV cache, one K and one V tensor per layer.
  for (Layer& L : layers_) {
    const int64_t nb = options_.num_blocks, bs = options_.block_size;
    const int64_t hk = config_.num_key_value_heads, hd = config_.head_dim;
    BATON_ASSIGN_OR_RETURN(L.cache.k, scratch(options_.kv_dtype, {nb, bs, hk, hd}));
    BATON_ASSIGN_OR_RETURN(L.cache.v, scratch(options_.kv_dtype, {nb, bs, hk, hd}));
    L.cache.block_size = options_.block_size;
    L.cache.num_kv_heads = static_cast<int32_t>(hk);
    L.cache.head_dim = static_cast<int32_t>(hd);
  }

  // RoPE table for every position the model may see.
  const kernels::RopeParams rp = rope_params(config_);
  const int32_t half = rp.rotary_dim / 2;
  const int32_t P = options_.max_model_len;
  std::vector<float> cos(static_cast<size_t>(P) * half), sin(cos.size());
  kernels::rope_fill_table(rp, P, cos.data(), sin.data());
  BATON_ASSIGN_OR_RETURN(rope_.cos, scratch(DType::kF32, {P, half}));
  BATON_ASSIGN_OR_RETURN(rope_.sin, scratch(DType::kF32, {P, half}));
  BATON_RETURN_IF_ERROR(backend_.upload(cos.data(), cos.size() * 4, rope_.cos.data));
  BATON_RETURN_IF_ERROR(backend_.upload(sin.data(), sin.size() * 4, rope_.sin.data));
  rope_.rotary_dim = rp.rotary_dim;
  rope_.max_positions = P;

  BATON_ASSIGN_OR_RETURN(ids_, scratch(DType::kI32, {T}));
  BATON_ASSIGN_OR_RETURN(pos_, scratch(DType::kI32, {T}));
  BATON_ASSIGN_OR_RETURN(slots_, scratch(DType::kI32, {T}));
  BATON_ASSIGN_OR_RETURN(rows_, scratch(DType::kI32, {S}));
  BATON_ASSIGN_OR_RETURN(hidden_, scratch(act, {T, H}));
  BATON_ASSIGN_OR_RETURN(residual_, scratch(act, {T, H}));
  BATON_ASSIGN_OR_RETURN(normed_, scratch(act, {T, H}));
  BATON_ASSIGN_OR_RETURN(q_, scratch(act, {T, config_.q_size()}));
  BATON_ASSIGN_OR_RETURN(k_, scratch(act, {T, config_.kv_size()}));
  BATON_ASSIGN_OR_RETURN(v_, scratch(act, {T, config_.kv_size()}));
  BATON_ASSIGN_OR_RETURN(attn_, scratch(act, {T, config_.q_size()}));
  BATON_ASSIGN_OR_RETURN(gate_up_, scratch(act, {T, 2 * config_.intermediate_size}));
  BATON_ASSIGN_OR_RETURN(act_, scratch(act, {T, config_.intermediate_size}));
  BATON_ASSIGN_OR_RETURN(last_, scratch(act, {S, H}));
  BATON_ASSIGN_OR_RETURN(logits_, scratch(DType::kF32, {S, config_.vocab_size}));
  BATON_ASSIGN_OR_RETURN(qkv1_, scratch(act, {1, config_.q_size() + 2 * config_.kv_size()}));
  return Status::ok();
}

size_t LlamaModel::workspace_bytes(const model::ModelConfig& c, const ModelOptions& o, DType act) {
  const auto T = static_cast<size_t>(o.max_num_tokens), S = static_cast<size_t>(o.max_num_seqs);
  const auto H = static_cast<size_t>(c.hidden_size), I = static_cast<size_t>(c.intermediate_size);
  const auto q = static_cast<size_t>(c.q_size()), kv = static_cast<size_t>(c.kv_size());
  const size_t per_token = (3 * H + 2 * q + 2 * kv + 3 * I) * dtype_size(act) + 3 * 4;
  const size_t logits = S * (H * dtype_size(act) + static_cast<size_t>(c.vocab_size) * 4 + 4);
  const int64_t positions = o.max_model_len > 0 ? o.max_model_len : c.max_position_embeddings;
  const size_t rope =
      2 * static_cast<size_t>(positions) * static_cast<size_t>(c.rotary_dim() / 2) * 4;
  return T * per_token + logits + rope;
}

Result<int> cuda_device_index(std::string_view device) {
  if (device == "cuda") return 0;
  constexpr std::string_view kPrefix = "cuda:";
  if (device.starts_with(kPrefix) && device.size() > kPrefix.size() &&
      device.size() <= kPrefix.size() + 3) {
    int n = 0;
    for (char c : device.substr(kPrefix.size())) {
      if (c < '0' || c > '9') {
        n = -1;
        break;
      }
      n = n * 10 + (c - '0');
    }
    if (n >= 0) return n;
  }
  return invalid_argument("device: '" + std::string(device) + "' is neither cpu, cuda nor cuda:N");
}

Result<ModelBackend> make_model_backend(std::string_view device, int threads,
                                        double gpu_memory_utilization,
                                        const model::ModelConfig& config,
                                        const ModelOptions& options, int64_t cpu_kv_cache_bytes,
                                        DType cuda_dtype) {
  ModelBackend mb;
  if (device == "cpu") {
    mb.backend = kernels::make_cpu_backend(threads);
    mb.kv_dtype = DType::kF32;
    mb.kv_cache_bytes = cpu_kv_cache_bytes;
    return mb;
  }
  BATON_ASSIGN_OR_RETURN(const int gpu, cuda_device_index(device));
#if BATON_HAVE_CUDA
  if (gpu_memory_utilization <= 0 || gpu_memory_utilization > 1) {
    return invalid_argument("gpu_memory_utilization: must be in (0, 1]");
  }
  BATON_ASSIGN_OR_RETURN(mb.backend, kernels::cuda::make_cuda_backend(
                                         {.device = gpu, .activation_dtype = cuda_dtype}));
  mb.kv_dtype = mb.backend->activation_dtype();
  // Measured after the backend made its context and workspaces, so those
  // count as in use.
  BATON_ASSIGN_OR_RETURN(kernels::cuda::MemoryInfo mem, kernels::cuda::device_memory(gpu));
  const double in_use = static_cast<double>(mem.total_bytes - mem.free_bytes);
  const double weights =
      static_cast<double>(model::count_parameters(config)) * dtype_size(mb.kv_dtype);
  const double workspace =
      static_cast<double>(LlamaModel::workspace_bytes(config, options, mb.kv_dtype));
  // Room for cuBLAS's own buffers and allocation rounding.
  constexpr double kSlack = 512.0 * (1 << 20);
  const double kv = gpu_memory_utilization * static_cast<double>(mem.total_bytes) - in_use -
                    weights - workspace - kSlack;
  if (kv <= 0) {
    return resource_exhausted("gpu: no room for a KV cache at gpu_memory_utilization " +
                              std::to_string(gpu_memory_utilization));
  }
  mb.kv_cache_bytes = static_cast<int64_t>(kv);
  return mb;
#else
  (void)gpu;
  (void)threads;
  (void)gpu_memory_utilization;
  (void)config;
  (void)options;
  (void)cpu_kv_cache_bytes;
  (void)cuda_dtype;
  return unavailable("device cuda: this build has no CUDA backend");
#endif
}

Status LlamaModel::validate(const ForwardBatch& b) const {
  const size_t n = b.tokens.size();
  if (n == 0) return invalid_argument("forward: empty batch");
  if (n > static_cast<size_t>(options_.max_num_tokens)) {
    return invalid_argument("forward: " + std::to_string(n) + " tokens exceed max_num_tokens " +
                            std::to_string(options_.max_num_tokens));
  }
  if (b.positions.size() != n || b.slots.size() != n) {
    return invalid_argument("forward: tokens, positions and slots differ in length");
  }
  if (b.logit_rows.size() > static_cast<size_t>(options_.max_num_seqs)) {
    return invalid_argument("forward: too many logit rows");
  }
  const int64_t num_slots = static_cast<int64_t>(options_.num_blocks) * options_.block_size;
  for (size_t i = 0; i < n; ++i) {
    if (b.tokens[i] < 0 || b.tokens[i] >= config_.vocab_size) {
      return invalid_argument("forward: token id " + std::to_string(b.tokens[i]) +
                              " outside the vocabulary");
    }
    if (b.positions[i] < 0 || b.positions[i] >= options_.max_model_len) {
      return invalid_argument("forward: position " + std::to_string(b.positions[i]) +
                              " outside [0, max_model_len)");
    }
    if (b.slots[i] < 0 || b.slots[i] >= num_slots) {
      return invalid_argument("forward: KV slot " + std::to_string(b.slots[i]) + " out of range");
    }
  }
  int64_t covered = 0;
  for (const auto& s : b.seqs) {
    if (s.q_start != covered || s.q_len <= 0 || s.context_len < s.q_len) {
      return invalid_argument("forward: sequences must tile the token rows in order");
    }
    covered += s.q_len;
    const int64_t need = (s.context_len + options_.block_size - 1) / options_.block_size;
    if (s.num_blocks < need || s.block_table == nullptr) {
      return invalid_argument("forward: block table shorter than the context");
    }
    for (int32_t j = 0; j < need; ++j) {
      if (s.block_table[j] < 0 || s.block_table[j] >= options_.num_blocks) {
        return invalid_argument("forward: block id out of range");
      }
    }
  }
  if (covered != static_cast<int64_t>(n)) {
    return invalid_argument("forward: sequences do not cover every token");
  }
  for (int32_t r : b.logit_rows) {
    if (r < 0 || static_cast<size_t>(r) >= n) return invalid_argument("forward: bad logit row");
  }
  return Status::ok();
}

Status LlamaModel::forward(const ForwardBatch& b, std::vector<float>& logits) {
  BATON_ASSIGN_OR_RETURN(Tensor out, run(b));
  logits.resize(static_cast<size_t>(out.numel()));
  if (out.numel() == 0) return backend_.synchronize();
  BATON_RETURN_IF_ERROR(backend_.download(out.data, out.bytes(), logits.data()));
  return backend_.synchronize();
}

Status LlamaModel::forward_sample(const ForwardBatch& b, std::span<const kernels::SampleRow> rows,
                                  std::vector<kernels::SampleOutput>& out) {
  for (const kernels::SampleRow& r : rows) {
    if (r.logits_row < 0 || static_cast<size_t>(r.logits_row) >= b.logit_rows.size()) {
      return invalid_argument("forward_sample: a sampling row names no logit row");
    }
  }
  BATON_ASSIGN_OR_RETURN(Tensor logits, run(b));
  out.resize(rows.size());
  if (rows.empty()) return backend_.synchronize();
  return backend_.sample(logits, rows, out);
}

Result<Tensor> LlamaModel::run(const ForwardBatch& b) {
  BATON_RETURN_IF_ERROR(validate(b));
  if (graphs_ != nullptr) {
    Tensor out;
    BATON_ASSIGN_OR_RETURN(bool done, forward_graph(b, out));
    if (done) return out;
  }
  const int64_t n = static_cast<int64_t>(b.tokens.size());
  const int64_t r = static_cast<int64_t>(b.logit_rows.size());
  auto& be = backend_;
  BATON_RETURN_IF_ERROR(be.upload(b.tokens.data(), n * 4, ids_.data));
  BATON_RETURN_IF_ERROR(be.upload(b.positions.data(), n * 4, pos_.data));
  BATON_RETURN_IF_ERROR(be.upload(b.slots.data(), n * 4, slots_.data));
  enqueue_layers(n, b.seqs);
  Tensor out = logits_.slice_rows(0, r);
  if (r == 0) return out;
  Tensor rows = rows_.slice_rows(0, r);
  BATON_RETURN_IF_ERROR(be.upload(b.logit_rows.data(), r * 4, rows.data));
  Tensor last = last_.slice_rows(0, r);
  be.gather_rows(normed_.slice_rows(0, n), rows, last);
  be.linear(last, lm_head_, nullptr, out);
  return out;
}

void LlamaModel::enqueue_layers(int64_t n, const std::vector<kernels::AttentionSeq>& seqs) {
  auto& be = backend_;
  Tensor ids = ids_.slice_rows(0, n);
  Tensor pos = pos_.slice_rows(0, n);
  Tensor slots = slots_.slice_rows(0, n);
  Tensor hidden = hidden_.slice_rows(0, n), residual = residual_.slice_rows(0, n);
  Tensor normed = normed_.slice_rows(0, n);
  Tensor q = q_.slice_rows(0, n), k = k_.slice_rows(0, n), v = v_.slice_rows(0, n);
  Tensor attn = attn_.slice_rows(0, n), gate_up = gate_up_.slice_rows(0, n);
  Tensor act = act_.slice_rows(0, n);
  const float scale = 1.0f / std::sqrt(static_cast<float>(config_.head_dim));
  const auto hq = static_cast<int32_t>(config_.num_attention_heads);
  const auto hd = static_cast<int32_t>(config_.head_dim);
  const float eps = config_.rms_norm_eps;

  be.embedding(embed_, ids, residual);
  be.rms_norm(residual, layers_[0].input_norm, eps, normed);
  for (size_t l = 0; l < layers_.size(); ++l) {
    Layer& L = layers_[l];
    if (n == 1) {
      // One row: q, k and v lie back to back in the fused output.
      be.linear(normed, L.qkv, L.has_q_bias ? &L.qkv_bias : nullptr, qkv1_);
      const size_t es = dtype_size(qkv1_.dtype);
      char* base = static_cast<char*>(qkv1_.data);
      q = Tensor(base, qkv1_.dtype, {1, config_.q_size()});
      k = Tensor(base + es * config_.q_size(), qkv1_.dtype, {1, config_.kv_size()});
      v = Tensor(base + es * (config_.q_size() + config_.kv_size()), qkv1_.dtype,
                 {1, config_.kv_size()});
    } else {
      be.linear(normed, L.q, L.has_q_bias ? &L.q_bias : nullptr, q);
      be.linear(normed, L.k, L.has_q_bias ? &L.k_bias : nullptr, k);
      be.linear(normed, L.v, L.has_q_bias ? &L.v_bias : nullptr, v);
    }
    be.rope_kv_append(q, k, v, pos, slots, hd, rope_, L.cache);
    be.attention(q, L.cache, seqs, hq, scale, attn);
    be.linear(attn, L.o, L.has_o_bias ? &L.o_bias : nullptr, hidden);
    be.add_rms_norm(residual, hidden, L.post_norm, eps, normed);
    be.linear_silu_mul(normed, L.gate_up, L.has_mlp_bias ? &L.gate_up_bias : nullptr, gate_up, act);
    be.linear(act, L.down, L.has_mlp_bias ? &L.down_bias : nullptr, hidden);
    const Tensor& next_norm = l + 1 < layers_.size() ? layers_[l + 1].input_norm : final_norm_;
    be.add_rms_norm(residual, hidden, next_norm, eps, normed);
  }
}

namespace {
// Decode batches are padded up to one of these sizes, one graph each.
constexpr int64_t kGraphBuckets[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
// Padding rows attend to the first token of block 0 and write no KV.
constexpr int32_t kPadTable[1] = {0};
}  // namespace

Result<bool> LlamaModel::forward_graph(const ForwardBatch& b, Tensor& logits) {
#if BATON_HAVE_CUDA
  const auto n = static_cast<int64_t>(b.tokens.size());
  // Decode steps only: one token per sequence, logits of every row in order.
  if (b.seqs.size() != static_cast<size_t>(n) || b.logit_rows.size() != static_cast<size_t>(n)) {
    return false;
  }
  for (int64_t i = 0; i < n; ++i) {
    if (b.seqs[static_cast<size_t>(i)].q_len != 1 || b.logit_rows[static_cast<size_t>(i)] != i) {
      return false;
    }
  }
  int64_t padded = 0;
  for (int64_t size : kGraphBuckets) {
    if (size >= n) {
      padded = size;
      break;
    }
  }
  if (padded == 0 || padded > options_.max_num_tokens || padded > options_.max_num_seqs) {
    return false;
  }
  graph_seqs_.assign(b.seqs.begin(), b.seqs.end());
  graph_inputs_.assign(3 * static_cast<size_t>(padded), 0);
  int32_t* tok = graph_inputs_.data();
  int32_t* pos = tok + padded;
  int32_t* slot = pos + padded;
  for (int64_t i = 0; i < padded; ++i) {
    const bool real = i < n;
    tok[i] = real ? b.tokens[static_cast<size_t>(i)] : 0;
    pos[i] = real ? b.positions[static_cast<size_t>(i)] : 0;
    slot[i] = real ? b.slots[static_cast<size_t>(i)] : -1;
    if (!real) graph_seqs_.push_back({static_cast<int32_t>(i), 1, 1, kPadTable, 1});
  }
  auto& be = backend_;
  BATON_RETURN_IF_ERROR(be.upload(tok, padded * 4, ids_.data));
  BATON_RETURN_IF_ERROR(be.upload(pos, padded * 4, pos_.data));
  BATON_RETURN_IF_ERROR(be.upload(slot, padded * 4, slots_.data));
  const auto key = static_cast<uint64_t>(padded);
  Tensor out = logits_.slice_rows(0, padded);
  if (!graphs_->has_graph(key)) {
    BATON_RETURN_IF_ERROR(graphs_->begin_capture(key));
    enqueue_layers(padded, graph_seqs_);
    be.linear(normed_.slice_rows(0, padded), lm_head_, nullptr, out);
    BATON_RETURN_IF_ERROR(graphs_->end_capture());
  }
  BATON_ASSIGN_OR_RETURN(bool replayed, graphs_->replay(key, graph_seqs_));
  if (!replayed) return false;
  ++graph_replays_;
  logits = logits_.slice_rows(0, n);
  return true;
#else
  // CUDA graphs exist only in CUDA builds; graphs_ is always null here.
  (void)b;
  (void)logits;
  return false;
#endif
}

size_t LlamaModel::kv_bytes_per_token() const {
  return static_cast<size_t>(2 * config_.num_hidden_layers * config_.kv_size()) *
         dtype_size(options_.kv_dtype);
}

namespace {
Status check_range(const ModelOptions& o, const int32_t* table, int32_t first, int32_t count) {
  if (table == nullptr || first < 0 || count < 0)
    return invalid_argument("kv range: bad arguments");
  const int32_t last_block = (first + count + o.block_size - 1) / o.block_size;
  for (int32_t i = first / o.block_size; i < last_block; ++i) {
    if (table[i] < 0 || table[i] >= o.num_blocks) {
      return invalid_argument("kv range: block id " + std::to_string(table[i]) + " out of range");
    }
  }
  return Status::ok();
}
}  // namespace

Result<LlamaModel::KvStaging> LlamaModel::kv_staging(int32_t count) {
  const int64_t kv = config_.kv_size();
  const size_t bytes = 2 * static_cast<size_t>(count * kv) * dtype_size(options_.kv_dtype);
  if (kv_stage_.bytes() < bytes) {
    kv_stage_ = kernels::DeviceBuffer();  // release the old one first: device memory is scarce
    BATON_ASSIGN_OR_RETURN(kv_stage_, backend_.allocate(bytes));
  }
  KvStaging st;
  st.data = kv_stage_.data();
  st.k = Tensor(st.data, options_.kv_dtype, {count, kv});
  st.v = Tensor(static_cast<char*>(st.data) + st.k.bytes(), options_.kv_dtype, {count, kv});
  return st;
}

Status LlamaModel::export_kv(const int32_t* table, int32_t first, int32_t count, void* dst) {
  BATON_RETURN_IF_ERROR(check_range(options_, table, first, count));
  if (count == 0) return Status::ok();
  BATON_ASSIGN_OR_RETURN(KvStaging st, kv_staging(count));
  const size_t layer_bytes = 2 * st.k.bytes();
  char* out = static_cast<char*>(dst);
  for (Layer& L : layers_) {
    backend_.kv_gather(L.cache, table, first, count, st.k, st.v);
    BATON_RETURN_IF_ERROR(backend_.download(st.data, layer_bytes, out));
    out += layer_bytes;
  }
  return backend_.synchronize();
}

Status LlamaModel::import_kv(const int32_t* table, int32_t first, int32_t count, const void* src) {
  BATON_RETURN_IF_ERROR(check_range(options_, table, first, count));
  if (count == 0) return Status::ok();
  BATON_ASSIGN_OR_RETURN(KvStaging st, kv_staging(count));
  const size_t layer_bytes = 2 * st.k.bytes();
  const char* in = static_cast<const char*>(src);
  for (Layer& L : layers_) {
    BATON_RETURN_IF_ERROR(backend_.upload(in, layer_bytes, st.data));
    backend_.kv_scatter(L.cache, table, first, count, st.k, st.v);
    in += layer_bytes;
  }
  return backend_.synchronize();
}

Status LlamaModel::export_kv_device(const int32_t* table, int32_t first, int32_t count, void* dst) {
  BATON_RETURN_IF_ERROR(check_range(options_, table, first, count));
  if (count == 0) return Status::ok();
  const int64_t kv = config_.kv_size();
  char* out = static_cast<char*>(dst);
  for (Layer& L : layers_) {
    Tensor k(out, options_.kv_dtype, {count, kv});
    Tensor v(out + k.bytes(), options_.kv_dtype, {count, kv});
    backend_.kv_gather(L.cache, table, first, count, k, v);
    out += 2 * k.bytes();
  }
  return backend_.synchronize();
}

Status LlamaModel::import_kv_device(const int32_t* table, int32_t first, int32_t count,
                                    const void* src) {
  BATON_RETURN_IF_ERROR(check_range(options_, table, first, count));
  if (count == 0) return Status::ok();
  const int64_t kv = config_.kv_size();
  // Read only: Tensor has no const view.
  char* in = static_cast<char*>(const_cast<void*>(src));
  for (Layer& L : layers_) {
    const Tensor k(in, options_.kv_dtype, {count, kv});
    const Tensor v(in + k.bytes(), options_.kv_dtype, {count, kv});
    backend_.kv_scatter(L.cache, table, first, count, k, v);
    in += 2 * k.bytes();
  }
  return backend_.synchronize();
}

Status LlamaModel::copy_block(int32_t src, int32_t dst) {
  if (src < 0 || dst < 0 || src >= options_.num_blocks || dst >= options_.num_blocks) {
    return invalid_argument("copy_block: block id out of range");
  }
  for (Layer& L : layers_) {
    const size_t block_bytes = L.cache.k.bytes() / static_cast<size_t>(options_.num_blocks);
    for (Tensor* t : {&L.cache.k, &L.cache.v}) {
      char* base = static_cast<char*>(t->data);
      BATON_RETURN_IF_ERROR(backend_.copy(base + block_bytes * static_cast<size_t>(src),
                                          block_bytes,
                                          base + block_bytes * static_cast<size_t>(dst)));
    }
  }
  return Status::ok();
}

}  // namespace baton::engine
