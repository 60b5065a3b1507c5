#pragma once

// The control frames of CudaIpcTransport (see cuda_ipc_transport.h for the
// exchange). Public so that tests can speak it from a raw socket.
//
// Every frame is kFrameBytes long, little-endian:
//   u32 magic "BKC1" | u16 version | u16 kind | u64 transfer_id |
//   u64 bytes | u64 code | u64 nonce | u64 region | u64 offset | u64 value |
//   64 bytes of CUDA IPC memory handle
// Fields a kind does not use are zero.
//   kOffer  S->R  transfer_id, bytes
//   kGrant  R->S  transfer_id, bytes, nonce (the receiving process), region
//                 (its registration), offset (destination minus the start of
//                 its allocation), value (the destination's address, used
//                 when sender and receiver share a process), handle
//   kRefuse R->S  transfer_id, code (why no grant will come)
//   kChunk  S->R  transfer_id, offset: the first `offset` bytes have landed
//                 (the receiver checksums them while the rest is copied)
//   kDone   S->R  transfer_id, code (kOk: the copy finished; else the send
//                 was withdrawn and nothing more will be written), bytes,
//                 region (1: value holds the source checksum), value
//   kAck    R->S  transfer_id, code (kOk: the bytes arrived verified)
//   kRevoke R->S  transfer_id (the receive was cancelled after its grant:
//                 stop and answer with kDone)
//   kForget R->S  nonce, region (the registration is gone: unmap it)
// Pure functions; thread-safe.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

namespace baton::kvtransfer::control {

inline constexpr uint32_t kMagic = 0x31434b42;  // "BKC1" little-endian
inline constexpr uint16_t kVersion = 1;
inline constexpr size_t kHandleBytes = 64;
inline constexpr size_t kFrameBytes = 64 + kHandleBytes;

enum class Kind : uint16_t {
  kOffer = 1,
  kGrant = 2,
  kRefuse = 3,
  kDone = 4,
  kAck = 5,
  kRevoke = 6,
  kForget = 7,
  kChunk = 8,
};

struct Frame {
  Kind kind = Kind::kOffer;
  uint64_t transfer_id = 0;
  uint64_t bytes = 0;
  uint64_t code = 0;
  uint64_t nonce = 0;
  uint64_t region = 0;
  uint64_t offset = 0;
  uint64_t value = 0;
  std::array<uint8_t, kHandleBytes> handle{};
};

using Buffer = std::array<uint8_t, kFrameBytes>;

Buffer encode(const Frame& f);
// nullopt when the magic, version or kind is wrong.
std::optional<Frame> decode(const uint8_t* in);

}  // namespace baton::kvtransfer::control
