// The CUDA backend's row-wise and data-movement kernels: embedding, RMSNorm
// (with the fused residual add), bias, RoPE, SiLU-and-multiply, row gathers
// and the paged KV cache writes and copies. All arithmetic is in f32; storage
// is whatever dtype each tensor has.

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace baton::kernels::cuda {
namespace {

constexpr int kThreads = 256;

template <typename TT, typename T>
__global__ void embedding_kernel(const TT* __restrict__ table, const int32_t* __restrict__ ids,
                                 T* __restrict__ out, int64_t d) {
  const int64_t r = blockIdx.x;
  const TT* src = table + static_cast<int64_t>(ids[r]) * d;
  T* dst = out + r * d;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) dst[j] = from_f<T>(to_f(src[j]));
}

// One block per row. With a residual, residual = residual + x is stored
// first and the stored (rounded) value is what gets normalised, so the norm
// sees exactly the residual stream the next layer adds to.
template <typename T, typename W, bool kAdd>
__global__ void rms_norm_kernel(T* __restrict__ residual, const T* __restrict__ x,
                                const W* __restrict__ w, float eps, T* __restrict__ out,
                                int64_t d) {
  __shared__ float red[32];
  const int64_t r = blockIdx.x;
  const T* xr = x + r * d;
  T* res = kAdd ? residual + r * d : nullptr;
  float ss = 0.0f;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
    float v = to_f(xr[j]);
    if constexpr (kAdd) {
      const T s = from_f<T>(to_f(res[j]) + v);
      res[j] = s;
      v = to_f(s);
    }
    ss += v * v;
  }
  ss = block_sum(ss, red);
  const float inv = rsqrtf(ss / static_cast<float>(d) + eps);
  const T* src = kAdd ? res : xr;
  T* o = out + r * d;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
    o[j] = from_f<T>(to_f(src[j]) * inv * to_f(w[j]));
  }
}

template <typename T, typename B>
__global__ void bias_add_kernel(T* __restrict__ out, const B* __restrict__ bias, int64_t rows,
                                int64_t cols) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = from_f<T>(to_f(out[i]) + to_f(bias[i % cols]));
  }
}

// One thread per (token, head, pair j < half) over q's heads then k's.
template <typename T>
__global__ void rope_kernel(T* __restrict__ q, T* __restrict__ k, const int32_t* __restrict__ pos,
                            const float* __restrict__ cos_t, const float* __restrict__ sin_t,
                            int64_t n, int32_t hq, int32_t hk, int32_t head_dim, int32_t half) {
  const int64_t per_token = static_cast<int64_t>(hq + hk) * half;
  const int64_t total = n * per_token;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / per_token;
    const int32_t rem = static_cast<int32_t>(i - t * per_token);
    const int32_t h = rem / half, j = rem - h * half;
    T* x = h < hq ? q + (t * hq + h) * head_dim : k + (t * hk + (h - hq)) * head_dim;
    const float c = cos_t[static_cast<int64_t>(pos[t]) * half + j];
    const float s = sin_t[static_cast<int64_t>(pos[t]) * half + j];
    const float x1 = to_f(x[j]), x2 = to_f(x[j + half]);
    x[j] = from_f<T>(x1 * c - x2 * s);
    x[j + half] = from_f<T>(x2 * c + x1 * s);
  }
}

