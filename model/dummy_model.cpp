#include "model/dummy_model.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <new>
#include <system_error>
#include <thread>

#include "model/safetensors.h"

namespace baton::model {

namespace {

struct Preset {
  std::string_view name;
  ModelConfig (*make)();
};

ModelConfig llama3(int64_t hidden, int64_t inter, int64_t layers, int64_t heads, float rope_factor,
                   bool tie, bool explicit_head_dim) {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.model_type = "llama";
  c.vocab_size = 128256;
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.num_key_value_heads = 8;
  c.head_dim = hidden / heads;
  c.head_dim_explicit = explicit_head_dim;
  c.max_position_embeddings = 131072;
  c.rms_norm_eps = 1e-5f;
  c.tie_word_embeddings = tie;
  c.bos_token_id = 128000;
  c.eos_token_ids = {128001, 128008, 128009};
  c.dtype = DType::kBF16;
  c.rope.type = RopeScaling::Type::kLlama3;
  c.rope.theta = 500000.0f;
  c.rope.factor = rope_factor;
  c.rope.low_freq_factor = 1.0f;
  c.rope.high_freq_factor = 4.0f;
  c.rope.original_max_position_embeddings = 8192;
  return c;
}

ModelConfig qwen25(int64_t vocab, int64_t hidden, int64_t inter, int64_t layers, int64_t heads,
                   int64_t kv_heads, bool tie) {
  ModelConfig c;
  c.architecture = "Qwen2ForCausalLM";
  c.model_type = "qwen2";
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv_heads;
  c.head_dim = hidden / heads;
  c.max_position_embeddings = 32768;
  c.rms_norm_eps = 1e-6f;
  c.tie_word_embeddings = tie;
  c.qkv_bias = true;
  c.bos_token_id = 151643;
  c.eos_token_ids = {151645};
  c.dtype = DType::kBF16;
  c.rope.theta = 1000000.0f;
  return c;
}

const Preset kPresets[] = {
    {"llama-3.1-8b", [] { return llama3(4096, 14336, 32, 32, 8.0f, false, false); }},
    {"llama-3.2-1b", [] { return llama3(2048, 8192, 16, 32, 32.0f, true, true); }},
    {"llama-3.2-3b", [] { return llama3(3072, 8192, 28, 24, 32.0f, true, true); }},
    {"qwen2.5-7b", [] { return qwen25(152064, 3584, 18944, 28, 28, 4, false); }},
    {"qwen2.5-0.5b", [] { return qwen25(151936, 896, 4864, 24, 14, 2, true); }},
    {"mistral-7b",
     [] {
       // Mistral-7B-v0.3: the 32768-token vocabulary, no sliding window.
       ModelConfig c;
       c.architecture = "MistralForCausalLM";
       c.model_type = "mistral";
       c.vocab_size = 32768;
       c.hidden_size = 4096;
       c.intermediate_size = 14336;
       c.num_hidden_layers = 32;
       c.num_attention_heads = 32;
       c.num_key_value_heads = 8;
       c.head_dim = 128;
       c.max_position_embeddings = 32768;
       c.rms_norm_eps = 1e-5f;
       c.bos_token_id = 1;
       c.eos_token_ids = {2};
       c.dtype = DType::kBF16;
       c.rope.theta = 1000000.0f;
       return c;
     }},
    {"llama-100m",
     [] {
       // Not a published model: a Llama-shaped ~100M model (tied embeddings)
       // small enough for CPU benchmarks.
       ModelConfig c;
       c.architecture = "LlamaForCausalLM";
       c.model_type = "llama";
       c.vocab_size = 32000;
       c.hidden_size = 768;
       c.intermediate_size = 2048;
       c.num_hidden_layers = 12;
       c.num_attention_heads = 12;
       c.num_key_value_heads = 4;
       c.head_dim = 64;
       c.max_position_embeddings = 4096;
       c.rms_norm_eps = 1e-5f;
       c.tie_word_embeddings = true;
       c.bos_token_id = 1;
       c.eos_token_ids = {2};
       c.dtype = DType::kBF16;
       c.rope.theta = 10000.0f;
       return c;
     }},
};

constexpr std::string_view kDummyPrefix = "dummy:";

// splitmix64's finaliser: a strong 64-bit mixer, so hashing consecutive
// counters gives independent-looking values and any element can be computed
// on its own (which is what makes the fill parallel and thread-count free).
inline uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

struct AlignedDelete {
  void operator()(std::byte* p) const { ::operator delete[](p, std::align_val_t(64)); }
};
using Buffer = std::unique_ptr<std::byte[], AlignedDelete>;

struct DummyBuffers {
  std::vector<Buffer> buffers;
};

struct FillJob {
  std::byte* data;
  DType dtype;
  uint64_t key;  // per-tensor stream
  float center;
  float scale;
};

// Element i of a tensor is lo + step * r, r a 24-bit hash output. Computed in
// double: step * r is exact there (24-bit by 24-bit significands) and the sum
// is rounded once, so the result is the same with or without FMA contraction
// on any IEEE machine.
template <typename Store>
void fill_typed(const FillJob& job, int64_t begin, int64_t end, Store store) {
  const double lo = static_cast<double>(job.center) - static_cast<double>(job.scale);
  const double step = 2.0 * static_cast<double>(job.scale) / 16777216.0;
  auto value = [&](uint64_t r) { return static_cast<float>(lo + step * static_cast<double>(r)); };
  // One hash gives an element pair (2p, 2p+1), whatever the chunking.
  for (int64_t p = begin / 2; p * 2 < end; ++p) {
    uint64_t h = mix64(job.key + static_cast<uint64_t>(p) * 0x9e3779b97f4a7c15ull);
    store(2 * p, value(h >> 40));
    if (2 * p + 1 < end) store(2 * p + 1, value((h >> 8) & 0xffffffu));
  }
}

// Fills elements [begin, end) of a tensor; begin must be even.
void fill_range(const FillJob& job, int64_t begin, int64_t end) {
  switch (job.dtype) {
    case DType::kF32: {
      auto* out = reinterpret_cast<float*>(job.data);
      fill_typed(job, begin, end, [out](int64_t i, float v) { out[i] = v; });
      break;
    }
    case DType::kBF16: {
      auto* out = reinterpret_cast<uint16_t*>(job.data);
      fill_typed(job, begin, end, [out](int64_t i, float v) { out[i] = f32_to_bf16(v); });
      break;
    }
    default: {
      auto* out = reinterpret_cast<uint16_t*>(job.data);
      fill_typed(job, begin, end, [out](int64_t i, float v) { out[i] = f32_to_f16(v); });
      break;
    }
  }
}

}  // namespace

std::vector<std::string_view> dummy_presets() {
  std::vector<std::string_view> out;
  for (const auto& p : kPresets) out.push_back(p.name);
  return out;
}

Result<ModelConfig> dummy_config(std::string_view preset) {
  for (const auto& p : kPresets) {
    if (p.name == preset) {
      ModelConfig c = p.make();
      BATON_RETURN_IF_ERROR(validate_model_config(c, fmt::format("dummy preset {}", preset)));
      return c;
    }
  }
  return not_found(fmt::format("unknown dummy model preset \"{}\" (known: {})", preset,
                               fmt::join(dummy_presets(), ", ")));
}

Result<ModelWeights> make_dummy_weights(const ModelConfig& config, DType dtype, uint64_t seed,
                                        int threads) {
  if (dtype != DType::kF32 && dtype != DType::kF16 && dtype != DType::kBF16) {
    return invalid_argument(fmt::format(
        "dummy weights: dtype {} is not a float type (F32, F16, BF16)", dtype_name(dtype)));
  }
  BATON_RETURN_IF_ERROR(validate_model_config(config, "dummy weights config"));

  auto owner = std::make_shared<DummyBuffers>();
  std::vector<TensorRef> refs;
  std::vector<FillJob> jobs;
  std::vector<int64_t> numels;
  for (const ExpectedTensor& x : expected_tensors(config)) {
    std::optional<int64_t> numel = checked_numel(x.shape);
    if (!numel) return invalid_argument(fmt::format("dummy weights: tensor {} too large", x.name));
    size_t bytes = static_cast<size_t>(*numel) * dtype_size(dtype);
    Buffer buf;
    try {
      // Default-initialised: the fill writes every byte, so no zeroing pass.
      buf.reset(static_cast<std::byte*>(
          ::operator new[](std::max<size_t>(bytes, 1), std::align_val_t(64))));
    } catch (const std::bad_alloc&) {
      return resource_exhausted(
          fmt::format("dummy weights: cannot allocate {} bytes for {}", bytes, x.name));
    }
    float center = x.kind == ExpectedTensor::Kind::kNorm ? 1.0f : 0.0f;
    float scale = x.kind == ExpectedTensor::Kind::kBias ? 0.01f : 0.05f;
    jobs.push_back({buf.get(), dtype, mix64(seed ^ mix64(fnv1a(x.name))), center, scale});
    numels.push_back(*numel);
    refs.push_back({x.name, dtype, x.shape, buf.get(), bytes, ""});
    owner->buffers.push_back(std::move(buf));
  }

  // Split into even-sized chunks across all tensors so a few huge matrices
  // (embeddings, lm_head) do not serialise the fill.
  constexpr int64_t kChunk = 1 << 20;
  struct Chunk {
    size_t job;
    int64_t begin, end;
  };
  std::vector<Chunk> chunks;
  for (size_t j = 0; j < jobs.size(); ++j) {
    for (int64_t b = 0; b < numels[j]; b += kChunk) {
      chunks.push_back({j, b, std::min(numels[j], b + kChunk)});
    }
  }
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t c = next.fetch_add(1); c < chunks.size(); c = next.fetch_add(1)) {
      fill_range(jobs[chunks[c].job], chunks[c].begin, chunks[c].end);
    }
  };
  int n =
      threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  n = static_cast<int>(
      std::min<size_t>(static_cast<size_t>(n), std::max<size_t>(chunks.size(), 1)));
  std::vector<std::thread> pool;
  try {
    for (int i = 1; i < n; ++i) pool.emplace_back(worker);
  } catch (const std::system_error&) {
    // Fewer threads only makes it slower; the caller's thread finishes the rest.
  }
  worker();
  for (auto& t : pool) t.join();
  return ModelWeights(std::move(refs), std::move(owner));
}

