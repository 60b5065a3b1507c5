#pragma once

// A checksum of device memory computed on the GPU, so that both ends of a
// device-to-device transfer can verify it without copying the bytes to the
// host. Not the TCP wire checksum (wire.h): a different function, meant to
// run at memory bandwidth on thousands of threads.
//
// Definition (the host reference below computes the same value): the bytes
// are read as little-endian 64-bit words w_i (the tail zero-padded);
//   A = sum w_i,  B = sum w_i * (2i + 1)   (mod 2^64)
// and the result mixes A, B and the length. Any change to one word changes A;
// swapped words change B. An integrity guard against software and transport
// bugs, not a cryptographic hash.

#include <cuda_runtime_api.h>

#include <cstdint>

namespace baton::kvtransfer::cuda_ipc {

// Adds the (A, B) pair of [data, data + bytes) into acc[0..1] on `stream`,
// the first word counting as word `first_word` of the whole (so that the
// pieces of a buffer, summed one by one in any order, give the checksum of
// the whole); acc must be zeroed before the first piece (cudaMemsetAsync).
// data may have any alignment; 16-byte aligned data runs at full speed.
cudaError_t launch_checksum(const void* data, uint64_t bytes, uint64_t first_word,
                            unsigned long long* acc, cudaStream_t stream);

// Copies [src, src + bytes) to dst with the SMs (16-byte loads and stores,
// several in flight per thread) on `stream`. Both pointers must be 16-byte
// aligned and dst writable from this device (its own memory or a peer's with
// peer access on). Over NVLink, stores issued by the SMs can outrun a copy
// engine.
cudaError_t launch_copy(void* dst, const void* src, uint64_t bytes, cudaStream_t stream);

// The final checksum from the accumulated pair.
uint64_t finish_checksum(uint64_t a, uint64_t b, uint64_t bytes);

// The same checksum computed on the host over host memory (tests, tools).
uint64_t host_checksum(const void* data, uint64_t bytes);

}  // namespace baton::kvtransfer::cuda_ipc
