// CudaBackend: memory, the stream, cuBLAS GEMMs, the staging of host-side
// arguments, and the shape checks of every op before its kernel is launched
// (ops.cu, attention.cu).

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/ops.h"

namespace baton::kernels::cuda {
namespace {

Status cuda_error(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::ok();
  return internal_error(std::string(what) + ": " + cudaGetErrorString(e));
}

void release_device(void* p, size_t) { cudaFree(p); }

// Query rows of a sequence at or above which the tiled prefill kernel beats
// the row kernel.
constexpr int32_t kTiledMinRows = 16;
constexpr size_t kCublasWorkspace = size_t{32} << 20;
// Uploads at most this large go through the pinned ring (asynchronous);
// larger ones (weights) are copied synchronously from pageable memory.
constexpr size_t kStagedUploadMax = size_t{1} << 20;

// A device buffer that only grows; it is reallocated (after the stream
// drains) when a call needs more than it has.
class GrowBuffer {
 public:
  ~GrowBuffer() {
    if (ptr_) cudaFree(ptr_);
  }
  void* get(size_t bytes, cudaStream_t s) {
    if (bytes > bytes_) {
      cudaStreamSynchronize(s);
      if (ptr_) cudaFree(ptr_);
      bytes_ = std::max(bytes, bytes_ * 2);
      cudaError_t e = cudaMalloc(&ptr_, bytes_);
      BATON_CHECK_MSG(e == cudaSuccess, "cuda backend: out of device memory for a workspace");
    }
    return ptr_;
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

class CudaBackend final : public Backend, public StepGraphs {
 public:
  CudaBackend(const CudaBackendOptions& o, int num_sms) : opts_(o), num_sms_(num_sms) {}
  ~CudaBackend() override {
    if (stream_) cudaStreamSynchronize(stream_);
    for (auto& [key, g] : graphs_) {
      if (g.exec) cudaGraphExecDestroy(g.exec);
      if (g.plan) cudaFree(g.plan);
      if (g.partials) cudaFree(g.partials);
    }
    if (cublas_) cublasDestroy(cublas_);
    if (cublas_ws_) cudaFree(cublas_ws_);
    if (staging_) cudaFreeHost(staging_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  Status init() {
    bind();
    BATON_RETURN_IF_ERROR(
        cuda_error(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate"));
    BATON_RETURN_IF_ERROR(
        cuda_error(cudaHostAlloc(&staging_, opts_.staging_bytes, cudaHostAllocDefault),
                   "cudaHostAlloc (staging)"));
    BATON_RETURN_IF_ERROR(cuda_error(cudaMalloc(&cublas_ws_, kCublasWorkspace), "cudaMalloc"));
    if (cublasCreate(&cublas_) != CUBLAS_STATUS_SUCCESS) return internal_error("cublasCreate");
    cublasSetStream(cublas_, stream_);
    cublasSetWorkspace(cublas_, cublas_ws_, kCublasWorkspace);
    // f32 activations mean f32 arithmetic: no silent TF32.
    cublasSetMathMode(cublas_, opts_.activation_dtype == DType::kF32 ? CUBLAS_PEDANTIC_MATH
                                                                     : CUBLAS_DEFAULT_MATH);
    return Status::ok();
  }

  std::string_view name() const override { return "cuda"; }
  Capabilities capabilities() const override {
    Capabilities c;
    c.kind = DeviceKind::kCuda;
    c.activation_dtype = opts_.activation_dtype;
    c.weights_f32 = opts_.activation_dtype == DType::kF32;
    c.weights_bf16 = opts_.activation_dtype == DType::kBF16;
    c.weights_f16 = false;
    c.threads = 0;
    return c;
  }

  Result<DeviceBuffer> allocate(size_t bytes) override {
    bind();
    void* p = nullptr;
    // 256-byte granularity keeps every view 16-byte aligned for vector loads.
    const size_t rounded = std::max<size_t>(256, (bytes + 255) / 256 * 256);
    if (cudaMalloc(&p, rounded) != cudaSuccess) {
      cudaGetLastError();  // clear the sticky-free allocation error
      return resource_exhausted("cuda backend: cannot allocate " + std::to_string(bytes) +
                                " bytes");
    }
    return DeviceBuffer(p, bytes, &release_device);
  }

  Status upload(const void* host, size_t bytes, void* device) override {
    bind();
    if (bytes == 0) return Status::ok();
    if (bytes <= kStagedUploadMax) {
      const void* src = stage(host, bytes);
      return cuda_error(cudaMemcpyAsync(device, src, bytes, cudaMemcpyHostToDevice, stream_),
                        "upload");
    }
    BATON_RETURN_IF_ERROR(cuda_error(
        cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, stream_), "upload"));
    return cuda_error(cudaStreamSynchronize(stream_), "upload");
  }

  Status download(const void* device, size_t bytes, void* host) override {
    bind();
    if (bytes == 0) return Status::ok();
    BATON_RETURN_IF_ERROR(cuda_error(
        cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, stream_), "download"));
    return cuda_error(cudaStreamSynchronize(stream_), "download");
  }

  Status copy(const void* src, size_t bytes, void* dst) override {
    bind();
    if (bytes == 0) return Status::ok();
    return cuda_error(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_), "copy");
  }

  Status synchronize() override {
    bind();
    BATON_RETURN_IF_ERROR(cuda_error(cudaStreamSynchronize(stream_), "synchronize"));
    return cuda_error(cudaGetLastError(), "a kernel");
  }

  void embedding(const Tensor& table, const Tensor& ids, Tensor& out) override {
    bind();
    BATON_CHECK(is_float_storage(table.dtype) && table.ndim == 2);
    BATON_CHECK(ids.dtype == DType::kI32 && out.dtype == act());
    BATON_CHECK(out.rows() == ids.numel() && out.cols() == table.cols());
    launch_embedding(table, ids, out, stream_);
  }

  void rms_norm(const Tensor& x, const Tensor& w, float eps, Tensor& out) override {
    bind();
    BATON_CHECK(x.dtype == act() && out.dtype == act() && is_float_storage(w.dtype));
    BATON_CHECK(w.numel() == x.cols() && out.rows() == x.rows() && out.cols() == x.cols());
    launch_rms_norm(nullptr, x, w, eps, out, stream_);
  }

  void add_rms_norm(Tensor& residual, const Tensor& x, const Tensor& w, float eps,
                    Tensor& out) override {
    bind();
    BATON_CHECK(residual.dtype == act() && x.dtype == act() && out.dtype == act());
    BATON_CHECK(residual.rows() == x.rows() && residual.cols() == x.cols());
    BATON_CHECK(w.numel() == x.cols() && out.rows() == x.rows() && out.cols() == x.cols());
    BATON_CHECK(is_float_storage(w.dtype));
    launch_rms_norm(&residual, x, w, eps, out, stream_);
  }

  // Row-major out[n, m] = x[n, k] w[m, k]^T is, column-major, out^T = w^T x^T:
  // A = w (transposed, lda k), B = x (ldb k), C = out (ldc m).
  void linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out) override {
    bind();
    BATON_CHECK(x.dtype == act() && w.dtype == act());
    BATON_CHECK(out.dtype == act() || out.dtype == DType::kF32);
    BATON_CHECK(w.ndim == 2 && x.cols() == w.cols());
    BATON_CHECK(out.rows() == x.rows() && out.cols() == w.rows());
    const int64_t n = x.rows(), k = x.cols(), m = w.rows();
    if (n == 0) return;
    if (bias != nullptr) BATON_CHECK(is_float_storage(bias->dtype) && bias->numel() == m);
    if (gemv_supported(x, w, out) &&
        (bias == nullptr || bias->dtype == DType::kF32 || bias->dtype == DType::kBF16)) {
      launch_gemv(x, w, bias, out, stream_);
      return;
    }
    const cudaDataType_t in_t = act() == DType::kBF16 ? CUDA_R_16BF : CUDA_R_32F;
    const cudaDataType_t out_t = out.dtype == DType::kBF16 ? CUDA_R_16BF : CUDA_R_32F;
    const float alpha = 1.0f, beta = 0.0f;
    cublasStatus_t st =
        cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(m), static_cast<int>(n),
                     static_cast<int>(k), &alpha, w.data, in_t, static_cast<int>(k), x.data, in_t,
                     static_cast<int>(k), &beta, out.data, out_t, static_cast<int>(m),
                     act() == DType::kF32 ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT);
    BATON_CHECK_MSG(st == CUBLAS_STATUS_SUCCESS, "cublasGemmEx failed");
    if (bias != nullptr) launch_bias_add(out, *bias, stream_);
  }

  void rope(Tensor& q, Tensor& k, const Tensor& positions, int32_t head_dim,
            const RopeTable& table) override {
    bind();
    BATON_CHECK(q.dtype == act() && positions.dtype == DType::kI32);
    BATON_CHECK(table.rotary_dim % 2 == 0 && table.rotary_dim > 0 && table.rotary_dim <= head_dim);
    BATON_CHECK(table.cos.dtype == DType::kF32 && table.sin.dtype == DType::kF32);
    BATON_CHECK(q.rows() == positions.numel() && q.cols() % head_dim == 0);
    if (k.data != nullptr && k.numel() > 0) {
      BATON_CHECK(k.dtype == act() && k.rows() == q.rows() && k.cols() % head_dim == 0);
    }
    launch_rope(q, k, positions, head_dim, table, stream_);
  }

  void rope_kv_append(Tensor& q, Tensor& k, const Tensor& v, const Tensor& positions,
                      const Tensor& slots, int32_t head_dim, const RopeTable& table,
                      KvCacheView& cache) override {
    bind();
    const bool fused =
        table.rotary_dim == head_dim && k.data != nullptr && k.dtype == act() && v.dtype == act();
    if (!fused) {
      Backend::rope_kv_append(q, k, v, positions, slots, head_dim, table, cache);
      return;
    }
    // rope()'s and kv_append()'s checks.
    BATON_CHECK(q.dtype == act() && positions.dtype == DType::kI32);
    BATON_CHECK(table.rotary_dim % 2 == 0 && table.rotary_dim > 0);
    BATON_CHECK(table.cos.dtype == DType::kF32 && table.sin.dtype == DType::kF32);
    BATON_CHECK(q.rows() == positions.numel() && q.cols() % head_dim == 0);
    BATON_CHECK(k.rows() == q.rows() && k.cols() % head_dim == 0);
    check_cache(cache);
    const int64_t row = static_cast<int64_t>(cache.num_kv_heads) * cache.head_dim;
    BATON_CHECK(slots.dtype == DType::kI32 && k.rows() == slots.numel() && v.rows() == k.rows());
    BATON_CHECK(k.cols() == row && v.cols() == row && cache.head_dim == head_dim);
    launch_rope_kv_append(q, k, v, positions, slots, head_dim, table, cache, stream_);
  }

  void linear_silu_mul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& gate_up,
                       Tensor& out) override {
    bind();
    if (bias != nullptr || out.dtype != DType::kBF16 || !gemv_supported(x, w, gate_up) ||
        w.rows() != 2 * out.cols() || w.cols() != x.cols() || out.rows() != x.rows()) {
      Backend::linear_silu_mul(x, w, bias, gate_up, out);
      return;
    }
    BATON_CHECK(gate_up.rows() == x.rows() && gate_up.cols() == w.rows());
    launch_gemv_silu_mul(x, w, out, stream_);
  }

