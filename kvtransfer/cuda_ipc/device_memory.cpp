#include "kvtransfer/cuda_ipc/device_memory.h"

#include <cuda_runtime_api.h>

#include <string>

#include "kvtransfer/cuda_ipc/cuda_ipc_transport.h"

namespace baton::kvtransfer {

namespace {

// Makes `device` current for the scope and restores the caller's after.
class CurrentDevice {
 public:
  explicit CurrentDevice(int device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
    status_ = cudaSetDevice(device);
  }
  ~CurrentDevice() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  cudaError_t status() const { return status_; }

 private:
  int previous_ = -1;
  cudaError_t status_ = cudaSuccess;
};

std::string describe(cudaError_t e) {
  return std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")";
}

}  // namespace

Result<std::unique_ptr<DeviceMemory>> DeviceMemory::allocate(int device, uint64_t bytes) {
  if (bytes == 0) return invalid_argument("device memory: zero bytes");
  const int devices = cuda_device_count();
  if (devices == 0) return unavailable("device memory: no CUDA device is usable");
  if (device < 0 || device >= devices) {
    return invalid_argument("device memory: device " + std::to_string(device) + " out of range (" +
                            std::to_string(devices) + " devices)");
  }
  CurrentDevice current(device);
  if (current.status() != cudaSuccess) {
    return unavailable("device memory: cudaSetDevice: " + describe(current.status()));
  }
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return resource_exhausted("device memory: " + std::to_string(bytes) + " bytes on GPU " +
                              std::to_string(device) + ": " + describe(e));
  }
  return std::unique_ptr<DeviceMemory>(new DeviceMemory(p, bytes, device));
}

DeviceMemory::~DeviceMemory() {
  CurrentDevice current(device_);
  cudaFree(data_);
}

}  // namespace baton::kvtransfer
