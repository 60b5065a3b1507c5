#include "kernels/cpu/gemm.h"

#include <algorithm>
#include <vector>

#include "common/status.h"
#include "kernels/cpu/fork_join_pool.h"
#include "kernels/cpu/vec_ops.h"

namespace baton::kernels {
namespace {

// Rows of x per task: a panel of x (64 rows of a 4096-wide f32 activation is
// 1 MiB) stays in L2 while a worker sweeps its weight columns over it.
constexpr int64_t kPanelRows = 64;
// Column bands are multiples of this, so that vector tiles stay whole.
constexpr int64_t kColumnQuantum = 16;
// Below this many multiply-adds a product runs on the calling thread: waking
// workers costs more than it saves.
constexpr int64_t kMinParallelMacs = 1 << 15;

float widen(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::kF32:
      return static_cast<const float*>(p)[i];
    case DType::kBF16:
      return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::kF16:
      return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    default:
      BATON_CHECK_MSG(false, "linear: weights must be f32, bf16 or f16");
  }
  return 0.0f;
}

// Eight independent partial sums instead of one serial chain: the chain's add
// latency, not memory, would otherwise bound the portable path, and the
// compiler can map the lanes onto whatever vector registers the baseline has.
float dot8(const float* x, const float* w, int64_t k) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    for (int j = 0; j < 8; ++j) s[j] += x[i + j] * w[i + j];
  }
  for (; i < k; ++i) s[0] += x[i] * w[i];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

}  // namespace

void linear_tile_scalar(const LinearArgs& a, int64_t row_begin, int64_t row_end, int64_t col_begin,
                        int64_t col_end) {
  // Widen one weight row at a time so the inner loop is a plain f32 dot
  // product that the compiler can keep in registers.
  std::vector<float> wrow(static_cast<size_t>(a.k));
  for (int64_t c = col_begin; c < col_end; ++c) {
    const char* wp =
        static_cast<const char*>(a.w) + static_cast<size_t>(c * a.k) * dtype_size(a.w_dtype);
    vec_ops_scalar().to_f32(wp, a.w_dtype, wrow.data(), a.k);
    const float b = a.bias ? widen(a.bias, a.bias_dtype, c) : 0.0f;
    for (int64_t r = row_begin; r < row_end; ++r) {
      a.out[r * a.m + c] = dot8(a.x + r * a.k, wrow.data(), a.k) + b;
    }
  }
}

LinearTileFn linear_tile_fn(Isa isa) {
  BATON_CHECK_MSG(isa_supported(isa), "linear: instruction set not supported by this CPU");
  switch (isa) {
    case Isa::kScalar:
      return &linear_tile_scalar;
    case Isa::kAvx2:
      return &linear_tile_avx2;
    case Isa::kAvx512:
      return &linear_tile_avx512;
  }
  return &linear_tile_scalar;
}

void linear(ForkJoinPool& pool, Isa isa, const LinearArgs& a) {
  BATON_CHECK(a.n >= 0 && a.k >= 0 && a.m >= 0);
  if (a.n == 0 || a.m == 0) return;
  const LinearTileFn fn = linear_tile_fn(isa);
  const int64_t macs = a.n * a.m * a.k;
  if (pool.size() == 1 || macs < kMinParallelMacs) {
    fn(a, 0, a.n, 0, a.m);
    return;
  }
  const int64_t panel = std::min(a.n, kPanelRows);
  const int64_t row_tasks = (a.n + panel - 1) / panel;
  // About four tasks per thread in all, so a worker slowed down by another
  // process on its core does not hold the whole op back.
  const int64_t want = static_cast<int64_t>(pool.size()) * 4;
  const int64_t col_tasks_wanted = std::max<int64_t>(1, (want + row_tasks - 1) / row_tasks);
  int64_t band = (a.m + col_tasks_wanted - 1) / col_tasks_wanted;
  band = (band + kColumnQuantum - 1) / kColumnQuantum * kColumnQuantum;
  const int64_t col_tasks = (a.m + band - 1) / band;
  pool.run(row_tasks * col_tasks, [&](int64_t t, int) {
    const int64_t rt = t / col_tasks;
    const int64_t ct = t % col_tasks;
    const int64_t r0 = rt * panel;
    const int64_t c0 = ct * band;
    fn(a, r0, std::min(a.n, r0 + panel), c0, std::min(a.m, c0 + band));
  });
}

#if !BATON_HAVE_X86_KERNELS
void linear_tile_avx2(const LinearArgs& a, int64_t rb, int64_t re, int64_t cb, int64_t ce) {
  linear_tile_scalar(a, rb, re, cb, ce);
}
void linear_tile_avx512(const LinearArgs& a, int64_t rb, int64_t re, int64_t cb, int64_t ce) {
  linear_tile_scalar(a, rb, re, cb, ce);
}
#endif

}  // namespace baton::kernels