  void silu_mul(const Tensor& gate_up, Tensor& out) override {
    bind();
    BATON_CHECK(gate_up.dtype == act() && out.dtype == act());
    BATON_CHECK(gate_up.cols() == 2 * out.cols() && gate_up.rows() == out.rows());
    launch_silu_mul(gate_up, out, stream_);
  }

  void gather_rows(const Tensor& x, const Tensor& rows, Tensor& out) override {
    bind();
    BATON_CHECK(rows.dtype == DType::kI32 && x.dtype == out.dtype);
    BATON_CHECK(out.rows() == rows.numel() && out.cols() == x.cols());
    launch_gather_rows(x, rows, out, stream_);
  }

  void kv_append(const Tensor& k, const Tensor& v, const Tensor& slots,
                 KvCacheView& cache) override {
    bind();
    check_cache(cache);
    const int64_t row = static_cast<int64_t>(cache.num_kv_heads) * cache.head_dim;
    BATON_CHECK(slots.dtype == DType::kI32 && k.rows() == slots.numel() && v.rows() == k.rows());
    BATON_CHECK(k.cols() == row && v.cols() == row && k.dtype == v.dtype);
    BATON_CHECK(is_float_storage(k.dtype));
    launch_kv_append(k, v, slots, cache, stream_);
  }

