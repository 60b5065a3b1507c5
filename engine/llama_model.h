#pragma once

// LlamaModel: one forward pass for the whole Llama family (Llama 2/3, Mistral,
// Qwen2) built from Backend ops, over a paged KV cache that it owns.
//
// A forward call takes a flattened batch: the new tokens of several sequences
// back to back (prefill chunks and single decode tokens mixed), each token's
// position and KV slot, and per sequence the AttentionSeq that says which
// cache blocks hold its context. It appends the new K/V to the cache and
// returns f32 logits for the requested rows only.
//
// Ownership: the model holds its weights, KV cache and workspace in backend
// memory; the ModelWeights it was built from may be dropped afterwards.
// Thread-safety: none; the engine thread alone calls it.

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "kernels/backend.h"
#include "model/model_config.h"
#include "model/weights.h"

namespace baton::kernels::cuda {
class StepGraphs;
}  // namespace baton::kernels::cuda

namespace baton::engine {

struct ModelOptions {
  int32_t max_num_tokens = 2048;  // most new tokens in one forward call
  int32_t max_num_seqs = 256;     // most sequences (logit rows) in one call
  int32_t num_blocks = 0;         // KV blocks in the pool
  int32_t block_size = 16;        // tokens per KV block
  int32_t max_model_len = 0;      // longest context (positions); 0: the config's
  DType kv_dtype = DType::kF32;   // KV cache element type
  // Decode steps (one token per sequence, up to 256 sequences) replay a
  // captured graph per padded batch size where the backend has graphs.
  bool cuda_graphs = true;
};

struct ForwardBatch {
  std::vector<int32_t> tokens;              // new tokens, sequences back to back
  std::vector<int32_t> positions;           // one per token
  std::vector<int32_t> slots;               // KV slot per token (block * block_size + offset)
  std::vector<kernels::AttentionSeq> seqs;  // block tables must outlive forward()
  std::vector<int32_t> logit_rows;          // token rows whose logits are returned

  void clear();
};

// The backend a model runs on, chosen by device name, with the KV cache dtype
// and pool size that suit it.
struct ModelBackend {
  std::unique_ptr<kernels::Backend> backend;
  DType kv_dtype = DType::kF32;
  int64_t kv_cache_bytes = 0;
};

// The GPU index of a device name: "cuda" is 0, "cuda:N" is N;
// kInvalidArgument for any other name.
Result<int> cuda_device_index(std::string_view device);

// device "cpu": the CPU backend with `threads` workers, f32 KV, and
// cpu_kv_cache_bytes of KV. device "cuda" or "cuda:N": GPU 0 or N with
// cuda_dtype (kBF16 or kF32) activations, weights and KV, and a KV pool of
// gpu_memory_utilization of the GPU's total memory less what is in use
// already, the weights and the workspace of `options`.
// kUnavailable for "cuda" when this build has no CUDA backend or no GPU is
// visible; kInvalidArgument for another name or a pool with no room.
Result<ModelBackend> make_model_backend(std::string_view device, int threads,
                                        double gpu_memory_utilization,
                                        const model::ModelConfig& config,
                                        const ModelOptions& options, int64_t cpu_kv_cache_bytes,
                                        DType cuda_dtype = DType::kBF16);

class LlamaModel {
 public:
  // Uploads (and fuses) the weights and allocates the KV cache and workspace.
  // Running out of backend memory is kResourceExhausted.
  static Result<std::unique_ptr<LlamaModel>> create(kernels::Backend& backend,
                                                    const model::ModelConfig& config,
                                                    const model::ModelWeights& weights,
                                                    const ModelOptions& options);

  // Backend memory besides weights and KV cache for these options (workspace,
  // logits, RoPE table) with activations in `act`.
  static size_t workspace_bytes(const model::ModelConfig& config, const ModelOptions& options,
                                DType act);

  // Runs the batch; `logits` becomes [logit_rows.size(), vocab] row-major f32.
  // Invalid batches (too many tokens, a token id outside the vocabulary, a
  // position past max_model_len, slot out of range) are kInvalidArgument and
  // leave the cache untouched.
  Status forward(const ForwardBatch& batch, std::vector<float>& logits);
  // Runs the batch and samples on the backend: rows[i].logits_row indexes
  // batch.logit_rows (rows may share one); only the sampled tokens and the
  // logprobs asked for come back. Same errors as forward(), plus a row that
  // names no logit row.
  Status forward_sample(const ForwardBatch& batch, std::span<const kernels::SampleRow> rows,
                        std::vector<kernels::SampleOutput>& out);

