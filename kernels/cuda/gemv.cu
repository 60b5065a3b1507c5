// Skinny GEMM for decode steps: out[n, m] = x[n, k] w[m, k]^T (+ bias) for
// n <= kGemvMaxRows, bf16 x and w, f32 accumulation. Such products read each
// weight once and do little arithmetic, so their speed is the rate at which
// the weights stream from memory: one warp per weight row, 16-byte loads that
// bypass L1, eight of them in flight per lane, and every x row (a few KiB, an
// L1/L2 hit) applied to each loaded chunk.

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace baton::kernels::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kUnroll = 8;

__device__ __forceinline__ uint4 load_stream(const uint4* p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
}

__device__ __forceinline__ float dot8(const uint4& a, const uint4& b) {
  const auto* x = reinterpret_cast<const __nv_bfloat162*>(&a);
  const auto* y = reinterpret_cast<const __nv_bfloat162*>(&b);
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 u = __bfloat1622float2(x[i]), v = __bfloat1622float2(y[i]);
    s = fmaf(u.x, v.x, s);
    s = fmaf(u.y, v.y, s);
  }
  return s;
}

template <int N, typename O, typename B>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_kernel(const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ w,
                const B* __restrict__ bias, O* __restrict__ out, int k, int m) {
  const int row = blockIdx.x * kWarps + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= m) return;
  const uint4* wr = reinterpret_cast<const uint4*>(w + static_cast<int64_t>(row) * k);
  const auto* xr = reinterpret_cast<const uint4*>(x);
  const int chunks = k / 8, xstride = k / 8;
  float acc[N];
#pragma unroll
  for (int i = 0; i < N; ++i) acc[i] = 0.0f;
  for (int c0 = lane; c0 < chunks; c0 += 32 * kUnroll) {
    uint4 wv[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = c0 + 32 * u;
      wv[u] = c < chunks ? load_stream(wr + c) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = c0 + 32 * u;
      if (c < chunks) {
#pragma unroll
        for (int i = 0; i < N; ++i) acc[i] += dot8(wv[u], __ldg(xr + i * xstride + c));
      }
    }
  }
#pragma unroll
  for (int i = 0; i < N; ++i) acc[i] = warp_sum(acc[i]);
  if (lane == 0) {
    const float b = bias != nullptr ? to_f(bias[row]) : 0.0f;
#pragma unroll
    for (int i = 0; i < N; ++i) out[static_cast<int64_t>(i) * m + row] = from_f<O>(acc[i] + b);
  }
}

// gemv_kernel<1> for two adjacent weight rows per warp, with both rows'
// loads in flight at once. For products whose one-row-per-warp grid needs a
// little more than one wave of resident blocks (Llama 3 8B's fused q/k/v:
// 768 blocks where 528 fit), this halves the blocks to one wave and doubles
// the bytes each warp has in flight (registers capped for three blocks per
// multiprocessor, 396 on an H100). Each row's sum runs in gemv_kernel's
// order, so the results are the same bits.
template <typename O, typename B>
__global__ void __launch_bounds__(kWarps * 32, 3)
    gemv_pair_kernel(const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ w,
                     const B* __restrict__ bias, O* __restrict__ out, int k, int m) {
  const int row = 2 * (blockIdx.x * kWarps + (threadIdx.x >> 5));
  const int lane = threadIdx.x & 31;
  if (row >= m) return;
  const bool two = row + 1 < m;
  const uint4* w0 = reinterpret_cast<const uint4*>(w + static_cast<int64_t>(row) * k);
  const uint4* w1 = two ? w0 + k / 8 : w0;
  const auto* xr = reinterpret_cast<const uint4*>(x);
  const int chunks = k / 8;
  float a0 = 0.0f, a1 = 0.0f;
  for (int c0 = lane; c0 < chunks; c0 += 32 * kUnroll) {
    uint4 v0[kUnroll], v1[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = c0 + 32 * u;
      v0[u] = c < chunks ? load_stream(w0 + c) : make_uint4(0, 0, 0, 0);
      v1[u] = c < chunks ? load_stream(w1 + c) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = c0 + 32 * u;
      if (c < chunks) {
        const uint4 xv = __ldg(xr + c);
        a0 += dot8(v0[u], xv);
        a1 += dot8(v1[u], xv);
      }
    }
  }
  a0 = warp_sum(a0);
  a1 = warp_sum(a1);
  if (lane == 0) {
    out[row] = from_f<O>(a0 + (bias != nullptr ? to_f(bias[row]) : 0.0f));
    if (two) out[row + 1] = from_f<O>(a1 + (bias != nullptr ? to_f(bias[row + 1]) : 0.0f));
  }
}