  void attention(const Tensor& q, const KvCacheView& cache, const std::vector<AttentionSeq>& seqs,
                 int32_t num_q_heads, float scale, Tensor& out) override {
    bind();
    check_cache(cache);
    const int32_t hd = cache.head_dim, hk = cache.num_kv_heads, hq = num_q_heads;
    BATON_CHECK(q.dtype == act() && out.dtype == act());
    BATON_CHECK(hq > 0 && hq % hk == 0 && hq / hk <= 32);
    BATON_CHECK(q.cols() == static_cast<int64_t>(hq) * hd && out.cols() == q.cols());
    BATON_CHECK(out.rows() == q.rows());
    const int64_t cache_blocks =
        cache.k.numel() / (static_cast<int64_t>(cache.block_size) * hk * hd);
    if (capturing_ != nullptr) {
      attention_captured(q, cache, seqs, hq, scale, out, cache_blocks);
      return;
    }
    const bool tiled_ok = tiled_prefill_supported(q.dtype, cache.k.dtype, hd);

    // Host side of the plan: row items, tiled sequences, block tables.
    plan_host_.clear();
    items_.clear();
    tiled_.clear();
    int32_t max_ctx = 0, max_tiled_q = 0;
    for (const AttentionSeq& s : seqs) {
      BATON_CHECK(s.q_len >= 0 && s.context_len >= s.q_len && s.q_start >= 0);
      BATON_CHECK(s.q_start + s.q_len <= q.rows());
      BATON_CHECK_MSG(static_cast<int64_t>(s.num_blocks) * cache.block_size >= s.context_len,
                      "attention: block table shorter than the context");
      if (s.q_len == 0) continue;
      const int32_t used = (s.context_len + cache.block_size - 1) / cache.block_size;
      const auto off = static_cast<int32_t>(plan_host_.size());
      for (int32_t b = 0; b < used; ++b) {
        BATON_CHECK(s.block_table[b] >= 0 && s.block_table[b] < cache_blocks);
        plan_host_.push_back(s.block_table[b]);
      }
      if (tiled_ok && s.q_len >= kTiledMinRows) {
        tiled_.push_back(int4{s.q_start, s.q_len, s.context_len, off});
        max_tiled_q = std::max(max_tiled_q, s.q_len);
        continue;
      }
      const int32_t prefix = s.context_len - s.q_len;
      for (int32_t i = 0; i < s.q_len; ++i) {
        items_.push_back(int4{0, s.q_start + i, prefix + i + 1, off});
      }
      max_ctx = std::max(max_ctx, s.context_len);
    }
    if (items_.empty() && tiled_.empty()) return;
    // One upload for the whole plan: tables, then items, then tiled entries
    // (int4 = 4 int32). Layers of one forward pass repeat the same plan, so
    // an identical plan reuses what is already on the device.
    const size_t tables_n = (plan_host_.size() + 3) / 4 * 4;
    plan_host_.resize(tables_n + 4 * (items_.size() + tiled_.size()));
    std::memcpy(plan_host_.data() + tables_n, items_.data(), items_.size() * sizeof(int4));
    std::memcpy(plan_host_.data() + tables_n + 4 * items_.size(), tiled_.data(),
                tiled_.size() * sizeof(int4));
    auto* dev = static_cast<int32_t*>(plan_dev_.get(plan_host_.size() * 4, stream_));
    if (plan_host_ != plan_last_ || dev != plan_dev_last_) {
      const void* src = stage(plan_host_.data(), plan_host_.size() * 4);
      cudaMemcpyAsync(dev, src, plan_host_.size() * 4, cudaMemcpyHostToDevice, stream_);
      plan_last_ = plan_host_;
      plan_dev_last_ = dev;
    }
    AttentionPlan plan;
    plan.tables = dev;
    plan.items = reinterpret_cast<const int4*>(dev + tables_n);
    plan.num_items = static_cast<int32_t>(items_.size());
    plan.max_ctx = max_ctx;
    plan.tiled = reinterpret_cast<const int4*>(dev + tables_n + 4 * items_.size());
    plan.num_tiled = static_cast<int32_t>(tiled_.size());
    plan.max_tiled_q = max_tiled_q;
    if (plan.num_items > 0) {
      plan.num_splits = attention_splits(plan.num_items, hk, max_ctx, num_sms_, &plan.split_len);
      const size_t pf = attention_partial_floats(plan.num_items, hq, hd, plan.num_splits);
      if (pf > 0) plan.partials = static_cast<float*>(partials_.get(pf * 4, stream_));
    }
    launch_attention(q, cache, plan, hq, scale, out, stream_);
  }

