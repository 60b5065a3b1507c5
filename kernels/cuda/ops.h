#pragma once

// Launchers of the CUDA backend's row-wise and data-movement kernels and of
// its attention, each enqueued on `stream`. Shapes are checked by the caller
// (CudaBackend); these only launch. Included by .cu files only.

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/backend.h"

namespace baton::kernels::cuda {

void launch_embedding(const Tensor& table, const Tensor& ids, Tensor& out, cudaStream_t s);
// residual == nullptr: plain RMSNorm of x. Otherwise residual += x first (in
// residual's dtype) and the sum is normalised.
void launch_rms_norm(Tensor* residual, const Tensor& x, const Tensor& w, float eps, Tensor& out,
                     cudaStream_t s);
void launch_bias_add(Tensor& out, const Tensor& bias, cudaStream_t s);
void launch_rope(Tensor& q, Tensor& k, const Tensor& positions, int32_t head_dim,
                 const RopeTable& table, cudaStream_t s);
void launch_silu_mul(const Tensor& gate_up, Tensor& out, cudaStream_t s);
void launch_gather_rows(const Tensor& x, const Tensor& rows, Tensor& out, cudaStream_t s);
void launch_kv_append(const Tensor& k, const Tensor& v, const Tensor& slots, KvCacheView& cache,
                      cudaStream_t s);
// launch_rope then launch_kv_append in one kernel; full rotary only
// (table.rotary_dim == head_dim), k and v of the activation dtype.
void launch_rope_kv_append(Tensor& q, Tensor& k, const Tensor& v, const Tensor& positions,
                           const Tensor& slots, int32_t head_dim, const RopeTable& table,
                           KvCacheView& cache, cudaStream_t s);
// Dense [num_tokens, row] <-> paged cache, block table on the device.
void launch_kv_copy(const KvCacheView& cache, const int32_t* device_table, int32_t first_token,
                    int32_t num_tokens, const Tensor& k_dense, const Tensor& v_dense, bool to_cache,
                    cudaStream_t s);

// Decode-sized products: out[n, m] = x[n, k] w[m, k]^T (+ bias) with bf16 x
// and w, n <= kGemvMaxRows; gemv_supported says whether these tensors qualify.
constexpr int64_t kGemvMaxRows = 8;
bool gemv_supported(const Tensor& x, const Tensor& w, const Tensor& out);
void launch_gemv(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out, cudaStream_t s);
// out[n, i] = silu(g) * u of the product x w^T, g its column i and u its
// column i + inter (inter = out cols), each rounded to bf16 first as the
// unfused pair would; one warp computes both. Same conditions as
// gemv_supported for the product, no bias, bf16 out.
void launch_gemv_silu_mul(const Tensor& x, const Tensor& w, Tensor& out, cudaStream_t s);

// Sampling (sampling.cu): one row of `rows` per block. The POD forms of
// SampleRow, TokenEdit and SampleOutput on the device; rows with edits have
// a scratch row of `vocab` floats each (scratch_row).
struct SampleRowDev {
  int32_t logits_row = 0;
  int32_t top_k = -1;
  int32_t logprobs = -1;
  int32_t edit_begin = 0;
  int32_t num_edits = 0;
  int32_t scratch_row = -1;
  float temperature = 1.0f;
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  double uniform = 0.0;
};
constexpr int32_t kEditSeen = 1;
constexpr int32_t kEditMasked = 2;
struct SampleEditDev {
  int32_t token = 0;
  int32_t output_count = 0;
  int32_t flags = 0;
};
struct SampleOutDev {
  int32_t token;
  float logprob;
  int32_t num_top;
  int32_t pad;
  int32_t top_tokens[kMaxTopLogprobs];
  float top_logprobs[kMaxTopLogprobs];
};
void launch_sample(const float* logits, int32_t vocab, const SampleRowDev* rows, int32_t num_rows,
                   const SampleEditDev* edits, float* scratch, SampleOutDev* out, cudaStream_t s);

// Work of one attention call, already on the device (see attention.cu).
struct AttentionPlan {
  // Row items: {seq, q row, visible context length, offset of the block
  // table in `tables`}, one per query row handled by the row kernel.
  const int4* items = nullptr;
  int32_t num_items = 0;
  int32_t max_ctx = 0;  // longest visible context among the items
  // Tiled prefill: one entry per sequence handled by the tiled kernel
  // {q_start, q_len, context_len, table offset}.
  const int4* tiled = nullptr;
  int32_t num_tiled = 0;
  int32_t max_tiled_q = 0;
  const int32_t* tables = nullptr;
  // Split-K of the row kernel: each item's context is cut into num_splits
  // ranges of split_len tokens, combined through `partials`
  // (attention_partial_floats of them) when num_splits > 1.
  int32_t num_splits = 1;
  int32_t split_len = 0;
  const int32_t* split_len_dev = nullptr;  // when set, split_len is read from here
  float* partials = nullptr;
};

// Splits for the row kernel so that the grid fills `num_sms` multiprocessors;
// sets split_len.
int32_t attention_splits(int32_t num_items, int32_t num_kv_heads, int32_t max_ctx, int num_sms,
                         int32_t* split_len);
size_t attention_partial_floats(int32_t num_items, int32_t num_q_heads, int32_t head_dim,
                                int32_t num_splits);
// True when the tiled tensor-core prefill kernel handles this configuration.
bool tiled_prefill_supported(DType q_dtype, DType cache_dtype, int32_t head_dim);
void launch_attention(const Tensor& q, const KvCacheView& cache, const AttentionPlan& plan,
                      int32_t num_q_heads, float scale, Tensor& out, cudaStream_t s);

}  // namespace baton::kernels::cuda