  const model::ModelConfig& config() const { return config_; }
  const ModelOptions& options() const { return options_; }
  int32_t vocab_size() const { return static_cast<int32_t>(config_.vocab_size); }
  kernels::Backend& backend() { return backend_; }
  // Forward calls served by replaying a captured decode-step graph.
  int64_t graph_replays() const { return graph_replays_; }

  // KV of `num_tokens` tokens from token `first_token` of a sequence whose
  // blocks are `block_table`, for all layers, to or from one contiguous host
  // buffer laid out [layer][K then V][token][kv_heads * head_dim] in
  // kv_dtype. kv_bytes_per_token() * num_tokens bytes.
  size_t kv_bytes_per_token() const;
  Status export_kv(const int32_t* block_table, int32_t first_token, int32_t num_tokens, void* dst);
  Status import_kv(const int32_t* block_table, int32_t first_token, int32_t num_tokens,
                   const void* src);
  // The same to or from backend memory (on a GPU backend, device memory of
  // its GPU), gathered and scattered in place: no host copy, no staging. Both
  // return once the backend is done with the memory.
  Status export_kv_device(const int32_t* block_table, int32_t first_token, int32_t num_tokens,
                          void* dst);
  Status import_kv_device(const int32_t* block_table, int32_t first_token, int32_t num_tokens,
                          const void* src);
  // Copies whole blocks (all layers), for copy-on-write of shared blocks.
  Status copy_block(int32_t src_block, int32_t dst_block);

 private:
  struct Layer {
    kernels::Tensor input_norm, post_norm;
    // qkv is q, k and v stacked by rows; q, k and v are views of it (and the
    // biases likewise), so a one-token step reads all three in one product.
    kernels::Tensor qkv, q, k, v, o, gate_up, down;
    kernels::Tensor qkv_bias, q_bias, k_bias, v_bias, o_bias, gate_up_bias, down_bias;
    bool has_q_bias = false, has_o_bias = false, has_mlp_bias = false;
    kernels::KvCacheView cache;
  };

  // Backend memory for the K and V of `count` tokens of one layer, back to
  // back: the unit export_kv/import_kv move per layer. Views of kv_stage_,
  // which grows to the largest transfer seen and is kept, so that a transfer
  // allocates no device memory in the steady state.
  struct KvStaging {
    void* data = nullptr;
    kernels::Tensor k, v;
  };

  LlamaModel(kernels::Backend& backend, const model::ModelConfig& config,
             const ModelOptions& options);
  Result<KvStaging> kv_staging(int32_t count);
  Status load(const model::ModelWeights& weights);
  Status allocate_runtime();
  Result<kernels::Tensor> upload(const std::vector<const model::TensorRef*>& parts, bool to_f32);
  Result<kernels::Tensor> scratch(DType dtype, std::initializer_list<int64_t> dims);
  Status validate(const ForwardBatch& batch) const;
  // Enqueues embedding through the final norm for rows [0, n) (inputs
  // already uploaded); the result is in normed_.
  void enqueue_layers(int64_t n, const std::vector<kernels::AttentionSeq>& seqs);
  // Enqueues the whole batch; the result is the logits [logit_rows, vocab]
  // f32 in backend memory, valid until the next call.
  Result<kernels::Tensor> run(const ForwardBatch& batch);
  // A decode batch as a graph replay (captured on the first batch of its
  // padded size), `logits` set to its rows; false when the batch does not
  // qualify.
  Result<bool> forward_graph(const ForwardBatch& batch, kernels::Tensor& logits);

  kernels::Backend& backend_;
  model::ModelConfig config_;
  ModelOptions options_;
  std::vector<kernels::DeviceBuffer> buffers_;  // owns every tensor below

  kernels::Tensor embed_, final_norm_, lm_head_;
  std::vector<Layer> layers_;
  kernels::RopeTable rope_;

  // Workspace for max_num_tokens rows.
  kernels::Tensor ids_, pos_, slots_, rows_;
  kernels::Tensor hidden_, residual_, normed_, q_, k_, v_, attn_, gate_up_, act_;
  kernels::Tensor last_, logits_;
  kernels::Tensor qkv1_;  // [1, q + 2 kv]: the fused projection of a one-token step

  kernels::DeviceBuffer kv_stage_;               // see KvStaging
  kernels::cuda::StepGraphs* graphs_ = nullptr;  // null: no graphs on this backend
  int64_t graph_replays_ = 0;
  std::vector<kernels::AttentionSeq> graph_seqs_;  // the padded batch of a replay
  std::vector<int32_t> graph_inputs_;
};

}  // namespace baton::engine