  Status sample(const Tensor& logits, std::span<const SampleRow> rows,
                std::span<SampleOutput> out) override {
    bind();
    BATON_CHECK(logits.dtype == DType::kF32 && logits.ndim == 2);
    BATON_CHECK(out.size() == rows.size());
    if (rows.empty()) return Status::ok();
    const auto vocab = static_cast<int32_t>(logits.cols());
    // Rows then edits, one upload.
    sample_rows_.clear();
    sample_edits_.clear();
    int32_t scratch_rows = 0;
    for (const SampleRow& r : rows) {
      BATON_CHECK(r.logits_row >= 0 && r.logits_row < logits.rows());
      SampleRowDev d;
      d.logits_row = r.logits_row;
      d.top_k = r.top_k;
      d.logprobs = std::min(r.logprobs, kMaxTopLogprobs);
      d.edit_begin = static_cast<int32_t>(sample_edits_.size());
      d.num_edits = r.num_edits;
      d.scratch_row = r.num_edits > 0 ? scratch_rows++ : -1;
      d.temperature = r.temperature;
      d.top_p = r.top_p;
      d.min_p = r.min_p;
      d.repetition_penalty = r.repetition_penalty;
      d.presence_penalty = r.presence_penalty;
      d.frequency_penalty = r.frequency_penalty;
      d.uniform = r.uniform;
      sample_rows_.push_back(d);
      for (int32_t i = 0; i < r.num_edits; ++i) {
        const TokenEdit& e = r.edits[i];
        sample_edits_.push_back(
            {e.token, e.output_count, (e.seen ? kEditSeen : 0) | (e.masked ? kEditMasked : 0)});
      }
    }
    const size_t rows_bytes = sample_rows_.size() * sizeof(SampleRowDev);
    const size_t edits_bytes = sample_edits_.size() * sizeof(SampleEditDev);
    sample_host_.resize(rows_bytes + edits_bytes);
    std::memcpy(sample_host_.data(), sample_rows_.data(), rows_bytes);
    if (edits_bytes > 0) {
      std::memcpy(sample_host_.data() + rows_bytes, sample_edits_.data(), edits_bytes);
    }
    char* in = static_cast<char*>(sample_in_.get(sample_host_.size(), stream_));
    BATON_RETURN_IF_ERROR(
        cuda_error(cudaMemcpyAsync(in, stage(sample_host_.data(), sample_host_.size()),
                                   sample_host_.size(), cudaMemcpyHostToDevice, stream_),
                   "sample: upload"));
    float* scratch = nullptr;
    if (scratch_rows > 0) {
      scratch = static_cast<float*>(
          sample_scratch_.get(static_cast<size_t>(scratch_rows) * vocab * 4, stream_));
    }
    auto* dev_out =
        static_cast<SampleOutDev*>(sample_out_.get(rows.size() * sizeof(SampleOutDev), stream_));
    launch_sample(logits.as<float>(), vocab, reinterpret_cast<const SampleRowDev*>(in),
                  static_cast<int32_t>(rows.size()),
                  reinterpret_cast<const SampleEditDev*>(in + rows_bytes), scratch, dev_out,
                  stream_);
    sample_results_.resize(rows.size());
    BATON_RETURN_IF_ERROR(cuda_error(
        cudaMemcpyAsync(sample_results_.data(), dev_out, rows.size() * sizeof(SampleOutDev),
                        cudaMemcpyDeviceToHost, stream_),
        "sample: download"));
    BATON_RETURN_IF_ERROR(cuda_error(cudaStreamSynchronize(stream_), "sample"));
    BATON_RETURN_IF_ERROR(cuda_error(cudaGetLastError(), "sample kernel"));
    for (size_t i = 0; i < rows.size(); ++i) {
      const SampleOutDev& d = sample_results_[i];
      SampleOutput& o = out[i];
      o.token = d.token;
      o.logprob = d.logprob;
      o.num_top = d.num_top;
      for (int32_t j = 0; j < d.num_top; ++j) {
        o.top_tokens[static_cast<size_t>(j)] = d.top_tokens[j];
        o.top_logprobs[static_cast<size_t>(j)] = d.top_logprobs[j];
      }
    }
    return Status::ok();
  }

