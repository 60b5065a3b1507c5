#pragma once

// DeviceMemory: one cudaMalloc allocation on one GPU, freed with the object.
// What a server registers with CudaIpcTransport as its KV staging area:
// register_memory needs cudaMalloc memory (an IPC handle names a whole
// allocation), which an asynchronous pool or a VMM allocation is not.
//
// Thread-safety: allocate() from any thread (it leaves the calling thread's
// current device as it found it); the object is a plain owner.

#include <cstdint>
#include <memory>

#include "common/status.h"

namespace baton::kvtransfer {

class DeviceMemory {
 public:
  // kInvalidArgument for a bad device or zero bytes, kResourceExhausted when
  // the GPU has no room, kUnavailable without a usable GPU.
  static Result<std::unique_ptr<DeviceMemory>> allocate(int device, uint64_t bytes);
  ~DeviceMemory();
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;

  void* data() const { return data_; }
  uint64_t bytes() const { return bytes_; }
  int device() const { return device_; }

 private:
  DeviceMemory(void* data, uint64_t bytes, int device)
      : data_(data), bytes_(bytes), device_(device) {}
  void* data_;
  uint64_t bytes_;
  int device_;
};

}  // namespace baton::kvtransfer
