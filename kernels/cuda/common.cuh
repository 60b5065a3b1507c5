#pragma once

// Device-side helpers shared by the CUDA backend's kernels: float conversion
// of every storage dtype, warp reductions, dtype dispatch and error checks.
// Included by .cu files only.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/dtype.h"
#include "common/status.h"

namespace baton::kernels::cuda {

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }

template <typename T>
__device__ __forceinline__ T from_f(float x);
template <>
__device__ __forceinline__ float from_f<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ __half from_f<__half>(float x) {
  return __float2half_rn(x);
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over a block of at most 32 warps; every thread gets the result. `red`
// is 32 floats of shared memory.
__device__ __forceinline__ float block_sum(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // red may still be read by a previous call
  if (lane == 0) red[warp] = v;
  __syncthreads();
  const int warps = (blockDim.x + 31) >> 5;
  float s = lane < warps ? red[lane] : 0.0f;
  return warp_sum(s);
}

template <typename T>
struct Tag {
  using type = T;
};

// Calls f(Tag<T>{}) with the C++ type of a float storage dtype.
template <typename F>
void dispatch_float(DType t, F&& f) {
  switch (t) {
    case DType::kF32:
      f(Tag<float>{});
      return;
    case DType::kBF16:
      f(Tag<__nv_bfloat16>{});
      return;
    case DType::kF16:
      f(Tag<__half>{});
      return;
    default:
      BATON_CHECK_MSG(false, "cuda backend: not a float dtype");
  }
}

// Activations: f32 or bf16 only.
template <typename F>
void dispatch_act(DType t, F&& f) {
  BATON_CHECK_MSG(t == DType::kF32 || t == DType::kBF16,
                  "cuda backend: activations are f32 or bf16");
  if (t == DType::kF32) {
    f(Tag<float>{});
  } else {
    f(Tag<__nv_bfloat16>{});
  }
}

inline bool is_float_storage(DType t) {
  return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16;
}

// A failed launch is a programmer error (bad configuration) or a broken
// device; neither can be handled by the op's caller.
#define BATON_CUDA_LAUNCH_CHECK()                               \
  do {                                                          \
    cudaError_t e_ = cudaGetLastError();                        \
    BATON_CHECK_MSG(e_ == cudaSuccess, cudaGetErrorString(e_)); \
  } while (0)

inline unsigned grid_for(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  if (b > 65535 * 32) b = 65535 * 32;
  return static_cast<unsigned>(b < 1 ? 1 : b);
}

}  // namespace baton::kernels::cuda
