#pragma once

// The CPU implementation of Backend (kernels/backend.h): f32 activations,
// f32/bf16/f16 weights, f32/bf16/f16 KV cache. Memory is host memory aligned
// to 64 bytes; ops run synchronously on the calling thread plus the workers of
// the backend's own ForkJoinPool, with each op's vector kernels chosen once, at
// construction, for the widest instruction set the CPU has.
//
// Thread-safety: as every Backend, used by one thread at a time.

#include <memory>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/fork_join_pool.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/vec_ops.h"

namespace baton::kernels {

// make_cpu_backend with a given instruction set instead of the best one; for
// tests and benchmarks that compare variants. `isa` must be supported.
std::unique_ptr<Backend> make_cpu_backend_with_isa(int threads, Isa isa);

class CpuBackend final : public Backend {
 public:
  CpuBackend(int threads, Isa isa);

  std::string_view name() const override { return "cpu"; }
  Capabilities capabilities() const override;
  Isa isa() const { return isa_; }

  Result<DeviceBuffer> allocate(size_t bytes) override;
  Status upload(const void* host, size_t bytes, void* device) override;
  Status download(const void* device, size_t bytes, void* host) override;
  Status copy(const void* src, size_t bytes, void* dst) override;
  Status synchronize() override { return Status::ok(); }

  void embedding(const Tensor& table, const Tensor& ids, Tensor& out) override;
  void rms_norm(const Tensor& x, const Tensor& w, float eps, Tensor& out) override;
  void add_rms_norm(Tensor& residual, const Tensor& x, const Tensor& w, float eps,
                    Tensor& out) override;
  void linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out) override;
  void rope(Tensor& q, Tensor& k, const Tensor& positions, int32_t head_dim,
            const RopeTable& table) override;
  void silu_mul(const Tensor& gate_up, Tensor& out) override;
  void gather_rows(const Tensor& x, const Tensor& rows, Tensor& out) override;
  // Slots < 0 are skipped (padding tokens), as in vLLM.
  void kv_append(const Tensor& k, const Tensor& v, const Tensor& slots,
                 KvCacheView& cache) override;
  void attention(const Tensor& q, const KvCacheView& cache, const std::vector<AttentionSeq>& seqs,
                 int32_t num_q_heads, float scale, Tensor& out) override;
  // The dense buffers may have another float dtype than the cache; values are
  // converted (rounded to nearest even when narrowing).
  void kv_gather(const KvCacheView& cache, const int32_t* block_table, int32_t first_token,
                 int32_t num_tokens, Tensor& k_out, Tensor& v_out) override;
  void kv_scatter(KvCacheView& cache, const int32_t* block_table, int32_t first_token,
                  int32_t num_tokens, const Tensor& k_in, const Tensor& v_in) override;
  // The host pipeline (HostSampler), row after row on the calling thread.
  Status sample(const Tensor& logits, std::span<const SampleRow> rows,
                std::span<SampleOutput> out) override;

 private:
  // Weights as f32: the tensor itself when it is f32, else widened into tmp.
  const float* as_f32(const Tensor& t, std::vector<float>& tmp) const;
  // Rows to hand one worker so that a task does ~kGrainElems of work.
  static int64_t row_grain(int64_t cols);
  // kv_gather (to_cache false) and kv_scatter (true): rows between the paged
  // cache and dense [num_tokens, kv_heads * head_dim] tensors, converted.
  void copy_kv_rows(const KvCacheView& cache, const int32_t* block_table, int32_t first_token,
                    int32_t num_tokens, const Tensor& k_dense, const Tensor& v_dense,
                    bool to_cache);
  void rms_rows(const float* x, const float* w, float eps, int64_t d, float* out) const;

  Isa isa_;
  const VecOps& ops_;
  ForkJoinPool pool_;
  HostSampler sampler_;
};

}  // namespace baton::kernels
