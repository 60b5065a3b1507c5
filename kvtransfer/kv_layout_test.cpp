#include "kvtransfer/kv_layout.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <vector>

namespace baton::kvtransfer {
namespace {

// Llama-3.1-8B: 32 layers, 8 KV heads, head_dim 128, bf16.
constexpr KvLayout kLlama8B{32, 8, 128, 2};

TEST(KvLayoutTest, Llama8BIs128KiBPerToken) {
  EXPECT_EQ(kLlama8B.token_row_bytes(), 8u * 128 * 2);
  EXPECT_EQ(kLlama8B.bytes_per_token(), 128u * 1024);
  EXPECT_EQ(kLlama8B.bytes_for(4096).value(), uint64_t{512} << 20);
  EXPECT_EQ(kLlama8B.bytes_for(0).value(), 0u);
}

TEST(KvLayoutTest, OffsetsFollowLayerThenKvThenToken) {
  const KvLayout l{3, 2, 4, 2};  // 16-byte rows
  const int64_t n = 5;
  EXPECT_EQ(l.offset(n, 0, KvPart::kKey, 0).value(), 0u);
  EXPECT_EQ(l.offset(n, 0, KvPart::kKey, 1).value(), 16u);
  EXPECT_EQ(l.offset(n, 0, KvPart::kValue, 0).value(), 5u * 16);
  EXPECT_EQ(l.offset(n, 1, KvPart::kKey, 0).value(), 10u * 16);
  EXPECT_EQ(l.offset(n, 2, KvPart::kValue, 4).value(), (5u * 5 + 4) * 16);
  // The last row ends exactly at the end of the buffer.
  EXPECT_EQ(l.offset(n, 2, KvPart::kValue, 4).value() + l.token_row_bytes(),
            l.bytes_for(n).value());
}

TEST(KvLayoutTest, RejectsBadArgumentsWithoutAborting) {
  EXPECT_EQ((KvLayout{0, 8, 128, 2}).bytes_for(1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(kLlama8B.bytes_for(-1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(kLlama8B.bytes_for(int64_t{1} << 40).status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(kLlama8B.offset(10, 32, KvPart::kKey, 0).is_ok());
  EXPECT_FALSE(kLlama8B.offset(10, 0, KvPart::kKey, 10).is_ok());
  EXPECT_FALSE(kLlama8B.slice(10, 4, 7).is_ok());
  EXPECT_FALSE(kLlama8B.slice(10, -1, 2).is_ok());
  EXPECT_TRUE(kLlama8B.slice(10, 10, 0).is_ok());
  EXPECT_TRUE(kLlama8B.slice(10, 10, 0)->empty());
}

// Fills a buffer of `n` tokens so each row says where it came from.
std::vector<uint16_t> tagged(const KvLayout& l, int64_t n) {
  std::vector<uint16_t> v(l.bytes_for(n).value() / 2);
  const size_t row = l.token_row_bytes() / 2;
  for (int64_t layer = 0; layer < l.num_layers; ++layer) {
    for (int p = 0; p < 2; ++p) {
      for (int64_t t = 0; t < n; ++t) {
        const size_t at = l.offset(n, layer, static_cast<KvPart>(p), t).value() / 2;
        for (size_t e = 0; e < row; ++e) {
          v[at + e] = static_cast<uint16_t>(layer * 1000 + p * 500 + t * 4 + e % 4);
        }
      }
    }
  }
  return v;
}

TEST(KvLayoutTest, SuffixSliceEqualsExportOfTheSuffixAlone) {
  const KvLayout l{4, 2, 2, 2};
  const int64_t total = 12, first = 7, count = 5;
  const auto full = tagged(l, total);
  auto runs = l.slice(total, first, count);
  ASSERT_TRUE(runs.is_ok());
  ASSERT_EQ(runs->size(), 8u);
  std::vector<uint16_t> compact(l.bytes_for(count).value() / 2, 0xffff);
  copy_runs(*runs, full.data(), compact.data());
  // Row t of the compact buffer is row first + t of the full one.
  const size_t row = l.token_row_bytes() / 2;
  for (int64_t layer = 0; layer < l.num_layers; ++layer) {
    for (int p = 0; p < 2; ++p) {
      for (int64_t t = 0; t < count; ++t) {
        const size_t c = l.offset(count, layer, static_cast<KvPart>(p), t).value() / 2;
        const size_t f = l.offset(total, layer, static_cast<KvPart>(p), first + t).value() / 2;
        for (size_t e = 0; e < row; ++e) ASSERT_EQ(compact[c + e], full[f + e]);
      }
    }
  }
  // Runs tile the compact buffer exactly.
  uint64_t covered = 0;
  for (const KvRun& r : *runs) {
    EXPECT_EQ(r.dst_offset, covered);
    covered += r.bytes;
  }
  EXPECT_EQ(covered, l.bytes_for(count).value());
}

TEST(KvLayoutTest, WholeBufferSliceIsOneRunPerLayerAndPart) {
  const KvLayout l{2, 1, 4, 4};
  auto runs = l.slice(3, 0, 3).value();
  ASSERT_EQ(runs.size(), 4u);
  for (size_t i = 0; i < runs.size(); ++i) {
    EXPECT_EQ(runs[i].src_offset, runs[i].dst_offset);
    EXPECT_EQ(runs[i].bytes, 3u * 16);
  }
}

}  // namespace
}  // namespace baton::kvtransfer
