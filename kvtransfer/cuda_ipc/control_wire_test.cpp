// The cuda-ipc control frames: every field survives a round trip, and bytes
// that are not a frame of this version are refused. Needs no GPU.

#include "kvtransfer/cuda_ipc/control_wire.h"

#include <gtest/gtest.h>

namespace baton::kvtransfer::control {
namespace {

TEST(ControlWire, EveryFieldRoundTrips) {
  Frame f;
  f.kind = Kind::kGrant;
  f.transfer_id = 0x0102030405060708ULL;
  f.bytes = uint64_t{2} << 30;
  f.code = 14;
  f.nonce = 0xfedcba9876543210ULL;
  f.region = 42;
  f.offset = 4096 + 5;
  f.value = 0x00007f0000001000ULL;
  for (size_t i = 0; i < kHandleBytes; ++i) f.handle[i] = static_cast<uint8_t>(i * 7 + 1);
  const Buffer b = encode(f);
  ASSERT_EQ(b.size(), kFrameBytes);
  auto d = decode(b.data());
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->kind, f.kind);
  EXPECT_EQ(d->transfer_id, f.transfer_id);
  EXPECT_EQ(d->bytes, f.bytes);
  EXPECT_EQ(d->code, f.code);
  EXPECT_EQ(d->nonce, f.nonce);
  EXPECT_EQ(d->region, f.region);
  EXPECT_EQ(d->offset, f.offset);
  EXPECT_EQ(d->value, f.value);
  EXPECT_EQ(d->handle, f.handle);
}

TEST(ControlWire, LayoutIsLittleEndianWithTheMagicFirst) {
  Frame f;
  f.kind = Kind::kChunk;
  f.transfer_id = 1;
  const Buffer b = encode(f);
  EXPECT_EQ(b[0], 'B');
  EXPECT_EQ(b[1], 'K');
  EXPECT_EQ(b[2], 'C');
  EXPECT_EQ(b[3], '1');
  EXPECT_EQ(b[4], kVersion);
  EXPECT_EQ(b[6], static_cast<uint8_t>(Kind::kChunk));
  EXPECT_EQ(b[8], 1);
}

TEST(ControlWire, ForeignBytesAreRefused) {
  Frame f;
  f.kind = Kind::kAck;
  Buffer b = encode(f);
  Buffer bad = b;
  bad[0] ^= 1;  // magic
  EXPECT_FALSE(decode(bad.data()).has_value());
  bad = b;
  bad[4] = kVersion + 1;  // version
  EXPECT_FALSE(decode(bad.data()).has_value());
  for (uint8_t kind : {0, 9, 255}) {
    bad = b;
    bad[6] = kind;
    EXPECT_FALSE(decode(bad.data()).has_value()) << int(kind);
  }
  EXPECT_TRUE(decode(b.data()).has_value());
}

}  // namespace
}  // namespace baton::kvtransfer::control