// Blocks of `kernel` (kWarps warps) resident on the whole GPU at once.
int resident_blocks(const void* kernel) {
  int device = 0, sms = 0, per_sm = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kWarps * 32, 0);
  return sms * per_sm;
}

// gemv_kernel for the rows `row` (gate) and `row + inter` (up) of w in one
// warp, and silu(gate) * up written instead of the two products.
template <int N>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_silu_mul_kernel(const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ w,
                         __nv_bfloat16* __restrict__ out, int k, int inter) {
  const int row = blockIdx.x * kWarps + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= inter) return;
  const uint4* wg = reinterpret_cast<const uint4*>(w + static_cast<int64_t>(row) * k);
  const uint4* wu = reinterpret_cast<const uint4*>(w + static_cast<int64_t>(row + inter) * k);
  const auto* xr = reinterpret_cast<const uint4*>(x);
  const int chunks = k / 8, xstride = k / 8;
  constexpr int kHalf = kUnroll / 2;  // loads in flight per row: as many as gemv_kernel's in all
  float ag[N], au[N];
#pragma unroll
  for (int i = 0; i < N; ++i) ag[i] = au[i] = 0.0f;
  for (int c0 = lane; c0 < chunks; c0 += 32 * kHalf) {
    uint4 gv[kHalf], uv[kHalf];
#pragma unroll
    for (int u = 0; u < kHalf; ++u) {
      const int c = c0 + 32 * u;
      gv[u] = c < chunks ? load_stream(wg + c) : make_uint4(0, 0, 0, 0);
      uv[u] = c < chunks ? load_stream(wu + c) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kHalf; ++u) {
      const int c = c0 + 32 * u;
      if (c < chunks) {
#pragma unroll
        for (int i = 0; i < N; ++i) {
          const uint4 xv = __ldg(xr + i * xstride + c);
          ag[i] += dot8(gv[u], xv);
          au[i] += dot8(uv[u], xv);
        }
      }
    }
  }
#pragma unroll
  for (int i = 0; i < N; ++i) {
    ag[i] = warp_sum(ag[i]);
    au[i] = warp_sum(au[i]);
  }
  if (lane == 0) {
#pragma unroll
    for (int i = 0; i < N; ++i) {
      const float g = __bfloat162float(__float2bfloat16_rn(ag[i]));
      const float u = __bfloat162float(__float2bfloat16_rn(au[i]));
      out[static_cast<int64_t>(i) * inter + row] = __float2bfloat16_rn(g / (1.0f + __expf(-g)) * u);
    }
  }
}