// rope_kernel's rotation, plus the rotated K and the V of each token written
// to its slot as kv_append_kernel would: indices [0, n (hq + hk) half) rotate,
// the next n * row copy V.
template <typename T, typename C>
__global__ void rope_kv_append_kernel(T* __restrict__ q, T* __restrict__ k, const T* __restrict__ v,
                                      const int32_t* __restrict__ pos,
                                      const int32_t* __restrict__ slots,
                                      const float* __restrict__ cos_t,
                                      const float* __restrict__ sin_t, C* __restrict__ kc,
                                      C* __restrict__ vc, int64_t n, int32_t hq, int32_t hk,
                                      int32_t head_dim, int32_t half) {
  const int64_t per_token = static_cast<int64_t>(hq + hk) * half;
  const int64_t rot = n * per_token;
  const int64_t row = static_cast<int64_t>(hk) * head_dim;
  const int64_t total = rot + n * row;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (i >= rot) {
      const int64_t r = i - rot, t = r / row, e = r - t * row;
      const int32_t slot = slots[t];
      if (slot >= 0) vc[static_cast<int64_t>(slot) * row + e] = from_f<C>(to_f(v[r]));
      continue;
    }
    const int64_t t = i / per_token;
    const int32_t rem = static_cast<int32_t>(i - t * per_token);
    const int32_t h = rem / half, j = rem - h * half;
    T* x = h < hq ? q + (t * hq + h) * head_dim : k + (t * hk + (h - hq)) * head_dim;
    const float c = cos_t[static_cast<int64_t>(pos[t]) * half + j];
    const float s = sin_t[static_cast<int64_t>(pos[t]) * half + j];
    const float x1 = to_f(x[j]), x2 = to_f(x[j + half]);
    const T y1 = from_f<T>(x1 * c - x2 * s), y2 = from_f<T>(x2 * c + x1 * s);
    x[j] = y1;
    x[j + half] = y2;
    if (h >= hq) {
      const int32_t slot = slots[t];
      if (slot >= 0) {
        C* dst = kc + static_cast<int64_t>(slot) * row + static_cast<int64_t>(h - hq) * head_dim;
        dst[j] = from_f<C>(to_f(y1));
        dst[j + half] = from_f<C>(to_f(y2));
      }
    }
  }
}

template <typename T>
__global__ void silu_mul_kernel(const T* __restrict__ gu, T* __restrict__ out, int64_t rows,
                                int64_t inter) {
  const int64_t n = rows * inter;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / inter, c = i - r * inter;
    const float g = to_f(gu[r * 2 * inter + c]);
    const float u = to_f(gu[r * 2 * inter + inter + c]);
    out[i] = from_f<T>(g / (1.0f + __expf(-g)) * u);
  }
}

__global__ void gather_rows_kernel(const uint16_t* __restrict__ x, const int32_t* __restrict__ rows,
                                   uint16_t* __restrict__ out, int64_t words) {
  const int64_t r = blockIdx.x;
  const uint16_t* src = x + static_cast<int64_t>(rows[r]) * words;
  uint16_t* dst = out + r * words;
  for (int64_t j = threadIdx.x; j < words; j += blockDim.x) dst[j] = src[j];
}

template <typename S, typename C>
__global__ void kv_append_kernel(const S* __restrict__ k, const S* __restrict__ v,
                                 const int32_t* __restrict__ slots, C* __restrict__ kc,
                                 C* __restrict__ vc, int64_t n, int64_t row) {
  const int64_t total = n * row;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / row, e = i - t * row;
    const int32_t slot = slots[t];
    if (slot < 0) continue;  // padding token
    kc[static_cast<int64_t>(slot) * row + e] = from_f<C>(to_f(k[i]));
    vc[static_cast<int64_t>(slot) * row + e] = from_f<C>(to_f(v[i]));
  }
}

template <typename D, typename C, bool kToCache>
__global__ void kv_copy_kernel(C* __restrict__ kc, C* __restrict__ vc, D* __restrict__ kd,
                               D* __restrict__ vd, const int32_t* __restrict__ table, int32_t first,
                               int64_t n, int64_t row, int32_t bs) {
  const int64_t total = n * row;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t tok = i / row, e = i - tok * row;
    const int64_t t = first + tok;
    const int64_t slot = static_cast<int64_t>(table[t / bs]) * bs + t % bs;
    if constexpr (kToCache) {
      kc[slot * row + e] = from_f<C>(to_f(kd[i]));
      vc[slot * row + e] = from_f<C>(to_f(vd[i]));
    } else {
      kd[i] = from_f<D>(to_f(kc[slot * row + e]));
      vd[i] = from_f<D>(to_f(vc[slot * row + e]));
    }
  }
}

