// The CPU backend's memory calls and row-wise ops against double-precision
// references, for every instruction-set variant the CPU supports.

#include "kernels/cpu/cpu_backend.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cpu/test_util.h"
#include "kernels/rope.h"

namespace baton::kernels {
namespace {

using test::device_copy;
using test::device_zeros;
using test::host_floats;
using test::HostData;
using test::random_data;

constexpr double kRel = 1e-5;  // f32 ops: relative error bound

class CpuOpsTest : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (!isa_supported(GetParam())) {
      GTEST_SKIP() << isa_name(GetParam()) << " kernels need a CPU feature this host lacks";
    }
    backend_ = make_cpu_backend_with_isa(2, GetParam());
  }
  Backend& b() { return *backend_; }
  std::unique_ptr<Backend> backend_;
};

TEST(CpuBackend, ReportsCapabilitiesAndThreads) {
  auto b = make_cpu_backend(3);
  EXPECT_EQ(b->name(), "cpu");
  Capabilities c = b->capabilities();
  EXPECT_EQ(c.kind, DeviceKind::kCpu);
  EXPECT_EQ(c.activation_dtype, DType::kF32);
  EXPECT_EQ(c.threads, 3);
  EXPECT_GE(make_cpu_backend(0)->capabilities().threads, 1);
}

TEST(CpuBackend, AllocationsAreAlignedAndCopiesRoundTrip) {
  auto b = make_cpu_backend(1);
  for (size_t bytes : {size_t{0}, size_t{1}, size_t{63}, size_t{4097}}) {
    Result<DeviceBuffer> buf = b->allocate(bytes);
    ASSERT_TRUE(buf.is_ok());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(buf->data()) % 64, 0u);
    EXPECT_EQ(buf->bytes(), bytes);
  }
  std::vector<uint8_t> src(1000);
  std::iota(src.begin(), src.end(), 0);
  DeviceBuffer a = b->allocate(src.size()).value(), c = b->allocate(src.size()).value();
  ASSERT_TRUE(b->upload(src.data(), src.size(), a.data()).is_ok());
  ASSERT_TRUE(b->copy(a.data(), src.size(), c.data()).is_ok());
  ASSERT_TRUE(b->synchronize().is_ok());
  std::vector<uint8_t> back(src.size());
  ASSERT_TRUE(b->download(c.data(), back.size(), back.data()).is_ok());
  EXPECT_EQ(back, src);
}

TEST(CpuBackend, HugeAllocationIsResourceExhausted) {
  auto b = make_cpu_backend(1);
  Result<DeviceBuffer> buf = b->allocate(size_t{1} << 62);
  ASSERT_FALSE(buf.is_ok());
  EXPECT_EQ(buf.status().code(), StatusCode::kResourceExhausted);
}

TEST_P(CpuOpsTest, EmbeddingWidensAnyTableDtype) {
  std::mt19937 rng(3);
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (int64_t d : {1, 13, 64}) {
      const int64_t vocab = 50;
      HostData table = random_data(rng, dt, vocab * d);
      std::vector<int32_t> ids = {0, 49, 7, 7, 23};
      DeviceBuffer td = device_copy(b(), table), id = device_copy(b(), ids);
      DeviceBuffer od = device_zeros(b(), ids.size() * d * 4);
      Tensor out = od.tensor(DType::kF32, {static_cast<int64_t>(ids.size()), d});
      b().embedding(td.tensor(dt, {vocab, d}), id.tensor(DType::kI32, {5}), out);
      std::vector<float> got = host_floats(b(), od, 5 * d);
      for (size_t r = 0; r < ids.size(); ++r) {
        for (int64_t j = 0; j < d; ++j) {
          ASSERT_EQ(got[r * d + j], table.values[static_cast<size_t>(ids[r] * d + j)]);
        }
      }
    }
  }
}

std::vector<double> ref_rms(const std::vector<double>& x, const std::vector<double>& w,
                            int64_t rows, int64_t d, double eps) {
  std::vector<double> out(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t j = 0; j < d; ++j) ss += x[r * d + j] * x[r * d + j];
    const double inv = 1.0 / std::sqrt(ss / d + eps);
    for (int64_t j = 0; j < d; ++j) out[r * d + j] = x[r * d + j] * inv * w[j];
  }
  return out;
}

TEST_P(CpuOpsTest, RmsNormMatchesReference) {
  std::mt19937 rng(4);
  for (DType wdt : {DType::kF32, DType::kBF16}) {
    for (auto [rows, d] : {std::pair<int64_t, int64_t>{1, 4096}, {3, 17}, {40, 1000}, {2, 1}}) {
      HostData x = random_data(rng, DType::kF32, rows * d, -3, 3);
      HostData w = random_data(rng, wdt, d, 0.5, 1.5);
      DeviceBuffer xd = device_copy(b(), x), wd = device_copy(b(), w);
      DeviceBuffer od = device_zeros(b(), rows * d * 4);
      Tensor out = od.tensor(DType::kF32, {rows, d});
      b().rms_norm(xd.tensor(DType::kF32, {rows, d}), wd.tensor(wdt, {d}), 1e-6f, out);
      std::vector<float> got = host_floats(b(), od, rows * d);
      std::vector<double> ref = ref_rms(x.values, w.values, rows, d, 1e-6);
      for (size_t i = 0; i < ref.size(); ++i) {
        ASSERT_NEAR(got[i], ref[i], kRel * std::abs(ref[i]) + 1e-6) << rows << "x" << d << " " << i;
      }
    }
  }
}

