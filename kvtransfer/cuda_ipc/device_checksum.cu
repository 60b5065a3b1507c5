#include <cstring>

#include "kvtransfer/cuda_ipc/device_checksum.h"

namespace baton::kvtransfer::cuda_ipc {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ uint64_t load_word_bytes(const uint8_t* p, uint64_t avail) {
  uint64_t w = 0;
  const uint64_t n = avail < 8 ? avail : 8;
  for (uint64_t k = 0; k < n; ++k) w |= static_cast<uint64_t>(p[k]) << (8 * k);
  return w;
}

__device__ __forceinline__ void reduce_and_add(uint64_t a, uint64_t b, unsigned long long* acc) {
  for (int off = 16; off > 0; off >>= 1) {
    a += __shfl_down_sync(0xffffffffu, a, off);
    b += __shfl_down_sync(0xffffffffu, b, off);
  }
  __shared__ uint64_t sa[kThreads / 32];
  __shared__ uint64_t sb[kThreads / 32];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  if (lane == 0) {
    sa[warp] = a;
    sb[warp] = b;
  }
  __syncthreads();
  if (warp == 0) {
    a = lane < kThreads / 32 ? sa[lane] : 0;
    b = lane < kThreads / 32 ? sb[lane] : 0;
    for (int off = 16; off > 0; off >>= 1) {
      a += __shfl_down_sync(0xffffffffu, a, off);
      b += __shfl_down_sync(0xffffffffu, b, off);
    }
    if (lane == 0 && (a != 0 || b != 0)) {
      atomicAdd(acc, static_cast<unsigned long long>(a));
      atomicAdd(acc + 1, static_cast<unsigned long long>(b));
    }
  }
}

// 16-byte aligned data: each thread reads whole 16-byte vectors (words 2v and
// 2v + 1), four in flight per iteration; the leftover words are read byte by
// byte by the first threads.
__global__ void checksum_aligned(const ulonglong2* __restrict__ data, uint64_t vecs,
                                 const uint8_t* tail, uint64_t tail_bytes, uint64_t w0,
                                 unsigned long long* acc) {
  uint64_t a = 0, b = 0;
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  uint64_t v = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; v + 3 * stride < vecs; v += 4 * stride) {
    ulonglong2 x[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) x[k] = __ldg(data + v + k * stride);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const uint64_t i = w0 + 2 * (v + k * stride);
      a += x[k].x + x[k].y;
      b += x[k].x * (2 * i + 1) + x[k].y * (2 * i + 3);
    }
  }
  for (; v < vecs; v += stride) {
    const ulonglong2 x = __ldg(data + v);
    const uint64_t i = w0 + 2 * v;
    a += x.x + x.y;
    b += x.x * (2 * i + 1) + x.y * (2 * i + 3);
  }
  if (blockIdx.x == 0 && threadIdx.x < 2) {
    const uint64_t off = 8 * threadIdx.x;
    if (off < tail_bytes) {
      const uint64_t w = load_word_bytes(tail + off, tail_bytes - off);
      const uint64_t i = w0 + 2 * vecs + threadIdx.x;
      a += w;
      b += w * (2 * i + 1);
    }
  }
  reduce_and_add(a, b, acc);
}

// Any alignment: words assembled from bytes. Slower, for odd offsets only.
__global__ void checksum_unaligned(const uint8_t* __restrict__ data, uint64_t bytes, uint64_t w0,
                                   unsigned long long* acc) {
  uint64_t a = 0, b = 0;
  const uint64_t words = (bytes + 7) / 8;
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t i = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < words;
       i += stride) {
    const uint64_t w = load_word_bytes(data + 8 * i, bytes - 8 * i);
    a += w;
    b += w * (2 * (w0 + i) + 1);
  }
  reduce_and_add(a, b, acc);
}

__global__ void copy_vectors(const ulonglong2* __restrict__ src, ulonglong2* __restrict__ dst,
                             uint64_t vecs, const uint8_t* tail_src, uint8_t* tail_dst,
                             uint64_t tail_bytes) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  uint64_t v = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; v + 3 * stride < vecs; v += 4 * stride) {
    ulonglong2 x[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) x[k] = __ldg(src + v + k * stride);
#pragma unroll
    for (int k = 0; k < 4; ++k) dst[v + k * stride] = x[k];
  }
  for (; v < vecs; v += stride) dst[v] = __ldg(src + v);
  if (blockIdx.x == 0 && threadIdx.x < tail_bytes) tail_dst[threadIdx.x] = tail_src[threadIdx.x];
}

uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

int max_blocks(cudaStream_t stream) {
  int device = 0;
  int sms = 132;
  if (cudaGetDevice(&device) == cudaSuccess) {
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  }
  return sms * 8;
}

}  // namespace

cudaError_t launch_checksum(const void* data, uint64_t bytes, uint64_t first_word,
                            unsigned long long* acc, cudaStream_t stream) {
  if (bytes == 0) return cudaSuccess;
  const auto* p = static_cast<const uint8_t*>(data);
  const uint64_t limit = static_cast<uint64_t>(max_blocks(stream));
  if (reinterpret_cast<uintptr_t>(p) % 16 == 0) {
    const uint64_t vecs = bytes / 16;
    const uint64_t blocks = std::min<uint64_t>(
        limit, std::max<uint64_t>(1, (vecs + kThreads * 4 - 1) / (kThreads * 4)));
    checksum_aligned<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        reinterpret_cast<const ulonglong2*>(p), vecs, p + 16 * vecs, bytes - 16 * vecs, first_word,
        acc);
  } else {
    const uint64_t words = (bytes + 7) / 8;
    const uint64_t blocks =
        std::min<uint64_t>(limit, std::max<uint64_t>(1, (words + kThreads - 1) / kThreads));
    checksum_unaligned<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p, bytes, first_word,
                                                                               acc);
  }
  return cudaGetLastError();
}

cudaError_t launch_copy(void* dst, const void* src, uint64_t bytes, cudaStream_t stream) {
  if (bytes == 0) return cudaSuccess;
  const uint64_t vecs = bytes / 16;
  const uint64_t limit = static_cast<uint64_t>(max_blocks(stream));
  const uint64_t blocks =
      std::min<uint64_t>(limit, std::max<uint64_t>(1, (vecs + kThreads * 4 - 1) / (kThreads * 4)));
  const auto* s = static_cast<const uint8_t*>(src);
  auto* d = static_cast<uint8_t*>(dst);
  copy_vectors<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      reinterpret_cast<const ulonglong2*>(s), reinterpret_cast<ulonglong2*>(d), vecs, s + 16 * vecs,
      d + 16 * vecs, bytes - 16 * vecs);
  return cudaGetLastError();
}

uint64_t finish_checksum(uint64_t a, uint64_t b, uint64_t bytes) {
  uint64_t h = mix64(bytes ^ 0x9e3779b97f4a7c15ULL);
  h = mix64(h ^ a) + 1;
  h = mix64(h ^ b);
  return h;
}

uint64_t host_checksum(const void* data, uint64_t bytes) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t a = 0, b = 0;
  for (uint64_t i = 0; 8 * i < bytes; ++i) {
    uint64_t w = 0;
    const uint64_t n = std::min<uint64_t>(8, bytes - 8 * i);
    for (uint64_t k = 0; k < n; ++k) w |= static_cast<uint64_t>(p[8 * i + k]) << (8 * k);
    a += w;
    b += w * (2 * i + 1);
  }
  return finish_checksum(a, b, bytes);
}

}  // namespace baton::kvtransfer::cuda_ipc
