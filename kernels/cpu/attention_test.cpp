// Paged attention and KV gather/scatter of the CPU backend against dense
// double-precision references.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/test_util.h"

namespace baton::kernels {
namespace {

using test::device_copy;
using test::device_zeros;
using test::host_floats;
using test::HostData;
using test::random_data;

struct SeqSpec {
  int32_t context_len;
  int32_t q_len;
};

// A batch mixing a prefill chunk after a cached prefix, decodes, a whole
// prompt, and lengths on and off block boundaries.
const std::vector<SeqSpec> kMixedBatch = {{37, 5},  {1, 1},  {20, 20}, {50, 1},
                                          {16, 16}, {33, 1}, {70, 40}};

struct Problem {
  int32_t hq, hk, hd, bs;
  DType cache_dtype;
  std::vector<SeqSpec> seqs;
  float logit_scale = 1.0f;  // multiplies q to push logits up
};

struct AttentionRun {
  std::vector<float> out;
  std::vector<double> ref;
};

AttentionRun run_attention(Backend& b, const Problem& p, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t row = static_cast<int64_t>(p.hk) * p.hd;
  int32_t total_blocks = 0, total_q = 0;
  for (const SeqSpec& s : p.seqs) {
    total_blocks += (s.context_len + p.bs - 1) / p.bs;
    total_q += s.q_len;
  }
  total_blocks += 3;  // unused blocks stay in the cache
  // Shuffled block ids: a sequence's blocks are scattered over the cache.
  std::vector<int32_t> ids(static_cast<size_t>(total_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);

  HostData kc = random_data(rng, p.cache_dtype, int64_t{total_blocks} * p.bs * row);
  HostData vc = random_data(rng, p.cache_dtype, int64_t{total_blocks} * p.bs * row);
  HostData q =
      random_data(rng, DType::kF32, int64_t{total_q} * p.hq * p.hd, -p.logit_scale, p.logit_scale);

  std::vector<std::vector<int32_t>> tables;
  std::vector<AttentionSeq> seqs;
  size_t next_id = 0;
  int32_t q_start = 0;
  for (const SeqSpec& s : p.seqs) {
    const int32_t nb = (s.context_len + p.bs - 1) / p.bs;
    tables.emplace_back(ids.begin() + static_cast<long>(next_id),
                        ids.begin() + static_cast<long>(next_id + nb));
    next_id += static_cast<size_t>(nb);
    seqs.push_back(AttentionSeq{q_start, s.q_len, s.context_len, nullptr, nb});
    q_start += s.q_len;
  }
  for (size_t i = 0; i < seqs.size(); ++i) seqs[i].block_table = tables[i].data();

  DeviceBuffer kd = device_copy(b, kc), vd = device_copy(b, vc), qd = device_copy(b, q);
  DeviceBuffer od = device_zeros(b, static_cast<size_t>(q.size()) * 4);
  KvCacheView cache{kd.tensor(p.cache_dtype, {total_blocks, p.bs, p.hk, p.hd}),
                    vd.tensor(p.cache_dtype, {total_blocks, p.bs, p.hk, p.hd}), p.bs, p.hk, p.hd};
  const float scale = 1.0f / std::sqrt(static_cast<float>(p.hd));
  Tensor out = od.tensor(DType::kF32, {total_q, int64_t{p.hq} * p.hd});
  b.attention(qd.tensor(DType::kF32, {total_q, int64_t{p.hq} * p.hd}), cache, seqs, p.hq, scale,
              out);

  AttentionRun r;
  r.out = host_floats(b, od, q.size());
  r.ref.assign(static_cast<size_t>(q.size()), 0.0);
  // Dense reference: position t of a sequence lives at its table's slot.
  for (size_t si = 0; si < seqs.size(); ++si) {
    const AttentionSeq& s = seqs[si];
    auto slot = [&](int32_t t) { return int64_t{tables[si][t / p.bs]} * p.bs + t % p.bs; };
    for (int32_t i = 0; i < s.q_len; ++i) {
      const int32_t visible = s.context_len - s.q_len + i + 1;
      for (int32_t h = 0; h < p.hq; ++h) {
        const int32_t g = h / (p.hq / p.hk);
        const size_t qoff = static_cast<size_t>((int64_t{s.q_start + i} * p.hq + h) * p.hd);
        std::vector<double> logits(static_cast<size_t>(visible));
        double mx = -1e300;
        for (int32_t t = 0; t < visible; ++t) {
          const size_t koff = static_cast<size_t>((slot(t) * p.hk + g) * p.hd);
          double d = 0;
          for (int32_t j = 0; j < p.hd; ++j) d += q.values[qoff + j] * kc.values[koff + j];
          logits[t] = d * scale;
          mx = std::max(mx, logits[t]);
        }
        double z = 0;
        for (double& l : logits) z += (l = std::exp(l - mx));
        for (int32_t t = 0; t < visible; ++t) {
          const size_t voff = static_cast<size_t>((slot(t) * p.hk + g) * p.hd);
          for (int32_t j = 0; j < p.hd; ++j) r.ref[qoff + j] += logits[t] / z * vc.values[voff + j];
        }
      }
    }
  }
  return r;
}

class AttentionTest : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (!isa_supported(GetParam())) {
      GTEST_SKIP() << isa_name(GetParam()) << " kernels need a CPU feature this host lacks";
    }
  }
};

TEST_P(AttentionTest, MixedBatchMatchesDenseReference) {
  auto b = make_cpu_backend_with_isa(2, GetParam());
  uint32_t seed = 100;
  for (int32_t ratio : {1, 2, 4}) {
    for (int32_t hd : {64, 20}) {
      for (int32_t bs : {16, 5}) {
        for (DType cdt : {DType::kF32, DType::kBF16}) {
          Problem p{2 * ratio, 2, hd, bs, cdt, kMixedBatch};
          AttentionRun r = run_attention(*b, p, seed++);
          for (size_t i = 0; i < r.out.size(); ++i) {
            // Outputs are convex combinations of values in [-1, 1].
            ASSERT_NEAR(r.out[i], r.ref[i], 1e-5) << "gqa=" << ratio << " hd=" << hd << " bs=" << bs
                                                  << " cache=" << dtype_name(cdt) << " at " << i;
          }
        }
      }
    }
  }
}

TEST_P(AttentionTest, LargeLogitsStayFinite) {
  // Logits of several hundred overflow exp() without the running max.
  auto b = make_cpu_backend_with_isa(2, GetParam());
  Problem p{4, 2, 32, 8, DType::kF32, {{45, 45}, {30, 1}}, 60.0f};
  AttentionRun r = run_attention(*b, p, 7);
  for (size_t i = 0; i < r.out.size(); ++i) {
    ASSERT_TRUE(std::isfinite(r.out[i])) << i;
    ASSERT_NEAR(r.out[i], r.ref[i], 1e-4) << i;
  }
}

TEST_P(AttentionTest, ThreadCountDoesNotChangeResults) {
  auto one = make_cpu_backend_with_isa(1, GetParam());
  auto two = make_cpu_backend_with_isa(2, GetParam());
  Problem p{8, 2, 64, 16, DType::kBF16, kMixedBatch};
  EXPECT_EQ(run_attention(*one, p, 5).out, run_attention(*two, p, 5).out);
}

INSTANTIATE_TEST_SUITE_P(Isas, AttentionTest, ::testing::ValuesIn(test::all_isas()),
                         test::isa_param_name);

TEST(KvTransfer, ScatterThenGatherRoundTripsAcrossBlocks) {
  auto backend = make_cpu_backend(2);
  Backend& b = *backend;
  std::mt19937 rng(21);
  const int32_t blocks = 12, bs = 4, hk = 2, hd = 5;
  const int64_t row = hk * hd;
  for (DType cdt : {DType::kF32, DType::kBF16}) {
    // Tokens [3, 3 + 22) start mid-block and cross six block boundaries.
    const int32_t first = 3, count = 22;
    std::vector<int32_t> table = {7, 2, 11, 0, 5, 9, 1};
    HostData k = random_data(rng, cdt, count * row), v = random_data(rng, cdt, count * row);
    const size_t cache_bytes = static_cast<size_t>(blocks * bs * row) * dtype_size(cdt);
    DeviceBuffer kc = device_zeros(b, cache_bytes), vc = device_zeros(b, cache_bytes);
    KvCacheView cache{kc.tensor(cdt, {blocks, bs, hk, hd}), vc.tensor(cdt, {blocks, bs, hk, hd}),
                      bs, hk, hd};
    DeviceBuffer kd = device_copy(b, k), vd = device_copy(b, v);
    b.kv_scatter(cache, table.data(), first, count, kd.tensor(cdt, {count, row}),
                 vd.tensor(cdt, {count, row}));

    // Exactly the addressed slots changed.
    std::vector<uint8_t> kraw(cache_bytes);
    ASSERT_TRUE(b.download(kc.data(), cache_bytes, kraw.data()).is_ok());
    const size_t esz = dtype_size(cdt);
    for (int32_t slot = 0; slot < blocks * bs; ++slot) {
      int32_t token = -1;
      for (int32_t t = first; t < first + count; ++t) {
        if (table[t / bs] * bs + t % bs == slot) token = t - first;
      }
      const uint8_t* got = kraw.data() + static_cast<size_t>(slot * row) * esz;
      if (token < 0) {
        EXPECT_TRUE(std::all_of(got, got + row * esz, [](uint8_t c) { return c == 0; })) << slot;
      } else {
        EXPECT_EQ(
            0, std::memcmp(got, k.bytes.data() + static_cast<size_t>(token * row) * esz, row * esz))
            << slot;
      }
    }

    // Gathering the same range back gives the input bit for bit; gathering
    // into f32 widens it exactly.
    DeviceBuffer ko = device_zeros(b, k.bytes.size()), vo = device_zeros(b, v.bytes.size());
    Tensor kt = ko.tensor(cdt, {count, row}), vt = vo.tensor(cdt, {count, row});
    b.kv_gather(cache, table.data(), first, count, kt, vt);
    std::vector<uint8_t> kback(k.bytes.size()), vback(v.bytes.size());
    ASSERT_TRUE(b.download(ko.data(), kback.size(), kback.data()).is_ok());
    ASSERT_TRUE(b.download(vo.data(), vback.size(), vback.data()).is_ok());
    EXPECT_EQ(kback, k.bytes);
    EXPECT_EQ(vback, v.bytes);

    DeviceBuffer kf = device_zeros(b, count * row * 4), vf = device_zeros(b, count * row * 4);
    // Widening gather of a sub-range that starts at another in-block offset.
    Tensor kft = kf.tensor(DType::kF32, {count, row}).slice_rows(0, count - 5);
    Tensor vft = vf.tensor(DType::kF32, {count, row}).slice_rows(0, count - 5);
    b.kv_gather(cache, table.data(), first + 5, count - 5, kft, vft);
    std::vector<float> kw = host_floats(b, kf, (count - 5) * row);
    for (int64_t i = 0; i < (count - 5) * row; ++i) {
      ASSERT_EQ(kw[static_cast<size_t>(i)], k.values[static_cast<size_t>(5 * row + i)]) << i;
    }
  }
}

}  // namespace
}  // namespace baton::kernels