  // ---- StepGraphs ------------------------------------------------------------
  bool has_graph(uint64_t key) const override {
    auto it = graphs_.find(key);
    return it != graphs_.end() && it->second.exec != nullptr;
  }

  Status begin_capture(uint64_t key) override {
    bind();
    BATON_CHECK_MSG(capturing_ == nullptr, "begin_capture while capturing");
    Graph& g = graphs_[key];
    BATON_CHECK_MSG(g.exec == nullptr, "begin_capture: the key already has a graph");
    capturing_ = &g;
    capturing_key_ = key;
    // Relaxed: the first captured attention allocates the graph's buffers.
    return cuda_error(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed),
                      "cudaStreamBeginCapture");
  }

  Status end_capture() override {
    bind();
    BATON_CHECK_MSG(capturing_ != nullptr, "end_capture without begin_capture");
    Graph& g = *capturing_;
    capturing_ = nullptr;
    cudaGraph_t graph = nullptr;
    Status st = cuda_error(cudaStreamEndCapture(stream_, &graph), "cudaStreamEndCapture");
    if (st.is_ok()) {
      st = cuda_error(cudaGraphInstantiate(&g.exec, graph, 0), "cudaGraphInstantiate");
    }
    if (graph) cudaGraphDestroy(graph);
    if (st.is_ok() && g.plan == nullptr) st = internal_error("captured step has no attention");
    if (!st.is_ok()) {
      if (g.exec) cudaGraphExecDestroy(g.exec);
      if (g.plan) cudaFree(g.plan);
      if (g.partials) cudaFree(g.partials);
      graphs_.erase(capturing_key_);
      cudaGetLastError();
    }
    return st;
  }

