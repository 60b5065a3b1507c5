#pragma once

// The Backend interface: device memory and the operations a Llama-family
// forward pass is built from (DESIGN.md §4). The CPU backend is always built;
// the CUDA backend implements the same interface when the toolkit is present.
//
// Conventions for every op:
// - Tensors are dense, row-major views over backend memory (see Tensor). The
//   caller allocates outputs; ops never allocate.
// - Float activations are in activation_dtype() (f32 on CPU). Weights may be
//   f32, f16 or bf16; accumulation is always f32.
// - Ops are enqueued in order on the backend's one stream; on the CPU they run
//   synchronously across the backend's worker threads. synchronize() waits.
// - A Backend is used from one thread at a time (the engine thread).
// - Shapes are checked with BATON_CHECK: a wrong shape is a programmer error
//   of the model code, never a consequence of user input.

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"
#include "kernels/sampling.h"

namespace baton::kernels {

enum class DeviceKind { kCpu, kCuda };

// A dense row-major view: no ownership, no strides.
struct Tensor {
  void* data = nullptr;
  DType dtype = DType::kF32;
  std::array<int64_t, 4> shape{0, 0, 0, 0};
  int ndim = 0;

  Tensor() = default;
  Tensor(void* d, DType t, std::initializer_list<int64_t> dims);

  int64_t dim(int i) const { return shape[static_cast<size_t>(i)]; }
  int64_t numel() const;
  size_t bytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  // Rows when seen as a matrix [rows, last dim].
  int64_t rows() const { return ndim == 0 ? 0 : numel() / shape[static_cast<size_t>(ndim - 1)]; }
  int64_t cols() const { return ndim == 0 ? 0 : shape[static_cast<size_t>(ndim - 1)]; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data);
  }
  // Rows [begin, begin + count) of the matrix view [rows, cols] (of a 1-D
  // tensor: elements [begin, begin + count), still 1-D).
  Tensor slice_rows(int64_t begin, int64_t count) const;
  // Same bytes seen with another shape of equal numel.
  Tensor reshaped(std::initializer_list<int64_t> dims) const;
};

// Backend-owned memory; released by the backend that made it.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(void* data, size_t bytes, void (*release)(void*, size_t));
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer();

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Tensor tensor(DType t, std::initializer_list<int64_t> dims) const;

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  void (*release_)(void*, size_t) = nullptr;
};

// Paged KV cache of one layer: K and V each [num_blocks, block_size,
// num_kv_heads, head_dim]. A token's slot is block_id * block_size + offset.
struct KvCacheView {
  Tensor k;
  Tensor v;
  int32_t block_size = 16;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
};

// One sequence's part of an attention call. Its q rows are
// [q_start, q_start + q_len); they are the last q_len tokens of a context of
// context_len tokens whose K/V (cached prefix plus this chunk, already
// appended) live in the blocks of block_table, in order. Attention is causal:
// row i sees context positions [0, context_len - q_len + i].
struct AttentionSeq {
  int32_t q_start = 0;
  int32_t q_len = 0;
  int32_t context_len = 0;
  const int32_t* block_table = nullptr;  // host pointer, ceil(context_len / block_size) ids
  int32_t num_blocks = 0;
};

// Rotary embedding as a precomputed table: cos and sin, each
// [max_positions, rotary_dim / 2] f32 on the backend. Rotation is the
// "rotate half" form used by Hugging Face Llama-family models: element j pairs
// with element j + rotary_dim / 2 of each head.
struct RopeTable {
  Tensor cos;
  Tensor sin;
  int32_t rotary_dim = 0;
  int32_t max_positions = 0;
};

struct Capabilities {
  DeviceKind kind = DeviceKind::kCpu;
  DType activation_dtype = DType::kF32;
  bool weights_f32 = true;
  bool weights_bf16 = true;
  bool weights_f16 = true;
  int threads = 1;  // CPU worker threads; 0 where not meaningful
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string_view name() const = 0;
  virtual Capabilities capabilities() const = 0;
  DType activation_dtype() const { return capabilities().activation_dtype; }