TEST_P(CpuOpsTest, AddRmsNormUpdatesResidualThenNormalises) {
  std::mt19937 rng(5);
  for (auto [rows, d] : {std::pair<int64_t, int64_t>{1, 4096}, {5, 33}, {64, 512}}) {
    HostData res = random_data(rng, DType::kF32, rows * d, -2, 2);
    HostData x = random_data(rng, DType::kF32, rows * d, -2, 2);
    HostData w = random_data(rng, DType::kF32, d, 0.5, 1.5);
    DeviceBuffer rd = device_copy(b(), res), xd = device_copy(b(), x), wd = device_copy(b(), w);
    DeviceBuffer od = device_zeros(b(), rows * d * 4);
    Tensor rt = rd.tensor(DType::kF32, {rows, d});
    Tensor out = od.tensor(DType::kF32, {rows, d});
    b().add_rms_norm(rt, xd.tensor(DType::kF32, {rows, d}), wd.tensor(DType::kF32, {d}), 1e-5f,
                     out);
    std::vector<double> sum(res.values.size());
    for (size_t i = 0; i < sum.size(); ++i) sum[i] = res.values[i] + x.values[i];
    std::vector<float> got_res = host_floats(b(), rd, rows * d);
    std::vector<float> got = host_floats(b(), od, rows * d);
    std::vector<double> ref = ref_rms(sum, w.values, rows, d, 1e-5);
    for (size_t i = 0; i < ref.size(); ++i) {
      ASSERT_EQ(got_res[i], static_cast<float>(res.values[i]) + static_cast<float>(x.values[i]));
      ASSERT_NEAR(got[i], ref[i], kRel * std::abs(ref[i]) + 1e-6) << i;
    }
  }
}

TEST_P(CpuOpsTest, SiluMulMatchesReference) {
  std::mt19937 rng(6);
  for (auto [rows, inter] : {std::pair<int64_t, int64_t>{1, 14336 / 8}, {7, 11}, {33, 300}}) {
    HostData gu = random_data(rng, DType::kF32, rows * 2 * inter, -8, 8);
    DeviceBuffer gd = device_copy(b(), gu), od = device_zeros(b(), rows * inter * 4);
    Tensor out = od.tensor(DType::kF32, {rows, inter});
    b().silu_mul(gd.tensor(DType::kF32, {rows, 2 * inter}), out);
    std::vector<float> got = host_floats(b(), od, rows * inter);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t i = 0; i < inter; ++i) {
        const double g = gu.values[r * 2 * inter + i], u = gu.values[r * 2 * inter + inter + i];
        const double ref = g / (1.0 + std::exp(-g)) * u;
        ASSERT_NEAR(got[r * inter + i], ref, kRel * std::abs(ref) + 1e-7) << r << " " << i;
      }
    }
  }
}

TEST_P(CpuOpsTest, GatherRowsPicksRowsInOrder) {
  std::mt19937 rng(7);
  HostData x = random_data(rng, DType::kF32, 10 * 6);
  std::vector<int32_t> rows = {9, 0, 3, 3};
  DeviceBuffer xd = device_copy(b(), x), rd = device_copy(b(), rows);
  DeviceBuffer od = device_zeros(b(), 4 * 6 * 4);
  Tensor out = od.tensor(DType::kF32, {4, 6});
  b().gather_rows(xd.tensor(DType::kF32, {10, 6}), rd.tensor(DType::kI32, {4}), out);
  std::vector<float> got = host_floats(b(), od, 24);
  for (size_t r = 0; r < rows.size(); ++r) {
    for (int j = 0; j < 6; ++j) ASSERT_EQ(got[r * 6 + j], x.values[rows[r] * 6 + j]);
  }
}

