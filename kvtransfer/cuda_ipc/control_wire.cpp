#include "kvtransfer/cuda_ipc/control_wire.h"

#include <cstring>

#include "kvtransfer/wire.h"

namespace baton::kvtransfer::control {

Buffer encode(const Frame& f) {
  Buffer b{};
  const uint64_t head = uint64_t{kMagic} | (uint64_t{kVersion} << 32) |
                        (uint64_t{static_cast<uint16_t>(f.kind)} << 48);
  const uint64_t fields[] = {head,    f.transfer_id, f.bytes,  f.code,
                             f.nonce, f.region,      f.offset, f.value};
  for (size_t i = 0; i < 8; ++i) wire::encode_u64(fields[i], b.data() + 8 * i);
  std::memcpy(b.data() + 64, f.handle.data(), kHandleBytes);
  return b;
}

std::optional<Frame> decode(const uint8_t* in) {
  const uint64_t head = wire::decode_u64(in);
  if ((head & 0xffffffffu) != kMagic || ((head >> 32) & 0xffff) != kVersion) return std::nullopt;
  const uint64_t kind = head >> 48;
  if (kind < static_cast<uint16_t>(Kind::kOffer) || kind > static_cast<uint16_t>(Kind::kChunk)) {
    return std::nullopt;
  }
  Frame f;
  f.kind = static_cast<Kind>(kind);
  f.transfer_id = wire::decode_u64(in + 8);
  f.bytes = wire::decode_u64(in + 16);
  f.code = wire::decode_u64(in + 24);
  f.nonce = wire::decode_u64(in + 32);
  f.region = wire::decode_u64(in + 40);
  f.offset = wire::decode_u64(in + 48);
  f.value = wire::decode_u64(in + 56);
  std::memcpy(f.handle.data(), in + 64, kHandleBytes);
  return f;
}

}  // namespace baton::kvtransfer::control