  Result<bool> replay(uint64_t key, const std::vector<AttentionSeq>& seqs) override {
    bind();
    auto it = graphs_.find(key);
    if (it == graphs_.end() || it->second.exec == nullptr) return false;
    Graph& g = it->second;
    if (static_cast<int32_t>(seqs.size()) != g.num_items) return false;
    // Layout: {split_len, 0, 0, 0}, items [num_items] int4, block tables.
    plan_host_.assign(4 + 4 * seqs.size(), 0);
    int32_t max_ctx = 1;
    for (size_t i = 0; i < seqs.size(); ++i) {
      const AttentionSeq& sq = seqs[i];
      BATON_CHECK_MSG(sq.q_len == 1 && sq.q_start == static_cast<int32_t>(i),
                      "graph replay: decode sequences only, sequence i on row i");
      const int32_t used = (sq.context_len + g.block_size - 1) / g.block_size;
      BATON_CHECK(sq.num_blocks >= used);
      const auto off = static_cast<int32_t>(plan_host_.size() - 4 - 4 * seqs.size());
      for (int32_t b = 0; b < used; ++b) {
        BATON_CHECK(sq.block_table[b] >= 0 && sq.block_table[b] < g.cache_blocks);
        plan_host_.push_back(sq.block_table[b]);
      }
      int32_t* item = plan_host_.data() + 4 + 4 * i;
      item[0] = 0;
      item[1] = static_cast<int32_t>(i);
      item[2] = sq.context_len;
      item[3] = off;
      max_ctx = std::max(max_ctx, sq.context_len);
    }
    if (plan_host_.size() * 4 > g.plan_bytes) return false;
    const int32_t len = (max_ctx + g.num_splits - 1) / g.num_splits;
    plan_host_[0] = std::max<int32_t>(32, (len + 31) / 32 * 32);
    const size_t bytes = plan_host_.size() * 4;
    BATON_RETURN_IF_ERROR(cuda_error(cudaMemcpyAsync(g.plan, stage(plan_host_.data(), bytes), bytes,
                                                     cudaMemcpyHostToDevice, stream_),
                                     "graph plan upload"));
    plan_last_.clear();  // plan_host_ now holds a graph plan, not the eager one
    BATON_RETURN_IF_ERROR(cuda_error(cudaGraphLaunch(g.exec, stream_), "cudaGraphLaunch"));
    return true;
  }