int row_threads(int64_t d) {
  if (d >= 4096) return 1024;
  if (d >= 1024) return 512;
  return d >= 256 ? 256 : 128;
}

}  // namespace

void launch_embedding(const Tensor& table, const Tensor& ids, Tensor& out, cudaStream_t s) {
  if (ids.numel() == 0) return;
  dispatch_float(table.dtype, [&](auto tt) {
    using TT = typename decltype(tt)::type;
    dispatch_act(out.dtype, [&](auto ot) {
      using T = typename decltype(ot)::type;
      embedding_kernel<TT, T>
          <<<static_cast<unsigned>(ids.numel()), row_threads(table.cols()), 0, s>>>(
              table.as<TT>(), ids.as<int32_t>(), out.as<T>(), table.cols());
    });
  });
  BATON_CUDA_LAUNCH_CHECK();
}

void launch_rms_norm(Tensor* residual, const Tensor& x, const Tensor& w, float eps, Tensor& out,
                     cudaStream_t s) {
  if (x.rows() == 0) return;
  const int64_t d = x.cols();
  dispatch_act(x.dtype, [&](auto xt) {
    using T = typename decltype(xt)::type;
    dispatch_float(w.dtype, [&](auto wt) {
      using W = typename decltype(wt)::type;
      const auto grid = static_cast<unsigned>(x.rows());
      if (residual != nullptr) {
        rms_norm_kernel<T, W, true><<<grid, row_threads(d), 0, s>>>(residual->as<T>(), x.as<T>(),
                                                                    w.as<W>(), eps, out.as<T>(), d);
      } else {
        rms_norm_kernel<T, W, false>
            <<<grid, row_threads(d), 0, s>>>(nullptr, x.as<T>(), w.as<W>(), eps, out.as<T>(), d);
      }
    });
  });
  BATON_CUDA_LAUNCH_CHECK();
}

void launch_bias_add(Tensor& out, const Tensor& bias, cudaStream_t s) {
  if (out.numel() == 0) return;
  dispatch_act(out.dtype, [&](auto ot) {
    using T = typename decltype(ot)::type;
    dispatch_float(bias.dtype, [&](auto bt) {
      using B = typename decltype(bt)::type;
      bias_add_kernel<T, B><<<grid_for(out.numel(), kThreads), kThreads, 0, s>>>(
          out.as<T>(), bias.as<B>(), out.rows(), out.cols());
    });
  });
  BATON_CUDA_LAUNCH_CHECK();
}

void launch_rope(Tensor& q, Tensor& k, const Tensor& positions, int32_t head_dim,
                 const RopeTable& table, cudaStream_t s) {
  const int64_t n = q.rows();
  if (n == 0) return;
  const bool has_k = k.data != nullptr && k.numel() > 0;
  const auto hq = static_cast<int32_t>(q.cols() / head_dim);
  const auto hk = has_k ? static_cast<int32_t>(k.cols() / head_dim) : 0;
  const int32_t half = table.rotary_dim / 2;
  dispatch_act(q.dtype, [&](auto qt) {
    using T = typename decltype(qt)::type;
    rope_kernel<T><<<grid_for(n * (hq + hk) * half, kThreads), kThreads, 0, s>>>(
        q.as<T>(), has_k ? k.as<T>() : nullptr, positions.as<int32_t>(), table.cos.as<float>(),
        table.sin.as<float>(), n, hq, hk, head_dim, half);
  });
  BATON_CUDA_LAUNCH_CHECK();
}

void launch_rope_kv_append(Tensor& q, Tensor& k, const Tensor& v, const Tensor& positions,
                           const Tensor& slots, int32_t head_dim, const RopeTable& table,
                           KvCacheView& cache, cudaStream_t s) {
  const int64_t n = q.rows();
  if (n == 0) return;
  const auto hq = static_cast<int32_t>(q.cols() / head_dim);
  const auto hk = static_cast<int32_t>(k.cols() / head_dim);
  const int32_t half = table.rotary_dim / 2;
  dispatch_act(q.dtype, [&](auto qt) {
    using T = typename decltype(qt)::type;
    dispatch_float(cache.k.dtype, [&](auto ct) {
      using C = typename decltype(ct)::type;
      const int64_t total = n * ((hq + hk) * half + static_cast<int64_t>(hk) * head_dim);
      rope_kv_append_kernel<T, C><<<grid_for(total, kThreads), kThreads, 0, s>>>(
          q.as<T>(), k.as<T>(), v.as<T>(), positions.as<int32_t>(), slots.as<int32_t>(),
          table.cos.as<float>(), table.sin.as<float>(), cache.k.as<C>(), cache.v.as<C>(), n, hq, hk,
          head_dim, half);
    });
  });
  BATON_CUDA_LAUNCH_CHECK();
}

