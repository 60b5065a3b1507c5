#include "kvtransfer/wire.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

namespace baton::kvtransfer::wire {
namespace {

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

TEST(WireTest, HeaderRoundTrips) {
  uint8_t buf[kHeaderBytes];
  encode_header({FrameKind::kAck, 0x1122334455667788ULL, 12345, 7}, buf);
  auto h = decode_header(buf);
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->kind, FrameKind::kAck);
  EXPECT_EQ(h->transfer_id, 0x1122334455667788ULL);
  EXPECT_EQ(h->payload_bytes, 12345u);
  EXPECT_EQ(h->aux, 7u);
  buf[0] ^= 1;
  EXPECT_FALSE(decode_header(buf).has_value());
}

TEST(WireTest, ChecksumIsIndependentOfHowBytesAreSplit) {
  const auto data = random_bytes(10007, 1);
  const uint64_t whole = checksum64(data.data(), data.size());
  for (size_t step : {1u, 7u, 63u, 64u, 65u, 4096u}) {
    Checksum64 c;
    for (size_t at = 0; at < data.size(); at += step) {
      c.update(data.data() + at, std::min(step, data.size() - at));
    }
    EXPECT_EQ(c.finish(), whole) << "step " << step;
  }
}

TEST(WireTest, ChecksumCatchesFlipsSwapsAndLength) {
  auto data = random_bytes(1 << 16, 2);
  const uint64_t base = checksum64(data.data(), data.size());
  for (size_t at : {0u, 5u, 64u, 30000u, 65535u}) {
    for (uint8_t bit = 1; bit != 0; bit <<= 1) {
      data[at] ^= bit;
      EXPECT_NE(checksum64(data.data(), data.size()), base) << at;
      data[at] ^= bit;
    }
  }
  // Two 8-byte words of one lane swapped.
  std::swap_ranges(data.begin(), data.begin() + 8, data.begin() + 64);
  EXPECT_NE(checksum64(data.data(), data.size()), base);
  std::swap_ranges(data.begin(), data.begin() + 8, data.begin() + 64);
  // Trailing zeros change the length and so the checksum.
  std::vector<uint8_t> zeros(10, 0);
  EXPECT_NE(checksum64(zeros.data(), 9), checksum64(zeros.data(), 10));
  EXPECT_EQ(checksum64(data.data(), data.size()), base);
}

}  // namespace
}  // namespace baton::kvtransfer::wire
