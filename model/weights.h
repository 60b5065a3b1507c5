#pragma once

// ModelWeights: the named tensors of a Llama-family model, checked against its
// ModelConfig, plus the list of tensors such a model must have.
//
// Ownership: a ModelWeights owns whatever holds the bytes (the mapped
// safetensors files of a checkpoint, or the buffers of dummy weights) through
// a shared owner, so copies are cheap and every TensorRef::data stays valid as
// long as any copy lives. The bytes are read-only; a ModelWeights is immutable
// after construction and safe to read from any thread.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"
#include "model/model_config.h"

namespace baton::model {

// A view of one tensor. `data` is row-major with `shape`, `bytes` long, and
// only as aligned as its source (safetensors files need not align tensors).
struct TensorRef {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t bytes = 0;
  std::string file;  // the file it came from; "" for generated weights

  int64_t numel() const;
};

// One tensor a model needs, in the order the forward pass meets them.
struct ExpectedTensor {
  enum class Kind { kEmbedding, kLinear, kBias, kNorm };

  std::string name;
  std::vector<int64_t> shape;
  Kind kind = Kind::kLinear;
};

// Every tensor a model with this config must have: embed_tokens, per layer
// the two norms, q/k/v/o projections (+ biases where the config says), the
// three MLP projections (+ biases with mlp_bias), the final norm, and
// lm_head.weight unless the embeddings are tied.
std::vector<ExpectedTensor> expected_tensors(const ModelConfig& config);

// Total parameters of expected_tensors(config).
int64_t count_parameters(const ModelConfig& config);

class ModelWeights {
 public:
  ModelWeights() = default;
  // `owner` keeps the memory behind every tensor's data alive.
  ModelWeights(std::vector<TensorRef> tensors, std::shared_ptr<const void> owner);

  // nullptr when absent.
  const TensorRef* find(std::string_view name) const;
  // kNotFound naming the tensor when absent.
  Result<const TensorRef*> get(std::string_view name) const;

  // Sorted by name.
  const std::vector<TensorRef>& tensors() const { return tensors_; }
  size_t size() const { return tensors_.size(); }
  uint64_t total_bytes() const;

 private:
  std::vector<TensorRef> tensors_;
  std::shared_ptr<const void> owner_;
};

// Loads <model_dir>'s safetensors (single file or sharded) and checks them
// against expected_tensors(config): every expected tensor present with its
// exact shape and a float dtype (f32, f16, bf16; mixed is fine), nothing
// unexpected. Tolerated and dropped: rotary_emb.inv_freq / cos_cached /
// sin_cached buffers, and lm_head.weight of a tied model (the engine uses
// embed_tokens then). Errors name the tensor and the file.
Result<ModelWeights> load_model_weights(const std::filesystem::path& model_dir,
                                        const ModelConfig& config);

}  // namespace baton::model
