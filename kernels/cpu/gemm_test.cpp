// The linear op of the CPU backend against a double-precision reference, for
// every instruction-set variant the CPU supports.

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/test_util.h"

namespace baton::kernels {
namespace {

using test::device_copy;
using test::HostData;
using test::random_data;

struct Shape {
  int64_t n, k, m;
};

// Odd sizes on purpose: k not a multiple of 8 or 16 exercises the scalar tails,
// m not a multiple of 4 the single-column tiles, n > 64 several row panels.
const std::vector<Shape> kShapes = {{1, 1, 1},      {1, 7, 5},    {1, 64, 48},  {1, 1037, 37},
                                    {2, 33, 17},    {3, 128, 70}, {4, 16, 4},   {5, 255, 9},
                                    {17, 300, 129}, {70, 96, 21}, {131, 40, 66}};

struct Outcome {
  std::vector<float> out;
  std::vector<double> ref;
  std::vector<double> magnitude;  // sum |x_i * w_i| + |bias|: the scale of rounding error
};

Outcome run_linear(Backend& b, const Shape& s, DType wdt, bool with_bias, DType bias_dt,
                   uint32_t seed) {
  std::mt19937 rng(seed);
  const HostData x = random_data(rng, DType::kF32, s.n * s.k);
  const HostData w = random_data(rng, wdt, s.m * s.k);
  const HostData bias = random_data(rng, bias_dt, s.m);
  DeviceBuffer xd = device_copy(b, x), wd = device_copy(b, w), bd = device_copy(b, bias);
  DeviceBuffer od = test::device_zeros(b, static_cast<size_t>(s.n * s.m) * 4);
  Tensor xt = xd.tensor(DType::kF32, {s.n, s.k});
  Tensor wt = wd.tensor(wdt, {s.m, s.k});
  Tensor bt = bd.tensor(bias_dt, {s.m});
  Tensor ot = od.tensor(DType::kF32, {s.n, s.m});
  b.linear(xt, wt, with_bias ? &bt : nullptr, ot);

  Outcome r;
  r.out = test::host_floats(b, od, s.n * s.m);
  for (int64_t i = 0; i < s.n; ++i) {
    for (int64_t j = 0; j < s.m; ++j) {
      double acc = with_bias ? bias.values[static_cast<size_t>(j)] : 0.0;
      double mag = std::abs(acc);
      for (int64_t p = 0; p < s.k; ++p) {
        const double t =
            x.values[static_cast<size_t>(i * s.k + p)] * w.values[static_cast<size_t>(j * s.k + p)];
        acc += t;
        mag += std::abs(t);
      }
      r.ref.push_back(acc);
      r.magnitude.push_back(mag);
    }
  }
  return r;
}

class LinearTest : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (!isa_supported(GetParam())) {
      GTEST_SKIP() << isa_name(GetParam()) << " kernels need a CPU feature this host lacks";
    }
  }
};

TEST_P(LinearTest, MatchesDoubleReference) {
  for (int threads : {1, 2}) {
    auto b = make_cpu_backend_with_isa(threads, GetParam());
    uint32_t seed = 1;
    for (const Shape& s : kShapes) {
      for (DType wdt : {DType::kF32, DType::kBF16, DType::kF16}) {
        for (bool with_bias : {false, true}) {
          const DType bias_dt = wdt;  // checkpoints store biases like weights
          Outcome r = run_linear(*b, s, wdt, with_bias, bias_dt, seed++);
          for (size_t i = 0; i < r.out.size(); ++i) {
            // f32 accumulation: error relative to the sum of magnitudes.
            ASSERT_NEAR(r.out[i], r.ref[i], 1e-5 * r.magnitude[i] + 1e-30)
                << "n=" << s.n << " k=" << s.k << " m=" << s.m << " dtype=" << dtype_name(wdt)
                << " bias=" << with_bias << " threads=" << threads << " at " << i;
          }
        }
      }
    }
  }
}

TEST_P(LinearTest, BiasDtypeMayDifferFromWeights) {
  auto b = make_cpu_backend_with_isa(2, GetParam());
  Outcome r = run_linear(*b, {3, 50, 13}, DType::kBF16, true, DType::kF32, 99);
  for (size_t i = 0; i < r.out.size(); ++i) {
    ASSERT_NEAR(r.out[i], r.ref[i], 1e-5 * r.magnitude[i]) << i;
  }
}

TEST_P(LinearTest, ThreadCountDoesNotChangeResults) {
  // Tiles accumulate each output in the same order however the columns and
  // rows are split, so results are bitwise identical.
  auto one = make_cpu_backend_with_isa(1, GetParam());
  auto two = make_cpu_backend_with_isa(2, GetParam());
  for (const Shape& s : {Shape{1, 4096, 512}, Shape{9, 513, 300}, Shape{100, 64, 200}}) {
    Outcome a = run_linear(*one, s, DType::kBF16, true, DType::kBF16, 7);
    Outcome c = run_linear(*two, s, DType::kBF16, true, DType::kBF16, 7);
    ASSERT_EQ(a.out, c.out) << "n=" << s.n << " k=" << s.k << " m=" << s.m;
  }
}

TEST_P(LinearTest, AgreesWithScalarVariant) {
  auto scalar = make_cpu_backend_with_isa(2, Isa::kScalar);
  auto vec = make_cpu_backend_with_isa(2, GetParam());
  for (DType wdt : {DType::kF32, DType::kBF16, DType::kF16}) {
    Outcome a = run_linear(*scalar, {6, 777, 45}, wdt, true, wdt, 11);
    Outcome c = run_linear(*vec, {6, 777, 45}, wdt, true, wdt, 11);
    for (size_t i = 0; i < a.out.size(); ++i) {
      ASSERT_NEAR(a.out[i], c.out[i], 2e-5 * a.magnitude[i]) << dtype_name(wdt) << " " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isas, LinearTest, ::testing::ValuesIn(test::all_isas()),
                         test::isa_param_name);

}  // namespace
}  // namespace baton::kernels