TEST_P(CpuOpsTest, RopeRotatesHalvesOfTheRotaryPart) {
  std::mt19937 rng(8);
  // Partial rotary (rotary_dim < head_dim) leaves the tail of each head as is.
  for (auto [head_dim, rotary_dim] : {std::pair<int32_t, int32_t>{64, 64}, {10, 6}, {128, 64}}) {
    const int64_t n = 5, hq = 4, hk = 2;
    const int32_t max_pos = 300;
    RopeParams p{.theta = 10000.0f, .rotary_dim = rotary_dim};
    std::vector<float> cos(static_cast<size_t>(max_pos) * rotary_dim / 2), sin(cos.size());
    rope_fill_table(p, max_pos, cos.data(), sin.data());
    std::vector<int32_t> pos = {0, 1, 17, 299, 17};
    HostData q = random_data(rng, DType::kF32, n * hq * head_dim);
    HostData k = random_data(rng, DType::kF32, n * hk * head_dim);
    DeviceBuffer qd = device_copy(b(), q), kd = device_copy(b(), k), pd = device_copy(b(), pos);
    DeviceBuffer cd = device_copy(b(), cos), sd = device_copy(b(), sin);
    RopeTable table{cd.tensor(DType::kF32, {max_pos, rotary_dim / 2}),
                    sd.tensor(DType::kF32, {max_pos, rotary_dim / 2}), rotary_dim, max_pos};
    Tensor qt = qd.tensor(DType::kF32, {n, hq * head_dim});
    Tensor kt = kd.tensor(DType::kF32, {n, hk * head_dim});
    b().rope(qt, kt, pd.tensor(DType::kI32, {n}), head_dim, table);
    const std::vector<double> inv = [&] {
      std::vector<double> v;
      for (int i = 0; i < rotary_dim / 2; ++i)
        v.push_back(std::pow(10000.0, -2.0 * i / rotary_dim));
      return v;
    }();
    auto check = [&](const HostData& before, const DeviceBuffer& after, int64_t heads) {
      std::vector<float> got = host_floats(b(), after, n * heads * head_dim);
      const int half = rotary_dim / 2;
      for (int64_t t = 0; t < n; ++t) {
        for (int64_t h = 0; h < heads; ++h) {
          const size_t base = static_cast<size_t>((t * heads + h) * head_dim);
          for (int j = 0; j < head_dim; ++j) {
            double ref = before.values[base + j];
            if (j < rotary_dim) {
              const int i = j % half;
              const double a = pos[t] * inv[i];
              const double x1 = before.values[base + i], x2 = before.values[base + i + half];
              ref = j < half ? x1 * std::cos(a) - x2 * std::sin(a)
                             : x2 * std::cos(a) + x1 * std::sin(a);
            }
            // Angles up to 300 rad carry f32 rounding of ~300 * 6e-8.
            ASSERT_NEAR(got[base + j], ref, 5e-5) << "t=" << t << " h=" << h << " j=" << j;
          }
        }
      }
    };
    check(q, qd, hq);
    check(k, kd, hk);
  }
}

TEST_P(CpuOpsTest, KvAppendWritesSlotsAndSkipsPadding) {
  std::mt19937 rng(9);
  for (DType cdt : {DType::kF32, DType::kBF16}) {
    const int32_t blocks = 4, bs = 4, hk = 2, hd = 3;
    const int64_t row = hk * hd;
    HostData k = random_data(rng, DType::kF32, 3 * row), v = random_data(rng, DType::kF32, 3 * row);
    std::vector<int32_t> slots = {13, -1, 2};
    const size_t cache_bytes = static_cast<size_t>(blocks * bs * row) * dtype_size(cdt);
    DeviceBuffer kc = device_zeros(b(), cache_bytes), vc = device_zeros(b(), cache_bytes);
    KvCacheView cache{kc.tensor(cdt, {blocks, bs, hk, hd}), vc.tensor(cdt, {blocks, bs, hk, hd}),
                      bs, hk, hd};
    DeviceBuffer kd = device_copy(b(), k), vd = device_copy(b(), v), sd = device_copy(b(), slots);
    b().kv_append(kd.tensor(DType::kF32, {3, row}), vd.tensor(DType::kF32, {3, row}),
                  sd.tensor(DType::kI32, {3}), cache);
    // Read back through kv_gather as f32 over the whole cache in slot order.
    std::vector<int32_t> identity = {0, 1, 2, 3};
    DeviceBuffer ko = device_zeros(b(), blocks * bs * row * 4),
                 vo = device_zeros(b(), blocks * bs * row * 4);
    Tensor kt = ko.tensor(DType::kF32, {blocks * bs, row});
    Tensor vt = vo.tensor(DType::kF32, {blocks * bs, row});
    b().kv_gather(cache, identity.data(), 0, blocks * bs, kt, vt);
    std::vector<float> kg = host_floats(b(), ko, blocks * bs * row);
    std::vector<float> vg = host_floats(b(), vo, blocks * bs * row);
    const double tol = cdt == DType::kF32 ? 0.0 : 1.0 / 256;  // bf16 rounding
    for (int32_t s = 0; s < blocks * bs; ++s) {
      const int src = s == 13 ? 0 : s == 2 ? 2 : -1;
      for (int64_t j = 0; j < row; ++j) {
        const double ek = src < 0 ? 0.0 : k.values[src * row + j];
        const double ev = src < 0 ? 0.0 : v.values[src * row + j];
        ASSERT_NEAR(kg[s * row + j], ek, tol * std::abs(ek)) << "slot " << s;
        ASSERT_NEAR(vg[s * row + j], ev, tol * std::abs(ev)) << "slot " << s;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isas, CpuOpsTest, ::testing::ValuesIn(test::all_isas()),
                         test::isa_param_name);

}  // namespace
}  // namespace baton::kernels
