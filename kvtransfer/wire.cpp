#include "kvtransfer/wire.h"

#include <algorithm>
#include <bit>
#include <cstring>

namespace baton::kvtransfer::wire {
namespace {

uint64_t load_le64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
  return v;
}

void store_le(uint64_t v, uint8_t* out, size_t bytes) {
  for (size_t i = 0; i < bytes; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
}

uint64_t load_le(const uint8_t* in, size_t bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(in[i]) << (8 * i);
  return v;
}

uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

}  // namespace

void encode_u64(uint64_t v, uint8_t* out) { store_le(v, out, 8); }
uint64_t decode_u64(const uint8_t* in) { return load_le(in, 8); }

void encode_header(const FrameHeader& h, uint8_t* out) {
  store_le(kMagic, out, 4);
  store_le(kVersion, out + 4, 2);
  store_le(static_cast<uint16_t>(h.kind), out + 6, 2);
  store_le(h.transfer_id, out + 8, 8);
  store_le(h.payload_bytes, out + 16, 8);
  store_le(h.aux, out + 24, 8);
}

std::optional<FrameHeader> decode_header(const uint8_t* in) {
  if (load_le(in, 4) != kMagic || load_le(in + 4, 2) != kVersion) return std::nullopt;
  const uint64_t kind = load_le(in + 6, 2);
  if (kind != static_cast<uint16_t>(FrameKind::kData) &&
      kind != static_cast<uint16_t>(FrameKind::kAck)) {
    return std::nullopt;
  }
  FrameHeader h;
  h.kind = static_cast<FrameKind>(kind);
  h.transfer_id = load_le(in + 8, 8);
  h.payload_bytes = load_le(in + 16, 8);
  h.aux = load_le(in + 24, 8);
  return h;
}

void Checksum64::consume_stripes(const uint8_t* p, size_t stripes) {
  if constexpr (std::endian::native == std::endian::little) {
    // GCC/Clang vector extensions: 8 lanes as four 2x64-bit vectors, which
    // every x86-64 (SSE2) and AArch64 (NEON) target adds natively. Lane l is
    // the same as in the scalar loop below, so both give the same result.
    typedef uint64_t V2 __attribute__((vector_size(16)));
    auto load = [](const uint8_t* q) {
      V2 w;
      std::memcpy(&w, q, 16);
      return w;
    };
    V2 a0 = load(reinterpret_cast<const uint8_t*>(a_.data())),
       a1 = load(reinterpret_cast<const uint8_t*>(a_.data() + 2)),
       a2 = load(reinterpret_cast<const uint8_t*>(a_.data() + 4)),
       a3 = load(reinterpret_cast<const uint8_t*>(a_.data() + 6));
    V2 b0 = load(reinterpret_cast<const uint8_t*>(b_.data())),
       b1 = load(reinterpret_cast<const uint8_t*>(b_.data() + 2)),
       b2 = load(reinterpret_cast<const uint8_t*>(b_.data() + 4)),
       b3 = load(reinterpret_cast<const uint8_t*>(b_.data() + 6));
    for (size_t s = 0; s < stripes; ++s, p += kStripe) {
      a0 += load(p);
      a1 += load(p + 16);
      a2 += load(p + 32);
      a3 += load(p + 48);
      b0 += a0;
      b1 += a1;
      b2 += a2;
      b3 += a3;
    }
    std::memcpy(a_.data(), &a0, 16);
    std::memcpy(a_.data() + 2, &a1, 16);
    std::memcpy(a_.data() + 4, &a2, 16);
    std::memcpy(a_.data() + 6, &a3, 16);
    std::memcpy(b_.data(), &b0, 16);
    std::memcpy(b_.data() + 2, &b1, 16);
    std::memcpy(b_.data() + 4, &b2, 16);
    std::memcpy(b_.data() + 6, &b3, 16);
  } else {
    std::array<uint64_t, kLanes> a = a_, b = b_;
    for (size_t s = 0; s < stripes; ++s, p += kStripe) {
      for (size_t l = 0; l < kLanes; ++l) {
        a[l] += load_le64(p + 8 * l);
        b[l] += a[l];
      }
    }
    a_ = a;
    b_ = b;
  }
}

void Checksum64::update(const void* data, size_t bytes) {
  const auto* p = static_cast<const uint8_t*>(data);
  total_bytes_ += bytes;
  if (pending_bytes_ > 0) {
    const size_t take = std::min(bytes, kStripe - pending_bytes_);
    std::memcpy(pending_.data() + pending_bytes_, p, take);
    pending_bytes_ += take;
    p += take;
    bytes -= take;
    if (pending_bytes_ < kStripe) return;
    consume_stripes(pending_.data(), 1);
    pending_bytes_ = 0;
  }
  const size_t stripes = bytes / kStripe;
  consume_stripes(p, stripes);
  p += stripes * kStripe;
  bytes -= stripes * kStripe;
  std::memcpy(pending_.data(), p, bytes);
  pending_bytes_ = bytes;
}

uint64_t Checksum64::finish() const {
  std::array<uint64_t, kLanes> a = a_, b = b_;
  // The tail, zero-padded, as one more stripe; the length below tells a
  // zero-padded tail apart from real zeros.
  if (pending_bytes_ > 0) {
    std::array<uint8_t, kStripe> tail{};
    std::memcpy(tail.data(), pending_.data(), pending_bytes_);
    for (size_t l = 0; l < kLanes; ++l) {
      a[l] += load_le64(tail.data() + 8 * l);
      b[l] += a[l];
    }
  }
  uint64_t h = mix64(total_bytes_ ^ 0x9e3779b97f4a7c15ULL);
  for (size_t l = 0; l < kLanes; ++l) {
    h = mix64(h ^ a[l]) + l;
    h = mix64(h ^ b[l]);
  }
  return h;
}

uint64_t checksum64(const void* data, size_t bytes) {
  Checksum64 c;
  c.update(data, bytes);
  return c.finish();
}

}  // namespace baton::kvtransfer::wire
