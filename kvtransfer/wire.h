#pragma once

// The TCP transport's wire format. Public so that tests can speak it from a
// raw socket; nothing else should need it.
//
// Every frame starts with a 32-byte little-endian header:
//   u32 magic "BKV1" | u16 version | u16 kind | u64 transfer_id |
//   u64 payload_bytes | u64 aux
// kData (sender -> receiver): header, then payload_bytes of payload, then an
//   8-byte trailer: checksum64() of the payload. The checksum is a trailer
//   because the sender computes it while sending, in one pass over the bytes.
//   aux is 0.
// kAck (receiver -> sender, on the same connection): header only;
//   payload_bytes is 0 and aux is the StatusCode of the outcome (kOk: the
//   bytes arrived and were verified).
//
// Checksum64 is a Fletcher-style checksum over 8 lanes of 64-bit words
// (a += w; b += a per lane, all mod 2^64), finished with a 64-bit mix. Any
// change to a single word changes the result; swaps of words are caught by the
// position-weighted b sums. It is an integrity guard against software and
// framing bugs, not a cryptographic hash. Pure functions; thread-safe.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

namespace baton::kvtransfer::wire {

inline constexpr uint32_t kMagic = 0x31564b42;  // "BKV1" little-endian
inline constexpr uint16_t kVersion = 1;
inline constexpr size_t kHeaderBytes = 32;
inline constexpr size_t kTrailerBytes = 8;

enum class FrameKind : uint16_t { kData = 1, kAck = 2 };

struct FrameHeader {
  FrameKind kind = FrameKind::kData;
  uint64_t transfer_id = 0;
  uint64_t payload_bytes = 0;
  uint64_t aux = 0;
};

void encode_header(const FrameHeader& h, uint8_t* out);  // writes kHeaderBytes
// nullopt when the magic, version or kind is wrong.
std::optional<FrameHeader> decode_header(const uint8_t* in);

void encode_u64(uint64_t v, uint8_t* out);
uint64_t decode_u64(const uint8_t* in);

// Incremental checksum; update() accepts any split of the bytes.
class Checksum64 {
 public:
  void update(const void* data, size_t bytes);
  uint64_t finish() const;  // does not change the state

 private:
  static constexpr size_t kLanes = 8;
  static constexpr size_t kStripe = kLanes * 8;
  void consume_stripes(const uint8_t* p, size_t stripes);

  std::array<uint64_t, kLanes> a_{};
  std::array<uint64_t, kLanes> b_{};
  std::array<uint8_t, kStripe> pending_{};
  size_t pending_bytes_ = 0;
  uint64_t total_bytes_ = 0;
};

uint64_t checksum64(const void* data, size_t bytes);

}  // namespace baton::kvtransfer::wire