  void kv_gather(const KvCacheView& cache, const int32_t* block_table, int32_t first_token,
                 int32_t num_tokens, Tensor& k_out, Tensor& v_out) override {
    kv_copy(cache, block_table, first_token, num_tokens, k_out, v_out, false);
  }
  void kv_scatter(KvCacheView& cache, const int32_t* block_table, int32_t first_token,
                  int32_t num_tokens, const Tensor& k_in, const Tensor& v_in) override {
    kv_copy(cache, block_table, first_token, num_tokens, k_in, v_in, true);
  }

 private:
  DType act() const { return opts_.activation_dtype; }

  // A captured decode step and the device buffers its attention reads.
  struct Graph {
    cudaGraphExec_t exec = nullptr;
    int32_t* plan = nullptr;  // header, items, block tables (see replay)
    size_t plan_bytes = 0;
    float* partials = nullptr;
    int32_t num_items = 0;
    int32_t num_splits = 1;
    int32_t block_size = 0;
    int64_t cache_blocks = 0;
  };

  // attention() while capturing: kernels that read the graph's plan buffer,
  // with the splits that the longest context the pool can hold would need.
  void attention_captured(const Tensor& q, const KvCacheView& cache,
                          const std::vector<AttentionSeq>& seqs, int32_t hq, float scale,
                          Tensor& out, int64_t cache_blocks) {
    Graph& g = *capturing_;
    const auto n = static_cast<int32_t>(seqs.size());
    for (int32_t i = 0; i < n; ++i) {
      const AttentionSeq& sq = seqs[static_cast<size_t>(i)];
      BATON_CHECK_MSG(sq.q_len == 1 && sq.q_start == i,
                      "graph capture: decode sequences only, sequence i on row i");
    }
    if (g.plan == nullptr) {  // the first layer sizes the buffers
      g.num_items = n;
      g.block_size = cache.block_size;
      g.cache_blocks = cache_blocks;
      int32_t unused = 0;
      const auto pool_tokens =
          static_cast<int32_t>(std::min<int64_t>(cache_blocks * cache.block_size, 1 << 30));
      g.num_splits = attention_splits(n, cache.num_kv_heads, pool_tokens, num_sms_, &unused);
      g.plan_bytes = 4 * (4 + 4 * static_cast<size_t>(n) +
                          static_cast<size_t>(n) * static_cast<size_t>(cache_blocks));
      const size_t pf = attention_partial_floats(n, hq, cache.head_dim, g.num_splits);
      BATON_CHECK_MSG(cudaMalloc(&g.plan, g.plan_bytes) == cudaSuccess,
                      "graph capture: out of device memory for the plan");
      if (pf > 0) {
        BATON_CHECK_MSG(cudaMalloc(&g.partials, pf * 4) == cudaSuccess,
                        "graph capture: out of device memory for split-K partials");
      }
    }
    BATON_CHECK(g.num_items == n);
    AttentionPlan plan;
    plan.items = reinterpret_cast<const int4*>(g.plan + 4);
    plan.num_items = n;
    plan.tables = g.plan + 4 + 4 * static_cast<size_t>(n);
    plan.num_splits = g.num_splits;
    plan.split_len_dev = g.plan;
    plan.partials = g.partials;
    launch_attention(q, cache, plan, hq, scale, out, stream_);
  }

  // Makes the backend's device current on the calling thread (the engine
  // thread need not be the one that made the backend).
  void bind() const {
    thread_local int current = -1;
    if (current != opts_.device) {
      cudaSetDevice(opts_.device);
      current = opts_.device;
    }
  }

  static void check_cache(const KvCacheView& c) {
    BATON_CHECK(c.block_size > 0 && c.num_kv_heads > 0 && c.head_dim > 0);
    BATON_CHECK(c.k.dtype == c.v.dtype && is_float_storage(c.k.dtype));
    BATON_CHECK(c.k.numel() == c.v.numel());
    BATON_CHECK(c.k.numel() % (static_cast<int64_t>(c.block_size) * c.num_kv_heads * c.head_dim) ==
                0);
  }

  // Copies `bytes` of host memory into the pinned ring and returns where, for
  // an asynchronous copy on the stream. Wrapping around waits for the stream,
  // so no region is rewritten while a copy from it may be pending.
  const void* stage(const void* host, size_t bytes) {
    if (bytes > opts_.staging_bytes) {
      // Larger than the ring: a synchronous copy from pageable memory instead.
      cudaStreamSynchronize(stream_);
      oversized_.resize(bytes);
      std::memcpy(oversized_.data(), host, bytes);
      return oversized_.data();
    }
    if (staging_pos_ + bytes > opts_.staging_bytes) {
      cudaStreamSynchronize(stream_);
      staging_pos_ = 0;
    }
    char* dst = static_cast<char*>(staging_) + staging_pos_;
    std::memcpy(dst, host, bytes);
    staging_pos_ += (bytes + 255) / 256 * 256;
    return dst;
  }

