#include "kernels/cpu/cpu_backend.h"

#include <cstdlib>
#include <cstring>
#include <thread>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/gemm.h"

namespace baton::kernels {
namespace {

// A cache line, and the widest vector (AVX-512) load.
constexpr size_t kAlignment = 64;

void release_aligned(void* p, size_t) { std::free(p); }

int resolve_threads(int threads) {
  if (threads > 0) return threads;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

bool is_float_storage(DType t) { return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16; }

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) {
  return std::make_unique<CpuBackend>(threads, best_isa());
}

std::unique_ptr<Backend> make_cpu_backend_with_isa(int threads, Isa isa) {
  return std::make_unique<CpuBackend>(threads, isa);
}

CpuBackend::CpuBackend(int threads, Isa isa)
    : isa_(isa), ops_(vec_ops(isa)), pool_(resolve_threads(threads)) {}

Capabilities CpuBackend::capabilities() const {
  Capabilities c;
  c.kind = DeviceKind::kCpu;
  c.activation_dtype = DType::kF32;
  c.threads = pool_.size();
  return c;
}

Result<DeviceBuffer> CpuBackend::allocate(size_t bytes) {
  // aligned_alloc wants a multiple of the alignment; zero-byte buffers still
  // get a distinct pointer so that views of them are well-formed.
  const size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  void* p = std::aligned_alloc(kAlignment, rounded == 0 ? kAlignment : rounded);
  if (p == nullptr) {
    return resource_exhausted("cpu backend: cannot allocate " + std::to_string(bytes) + " bytes");
  }
  return DeviceBuffer(p, bytes, &release_aligned);
}

Status CpuBackend::upload(const void* host, size_t bytes, void* device) {
  if (bytes != 0) std::memcpy(device, host, bytes);
  return Status::ok();
}

Status CpuBackend::download(const void* device, size_t bytes, void* host) {
  if (bytes != 0) std::memcpy(host, device, bytes);
  return Status::ok();
}

Status CpuBackend::copy(const void* src, size_t bytes, void* dst) {
  if (bytes != 0) std::memmove(dst, src, bytes);
  return Status::ok();
}

void CpuBackend::linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out) {
  BATON_CHECK(x.dtype == DType::kF32 && out.dtype == DType::kF32);
  BATON_CHECK_MSG(is_float_storage(w.dtype), "linear: weights must be f32, bf16 or f16");
  BATON_CHECK(w.ndim == 2 && x.cols() == w.cols());
  BATON_CHECK(out.rows() == x.rows() && out.cols() == w.rows());
  LinearArgs a;
  a.x = x.as<float>();
  a.w = w.data;
  a.w_dtype = w.dtype;
  if (bias != nullptr) {
    BATON_CHECK(is_float_storage(bias->dtype) && bias->numel() == w.rows());
    a.bias = bias->data;
    a.bias_dtype = bias->dtype;
  }
  a.out = out.as<float>();
  a.n = x.rows();
  a.k = x.cols();
  a.m = w.rows();
  kernels::linear(pool_, isa_, a);
}

void CpuBackend::attention(const Tensor& q, const KvCacheView& cache,
                           const std::vector<AttentionSeq>& seqs, int32_t num_q_heads, float scale,
                           Tensor& out) {
  paged_attention(pool_, ops_, q, cache, seqs, num_q_heads, scale, out);
}

Status CpuBackend::sample(const Tensor& logits, std::span<const SampleRow> rows,
                          std::span<SampleOutput> out) {
  BATON_CHECK(logits.dtype == DType::kF32 && logits.ndim == 2);
  BATON_CHECK(out.size() == rows.size());
  const auto vocab = static_cast<size_t>(logits.cols());
  for (size_t i = 0; i < rows.size(); ++i) {
    BATON_CHECK(rows[i].logits_row >= 0 && rows[i].logits_row < logits.rows());
    const float* row = logits.as<float>() + static_cast<size_t>(rows[i].logits_row) * vocab;
    out[i] = sampler_.sample(std::span<const float>(row, vocab), rows[i]);
  }
  return Status::ok();
}

const float* CpuBackend::as_f32(const Tensor& t, std::vector<float>& tmp) const {
  if (t.dtype == DType::kF32) return t.as<float>();
  tmp.resize(static_cast<size_t>(t.numel()));
  ops_.to_f32(t.data, t.dtype, tmp.data(), t.numel());
  return tmp.data();
}

int64_t CpuBackend::row_grain(int64_t cols) {
  // ~16K elements per task: a few microseconds, well above the cost of
  // claiming a task, small enough to spread a decode step's rows.
  constexpr int64_t kGrainElems = 16 * 1024;
  return cols >= kGrainElems ? 1 : kGrainElems / (cols > 0 ? cols : 1);
}

}  // namespace baton::kernels
