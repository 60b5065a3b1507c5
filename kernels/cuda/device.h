#pragma once

// GPUs as the CUDA runtime sees them, and the device-memory copy bandwidth that
// Baton's GPU benchmarks quote their figures against (measured, never taken
// from a datasheet).
//
// Every function is thread safe and returns kUnavailable when no GPU or no
// driver is present, so callers can report "no GPU" instead of failing.

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace baton::kernels::cuda {

struct GpuInfo {
  int index = 0;
  std::string name;
  int compute_major = 0;
  int compute_minor = 0;
  int multiprocessors = 0;
  uint64_t total_memory = 0;  // bytes
  uint64_t free_memory = 0;   // bytes, when queried
  int l2_bytes = 0;
};

// Every visible GPU; kUnavailable when none can be used.
Result<std::vector<GpuInfo>> list_gpus();

// Device-to-device copy bandwidth of GPU `device` over a buffer of `bytes`
// (rotated among several buffers larger than L2), counting bytes read plus
// bytes written, in bytes per second: the median of `repeats` timed copies.
Result<double> measure_copy_bandwidth(int device, uint64_t bytes, int repeats = 20);

}  // namespace baton::kernels::cuda