template <typename O, typename B>
void launch_n(int n, const Tensor& x, const Tensor& w, const B* bias, Tensor& out, cudaStream_t s) {
  const int k = static_cast<int>(x.cols()), m = static_cast<int>(w.rows());
  const unsigned grid = static_cast<unsigned>((m + kWarps - 1) / kWarps);
  const auto* xp = x.as<__nv_bfloat16>();
  const auto* wp = w.as<__nv_bfloat16>();
  O* op = out.as<O>();
  if (n == 1) {
    // Resident blocks depend on the kernel's registers and the device; both
    // are fixed for the process.
    static const int resident =
        resident_blocks(reinterpret_cast<const void*>(&gemv_kernel<1, O, B>));
    if (grid > static_cast<unsigned>(resident) && grid <= 2 * static_cast<unsigned>(resident)) {
      const unsigned pairs = static_cast<unsigned>((m + 2 * kWarps - 1) / (2 * kWarps));
      gemv_pair_kernel<O, B><<<pairs, kWarps * 32, 0, s>>>(xp, wp, bias, op, k, m);
      BATON_CUDA_LAUNCH_CHECK();
      return;
    }
  }
  switch (n) {
#define BATON_GEMV_CASE(N)                                                     \
  case N:                                                                      \
    gemv_kernel<N, O, B><<<grid, kWarps * 32, 0, s>>>(xp, wp, bias, op, k, m); \
    break;
    BATON_GEMV_CASE(1)
    BATON_GEMV_CASE(2)
    BATON_GEMV_CASE(3)
    BATON_GEMV_CASE(4)
    BATON_GEMV_CASE(5)
    BATON_GEMV_CASE(6)
    BATON_GEMV_CASE(7)
    BATON_GEMV_CASE(8)
#undef BATON_GEMV_CASE
    default:
      BATON_CHECK_MSG(false, "gemv: too many rows");
  }
  BATON_CUDA_LAUNCH_CHECK();
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

void launch_gemv_silu_mul(const Tensor& x, const Tensor& w, Tensor& out, cudaStream_t s) {
  const int n = static_cast<int>(x.rows());
  const int k = static_cast<int>(x.cols()), inter = static_cast<int>(out.cols());
  BATON_CHECK(w.rows() == 2 * static_cast<int64_t>(inter) && out.dtype == DType::kBF16);
  const unsigned grid = static_cast<unsigned>((inter + kWarps - 1) / kWarps);
  const auto* xp = x.as<__nv_bfloat16>();
  const auto* wp = w.as<__nv_bfloat16>();
  auto* op = out.as<__nv_bfloat16>();
  switch (n) {
#define BATON_GEMV_CASE(N)                                                      \
  case N:                                                                       \
    gemv_silu_mul_kernel<N><<<grid, kWarps * 32, 0, s>>>(xp, wp, op, k, inter); \
    break;
    BATON_GEMV_CASE(1)
    BATON_GEMV_CASE(2)
    BATON_GEMV_CASE(3)
    BATON_GEMV_CASE(4)
    BATON_GEMV_CASE(5)
    BATON_GEMV_CASE(6)
    BATON_GEMV_CASE(7)
    BATON_GEMV_CASE(8)
#undef BATON_GEMV_CASE
    default:
      BATON_CHECK_MSG(false, "gemv: too many rows");
  }
  BATON_CUDA_LAUNCH_CHECK();
}

bool gemv_supported(const Tensor& x, const Tensor& w, const Tensor& out) {
  return x.dtype == DType::kBF16 && w.dtype == DType::kBF16 &&
         (out.dtype == DType::kBF16 || out.dtype == DType::kF32) && x.rows() >= 1 &&
         x.rows() <= kGemvMaxRows && x.cols() % 8 == 0 && aligned16(x.data) && aligned16(w.data);
}

void launch_gemv(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out,
                 cudaStream_t s) {
  const int n = static_cast<int>(x.rows());
  auto with_out = [&](auto ot) {
    using O = typename decltype(ot)::type;
    if (bias == nullptr) {
      launch_n<O, float>(n, x, w, nullptr, out, s);
    } else if (bias->dtype == DType::kF32) {
      launch_n<O, float>(n, x, w, bias->as<float>(), out, s);
    } else {
      BATON_CHECK(bias->dtype == DType::kBF16);
      launch_n<O, __nv_bfloat16>(n, x, w, bias->as<__nv_bfloat16>(), out, s);
    }
  };
  if (out.dtype == DType::kF32) {
    with_out(Tag<float>{});
  } else {
    with_out(Tag<__nv_bfloat16>{});
  }
}

}  // namespace baton::kernels::cuda