Result<ModelSource> resolve_model_spec(std::string_view spec) {
  if (spec.empty()) return invalid_argument("empty model spec (a directory or dummy:<preset>)");
  ModelSource src;
  if (spec.starts_with(kDummyPrefix)) {
    src.kind = ModelSource::Kind::kDummy;
    src.preset = std::string(spec.substr(kDummyPrefix.size()));
    BATON_RETURN_IF_ERROR(dummy_config(src.preset).status());
    return src;
  }
  src.kind = ModelSource::Kind::kDirectory;
  src.directory = std::filesystem::path(spec);
  std::error_code ec;
  if (!std::filesystem::is_directory(src.directory, ec)) {
    return not_found(
        fmt::format("model directory {} does not exist (or use dummy:<preset>, "
                    "presets: {})",
                    src.directory.string(), fmt::join(dummy_presets(), ", ")));
  }
  if (!std::filesystem::is_regular_file(src.directory / "config.json", ec)) {
    return not_found(
        fmt::format("{}: no config.json in the model directory", src.directory.string()));
  }
  return src;
}

Result<ModelConfig> load_source_config(const ModelSource& source) {
  if (source.kind == ModelSource::Kind::kDummy) return dummy_config(source.preset);
  return load_model_config(source.directory);
}

Result<ModelWeights> load_source_weights(const ModelSource& source, const ModelConfig& config,
                                         DType dummy_dtype, uint64_t seed) {
  if (source.kind == ModelSource::Kind::kDummy)
    return make_dummy_weights(config, dummy_dtype, seed);
  return load_model_weights(source.directory, config);
}

}  // namespace baton::model