void launch_silu_mul(const Tensor& gate_up, Tensor& out, cudaStream_t s) {
  if (out.numel() == 0) return;
  dispatch_act(out.dtype, [&](auto ot) {
    using T = typename decltype(ot)::type;
    silu_mul_kernel<T><<<grid_for(out.numel(), kThreads), kThreads, 0, s>>>(
        gate_up.as<T>(), out.as<T>(), out.rows(), out.cols());
  });
  BATON_CUDA_LAUNCH_CHECK();
}

void launch_gather_rows(const Tensor& x, const Tensor& rows, Tensor& out, cudaStream_t s) {
  if (rows.numel() == 0) return;
  const size_t row_bytes = static_cast<size_t>(x.cols()) * dtype_size(x.dtype);
  BATON_CHECK(row_bytes % 2 == 0);
  const auto words = static_cast<int64_t>(row_bytes / 2);
  gather_rows_kernel<<<static_cast<unsigned>(rows.numel()), row_threads(words), 0, s>>>(
      static_cast<const uint16_t*>(x.data), rows.as<int32_t>(), static_cast<uint16_t*>(out.data),
      words);
  BATON_CUDA_LAUNCH_CHECK();
}

void launch_kv_append(const Tensor& k, const Tensor& v, const Tensor& slots, KvCacheView& cache,
                      cudaStream_t s) {
  const int64_t n = k.rows();
  if (n == 0) return;
  const int64_t row = static_cast<int64_t>(cache.num_kv_heads) * cache.head_dim;
  dispatch_float(k.dtype, [&](auto st) {
    using S = typename decltype(st)::type;
    dispatch_float(cache.k.dtype, [&](auto ct) {
      using C = typename decltype(ct)::type;
      kv_append_kernel<S, C><<<grid_for(n * row, kThreads), kThreads, 0, s>>>(
          k.as<S>(), v.as<S>(), slots.as<int32_t>(), cache.k.as<C>(), cache.v.as<C>(), n, row);
    });
  });
  BATON_CUDA_LAUNCH_CHECK();
}

void launch_kv_copy(const KvCacheView& cache, const int32_t* device_table, int32_t first_token,
                    int32_t num_tokens, const Tensor& k_dense, const Tensor& v_dense, bool to_cache,
                    cudaStream_t s) {
  if (num_tokens == 0) return;
  const int64_t row = static_cast<int64_t>(cache.num_kv_heads) * cache.head_dim;
  dispatch_float(k_dense.dtype, [&](auto dt) {
    using D = typename decltype(dt)::type;
    dispatch_float(cache.k.dtype, [&](auto ct) {
      using C = typename decltype(ct)::type;
      const unsigned grid = grid_for(num_tokens * row, kThreads);
      if (to_cache) {
        kv_copy_kernel<D, C, true><<<grid, kThreads, 0, s>>>(
            cache.k.as<C>(), cache.v.as<C>(), k_dense.as<D>(), v_dense.as<D>(), device_table,
            first_token, num_tokens, row, cache.block_size);
      } else {
        kv_copy_kernel<D, C, false><<<grid, kThreads, 0, s>>>(
            cache.k.as<C>(), cache.v.as<C>(), k_dense.as<D>(), v_dense.as<D>(), device_table,
            first_token, num_tokens, row, cache.block_size);
      }
    });
  });
  BATON_CUDA_LAUNCH_CHECK();
}

}  // namespace baton::kernels::cuda
