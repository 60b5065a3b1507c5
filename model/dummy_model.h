#pragma once

// Dummy models: real published shapes without any files, for benchmarks and
// tests (like vLLM's --load-format dummy), and the "model spec" a user passes
// on the command line ("dummy:<preset>" or a model directory).
//
// Dummy weights are a pure function of (config, dtype, seed): every value is
// computed from a counter-based hash of the seed, the tensor's name and the
// element index, so they are identical on every machine and for any number of
// threads. Matrices and embeddings are uniform in +-0.05, biases in +-0.01,
// norm weights in 1 +- 0.05.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"
#include "model/model_config.h"
#include "model/weights.h"

namespace baton::model {

// The names dummy_config accepts: "llama-3.1-8b", "llama-3.2-1b",
// "llama-3.2-3b", "qwen2.5-7b", "qwen2.5-0.5b", "mistral-7b" (v0.3) and
// "llama-100m" (a ~100M-parameter Llama for CPU benchmarks).
std::vector<std::string_view> dummy_presets();

// The config.json of a preset's published model (Qwen2.5 presets use the
// Instruct release's settings). kNotFound naming the presets otherwise.
Result<ModelConfig> dummy_config(std::string_view preset);

// Allocates and fills every tensor of expected_tensors(config) in `dtype`
// (F32, F16 or BF16). `threads` <= 0 means one per hardware thread. Fails with
// kResourceExhausted when the memory cannot be allocated. The returned
// weights own their buffers (64-byte aligned); TensorRef::file is "".
Result<ModelWeights> make_dummy_weights(const ModelConfig& config, DType dtype, uint64_t seed,
                                        int threads = 0);

// Where a model comes from.
struct ModelSource {
  enum class Kind { kDirectory, kDummy };
  Kind kind = Kind::kDirectory;
  std::filesystem::path directory;  // kDirectory: holds config.json
  std::string preset;               // kDummy: a dummy_presets() name

  bool operator==(const ModelSource&) const = default;
};

// "dummy:<preset>" -> a dummy preset (kNotFound for an unknown one); anything
// else is a model directory that must exist and contain config.json
// (kNotFound otherwise). An empty spec is kInvalidArgument.
Result<ModelSource> resolve_model_spec(std::string_view spec);

// The config of a source: the preset's, or the directory's config.json.
Result<ModelConfig> load_source_config(const ModelSource& source);

// The weights of a source: dummy weights in `dummy_dtype` from `seed`, or the
// directory's safetensors checked against `config`.
Result<ModelWeights> load_source_weights(const ModelSource& source, const ModelConfig& config,
                                         DType dummy_dtype = DType::kBF16, uint64_t seed = 0);

}  // namespace baton::model
