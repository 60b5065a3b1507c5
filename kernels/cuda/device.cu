#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/device.h"

namespace baton::kernels::cuda {

namespace {

Status cuda_status(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::ok();
  return unavailable(std::string(what) + ": " + cudaGetErrorString(e));
}

// 16-byte loads and stores, grid-stride: the plain copy whose rate is the
// memory-bound ceiling every other kernel is compared with.
__global__ void copy_kernel(const uint4* __restrict__ src, uint4* __restrict__ dst, size_t n) {
  size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (; i < n; i += stride) dst[i] = src[i];
}

__global__ void fill_kernel(uint4* dst, size_t n, uint32_t seed) {
  size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (; i < n; i += stride) {
    uint32_t x = static_cast<uint32_t>(i) * 2654435761u + seed;
    dst[i] = make_uint4(x, x ^ 0x9e3779b9u, x * 3u, x + 7u);
  }
}

}  // namespace

Result<std::vector<GpuInfo>> list_gpus() {
  int count = 0;
  BATON_RETURN_IF_ERROR(cuda_status(cudaGetDeviceCount(&count), "cudaGetDeviceCount"));
  if (count == 0) return unavailable("no CUDA device");
  std::vector<GpuInfo> out;
  for (int d = 0; d < count; ++d) {
    cudaDeviceProp p{};
    BATON_RETURN_IF_ERROR(cuda_status(cudaGetDeviceProperties(&p, d), "cudaGetDeviceProperties"));
    GpuInfo g;
    g.index = d;
    g.name = p.name;
    g.compute_major = p.major;
    g.compute_minor = p.minor;
    g.multiprocessors = p.multiProcessorCount;
    g.total_memory = p.totalGlobalMem;
    g.l2_bytes = p.l2CacheSize;
    size_t free_b = 0, total_b = 0;
    if (cudaSetDevice(d) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
      g.free_memory = free_b;
    }
    out.push_back(std::move(g));
  }
  return out;
}

Result<double> measure_copy_bandwidth(int device, uint64_t bytes, int repeats) {
  if (bytes < 16 || repeats < 1) return invalid_argument("bytes: at least 16, repeats at least 1");
  BATON_RETURN_IF_ERROR(cuda_status(cudaSetDevice(device), "cudaSetDevice"));
  const size_t n = bytes / sizeof(uint4);
  constexpr int kBuffers = 4;  // rotate so no copy finds its source in L2
  uint4* buf[kBuffers] = {};
  Status st;
  for (int i = 0; i < kBuffers && st.is_ok(); ++i) {
    st = cuda_status(cudaMalloc(&buf[i], n * sizeof(uint4)), "cudaMalloc");
  }
  cudaEvent_t start = nullptr, stop = nullptr;
  std::vector<float> ms;
  if (st.is_ok()) st = cuda_status(cudaEventCreate(&start), "cudaEventCreate");
  if (st.is_ok()) st = cuda_status(cudaEventCreate(&stop), "cudaEventCreate");
  if (st.is_ok()) {
    cudaDeviceProp p{};
    cudaGetDeviceProperties(&p, device);
    const int blocks = p.multiProcessorCount * 8;
    for (int i = 0; i < kBuffers; ++i) fill_kernel<<<blocks, 256>>>(buf[i], n, 17u + i);
    st = cuda_status(cudaGetLastError(), "fill kernel");
    for (int r = -3; r < repeats && st.is_ok(); ++r) {  // 3 warm-up copies
      const uint4* src = buf[(r + 3) % kBuffers];
      uint4* dst = buf[(r + 4) % kBuffers];
      cudaEventRecord(start);
      copy_kernel<<<blocks, 256>>>(src, dst, n);
      cudaEventRecord(stop);
      st = cuda_status(cudaEventSynchronize(stop), "copy kernel");
      float t = 0;
      if (st.is_ok())
        st = cuda_status(cudaEventElapsedTime(&t, start, stop), "cudaEventElapsedTime");
      if (st.is_ok() && r >= 0) ms.push_back(t);
    }
  }
  if (start) cudaEventDestroy(start);
  if (stop) cudaEventDestroy(stop);
  for (uint4* b : buf) {
    if (b) cudaFree(b);
  }
  BATON_RETURN_IF_ERROR(st);
  std::nth_element(ms.begin(), ms.begin() + static_cast<long>(ms.size() / 2), ms.end());
  const double median_s = ms[ms.size() / 2] / 1e3;
  return 2.0 * static_cast<double>(n * sizeof(uint4)) / median_s;
}

}  // namespace baton::kernels::cuda