  // ---- memory -------------------------------------------------------------
  // Allocation failure is a normal outcome (kResourceExhausted).
  virtual Result<DeviceBuffer> allocate(size_t bytes) = 0;
  virtual Status upload(const void* host, size_t bytes, void* device) = 0;
  virtual Status download(const void* device, size_t bytes, void* host) = 0;
  virtual Status copy(const void* src, size_t bytes, void* dst) = 0;  // device to device
  virtual Status synchronize() = 0;

  // ---- ops ----------------------------------------------------------------
  // out[n, d] = table[ids[n], :]; ids i32 [n] (host-visible on CPU).
  virtual void embedding(const Tensor& table, const Tensor& ids, Tensor& out) = 0;
  // out = x / rms(x) * w, row-wise over the last dim.
  virtual void rms_norm(const Tensor& x, const Tensor& w, float eps, Tensor& out) = 0;
  // residual += x, then out = rms_norm(residual) * w (fused).
  virtual void add_rms_norm(Tensor& residual, const Tensor& x, const Tensor& w, float eps,
                            Tensor& out) = 0;
  // out[n, m] = x[n, k] · w[m, k]^T (+ bias[m] when bias != nullptr).
  virtual void linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out) = 0;
  // In place on q [n, hq * head_dim] and k [n, hk * head_dim]; positions i32 [n].
  virtual void rope(Tensor& q, Tensor& k, const Tensor& positions, int32_t head_dim,
                    const RopeTable& table) = 0;
  // out[n, i] = silu(gate_up[n, j]) * gate_up[n, i + j], gate_up [n, 2 * i].
  virtual void silu_mul(const Tensor& gate_up, Tensor& out) = 0;
  // out[r, :] = x[rows[r], :]; rows i32 [r].
  virtual void gather_rows(const Tensor& x, const Tensor& rows, Tensor& out) = 0;
  // Write k, v [n, num_kv_heads * head_dim] into the cache at slots i32 [n].
  virtual void kv_append(const Tensor& k, const Tensor& v, const Tensor& slots,
                         KvCacheView& cache) = 0;
  // out [num_tokens, hq * head_dim] = softmax(q · K^T * scale) · V per head, with
  // GQA (query head h reads kv head h / (hq / hk)), causal, over paged KV.
  virtual void attention(const Tensor& q, const KvCacheView& cache,
                         const std::vector<AttentionSeq>& seqs, int32_t num_q_heads, float scale,
                         Tensor& out) = 0;
  // KV transfer support: copy the K and V of `num_tokens` tokens, starting at
  // token `first_token` of a sequence laid out in `block_table`, into / out of
  // a dense buffer [num_tokens, num_kv_heads * head_dim] each for K and V.
  virtual void kv_gather(const KvCacheView& cache, const int32_t* block_table, int32_t first_token,
                         int32_t num_tokens, Tensor& k_out, Tensor& v_out) = 0;
  virtual void kv_scatter(KvCacheView& cache, const int32_t* block_table, int32_t first_token,
                          int32_t num_tokens, const Tensor& k_in, const Tensor& v_in) = 0;
  // rope(q, k, ...) then kv_append(k, v, slots, cache), in one pass where the
  // backend has one (a decode step's small kernels are launch-bound).
  virtual void rope_kv_append(Tensor& q, Tensor& k, const Tensor& v, const Tensor& positions,
                              const Tensor& slots, int32_t head_dim, const RopeTable& table,
                              KvCacheView& cache) {
    rope(q, k, positions, head_dim, table);
    kv_append(k, v, slots, cache);
  }
  // out = silu_mul(linear(x, w, bias)) with gate_up as the product's scratch
  // [n, w rows], which a fused implementation may leave unwritten.
  virtual void linear_silu_mul(const Tensor& x, const Tensor& w, const Tensor* bias,
                               Tensor& gate_up, Tensor& out) {
    linear(x, w, bias, gate_up);
    silu_mul(gate_up, out);
  }
  // One token per row of `rows` from f32 logits [r, vocab] in backend memory
  // (kernels/sampling.h gives the pipeline); out[i] answers rows[i]. Waits for
  // the stream: the results are on the host when it returns. The logits are
  // left as they were.
  virtual Status sample(const Tensor& logits, std::span<const SampleRow> rows,
                        std::span<SampleOutput> out) = 0;
};

// The CPU backend with `threads` workers (0: all hardware threads).
std::unique_ptr<Backend> make_cpu_backend(int threads = 0);

}  // namespace baton::kernels
