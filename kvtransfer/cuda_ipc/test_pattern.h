#pragma once

// Deterministic test bytes shared by the cuda-ipc tests, their peer program
// and the GPU transfer benchmark: byte i of pattern `seed` is a function of
// (seed, i), so each side can produce or check the bytes on its own.

#include <cstdint>
#include <vector>

namespace baton::kvtransfer::cuda_ipc {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

inline std::vector<uint8_t> pattern(uint64_t seed, uint64_t bytes) {
  std::vector<uint8_t> out(bytes);
  for (uint64_t i = 0; i < bytes; i += 8) {
    const uint64_t w = splitmix64(seed * 0x100000001b3ULL + i / 8);
    for (uint64_t k = 0; k < 8 && i + k < bytes; ++k)
      out[i + k] = static_cast<uint8_t>(w >> (8 * k));
  }
  return out;
}

}  // namespace baton::kvtransfer::cuda_ipc