  void kv_copy(const KvCacheView& cache, const int32_t* block_table, int32_t first_token,
               int32_t num_tokens, const Tensor& k_dense, const Tensor& v_dense, bool to_cache) {
    bind();
    check_cache(cache);
    const int64_t row = static_cast<int64_t>(cache.num_kv_heads) * cache.head_dim;
    BATON_CHECK(first_token >= 0 && num_tokens >= 0);
    BATON_CHECK(k_dense.rows() == num_tokens && v_dense.rows() == num_tokens);
    BATON_CHECK(k_dense.cols() == row && v_dense.cols() == row);
    BATON_CHECK(is_float_storage(k_dense.dtype) && k_dense.dtype == v_dense.dtype);
    if (num_tokens == 0) return;
    const int64_t cache_blocks = cache.k.numel() / (row * cache.block_size);
    const int32_t last_block = (first_token + num_tokens - 1) / cache.block_size;
    for (int32_t b = first_token / cache.block_size; b <= last_block; ++b) {
      BATON_CHECK_MSG(block_table[b] >= 0 && block_table[b] < cache_blocks,
                      "kv_gather/kv_scatter: block id outside the cache");
    }
    const size_t bytes = static_cast<size_t>(last_block + 1) * 4;
    auto* dev = static_cast<int32_t*>(copy_table_.get(bytes, stream_));
    cudaMemcpyAsync(dev, stage(block_table, bytes), bytes, cudaMemcpyHostToDevice, stream_);
    launch_kv_copy(cache, dev, first_token, num_tokens, k_dense, v_dense, to_cache, stream_);
  }

  CudaBackendOptions opts_;
  int num_sms_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  void* cublas_ws_ = nullptr;
  void* staging_ = nullptr;
  size_t staging_pos_ = 0;
  std::vector<char> oversized_;
  GrowBuffer plan_dev_, partials_, copy_table_;
  GrowBuffer sample_in_, sample_scratch_, sample_out_;
  std::vector<SampleRowDev> sample_rows_;
  std::vector<SampleEditDev> sample_edits_;
  std::vector<char> sample_host_;
  std::vector<SampleOutDev> sample_results_;
  std::vector<int32_t> plan_host_, plan_last_;
  const int32_t* plan_dev_last_ = nullptr;
  std::vector<int4> items_, tiled_;
  std::unordered_map<uint64_t, Graph> graphs_;
  Graph* capturing_ = nullptr;
  uint64_t capturing_key_ = 0;
};

}  // namespace

Result<std::unique_ptr<Backend>> make_cuda_backend(const CudaBackendOptions& options) {
  if (options.activation_dtype != DType::kBF16 && options.activation_dtype != DType::kF32) {
    return invalid_argument("cuda backend: activations must be bf16 or f32");
  }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    cudaGetLastError();
    return unavailable("cuda backend: no CUDA device");
  }
  if (options.device < 0 || options.device >= count) {
    return invalid_argument("cuda backend: no device " + std::to_string(options.device));
  }
  cudaDeviceProp p{};
  BATON_RETURN_IF_ERROR(cuda_error(cudaGetDeviceProperties(&p, options.device), "device"));
  auto b = std::make_unique<CudaBackend>(options, p.multiProcessorCount);
  BATON_RETURN_IF_ERROR(b->init());
  return std::unique_ptr<Backend>(std::move(b));
}

StepGraphs* step_graphs(Backend& backend) {
  if (backend.capabilities().kind != DeviceKind::kCuda) return nullptr;
  return static_cast<CudaBackend*>(&backend);
}

Result<MemoryInfo> device_memory(int device) {
  BATON_RETURN_IF_ERROR(cuda_error(cudaSetDevice(device), "cudaSetDevice"));
  size_t free_b = 0, total_b = 0;
  BATON_RETURN_IF_ERROR(cuda_error(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo"));
  return MemoryInfo{free_b, total_b};
}

}  // namespace baton::kernels::cuda
