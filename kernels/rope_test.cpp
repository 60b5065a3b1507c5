#include "kernels/rope.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <vector>

namespace baton::kernels {
namespace {

// The formulas of transformers' rope initialisers, evaluated in double.
double ref_default(double theta, int dim, int i) { return 1.0 / std::pow(theta, 2.0 * i / dim); }

double ref_llama3(double inv, double factor, double low, double high, double old_len) {
  const double wavelen = 2.0 * std::numbers::pi / inv;
  if (wavelen < old_len / high) return inv;
  if (wavelen > old_len / low) return inv / factor;
  const double smooth = (old_len / wavelen - low) / (high - low);
  return (1.0 - smooth) * inv / factor + smooth * inv;
}

void expect_rel_near(double expected, float actual, double rel) {
  EXPECT_NEAR(actual, expected, rel * std::abs(expected)) << "expected " << expected;
}

TEST(RopeInvFreq, DefaultMatchesFormula) {
  for (int dim : {64, 128, 96}) {
    for (float theta : {10000.0f, 500000.0f, 1000000.0f}) {
      RopeParams p{.theta = theta, .rotary_dim = dim};
      std::vector<float> inv = rope_inv_freq(p);
      ASSERT_EQ(inv.size(), static_cast<size_t>(dim / 2));
      EXPECT_EQ(inv[0], 1.0f);
      for (int i = 0; i < dim / 2; ++i) expect_rel_near(ref_default(theta, dim, i), inv[i], 2e-6);
    }
  }
}

TEST(RopeInvFreq, KnownDefaultValues) {
  // Llama 2: theta 1e4, head_dim 128: inv_freq[1] = 1e4^(-1/64), inv_freq[63] = 1e4^(-126/128).
  RopeParams p{.theta = 10000.0f, .rotary_dim = 128};
  std::vector<float> inv = rope_inv_freq(p);
  expect_rel_near(0.86596432336, inv[1], 1e-6);
  expect_rel_near(1.1547819846894582e-4, inv[63], 2e-6);
}

TEST(RopeInvFreq, LinearDividesByFactor) {
  RopeParams p{
      .theta = 10000.0f, .rotary_dim = 64, .scaling = RopeParams::Scaling::kLinear, .factor = 4.0f};
  std::vector<float> inv = rope_inv_freq(p);
  for (int i = 0; i < 32; ++i) expect_rel_near(ref_default(10000.0, 64, i) / 4.0, inv[i], 2e-6);
}

TEST(RopeInvFreq, Llama3MatchesFormula) {
  // Llama 3.1 8B: theta 5e5, head_dim 128, factor 8, low 1, high 4, 8192.
  RopeParams p{.theta = 500000.0f,
               .rotary_dim = 128,
               .scaling = RopeParams::Scaling::kLlama3,
               .factor = 8.0f,
               .low_freq_factor = 1.0f,
               .high_freq_factor = 4.0f,
               .original_max_positions = 8192};
  std::vector<float> inv = rope_inv_freq(p);
  for (int i = 0; i < 64; ++i) {
    expect_rel_near(ref_llama3(ref_default(500000.0, 128, i), 8, 1, 4, 8192), inv[i], 1e-5);
  }
}

TEST(RopeInvFreq, Llama3Bands) {
  RopeParams base{.theta = 500000.0f, .rotary_dim = 128};
  RopeParams p = base;
  p.scaling = RopeParams::Scaling::kLlama3;
  p.factor = 8.0f;
  p.low_freq_factor = 1.0f;
  p.high_freq_factor = 4.0f;
  p.original_max_positions = 8192;
  std::vector<float> plain = rope_inv_freq(base);
  std::vector<float> scaled = rope_inv_freq(p);
  int high = 0, low = 0, medium = 0;
  for (size_t i = 0; i < plain.size(); ++i) {
    const double wavelen = 2.0 * std::numbers::pi / plain[i];
    if (wavelen < 8192.0 / 4.0) {
      EXPECT_EQ(scaled[i], plain[i]) << i;  // high frequencies untouched
      ++high;
    } else if (wavelen > 8192.0) {
      EXPECT_FLOAT_EQ(scaled[i], plain[i] / 8.0f) << i;  // low frequencies fully scaled
      ++low;
    } else {
      EXPECT_LT(scaled[i], plain[i]) << i;  // blended strictly between the two
      EXPECT_GT(scaled[i], plain[i] / 8.0f) << i;
      ++medium;
    }
    if (i > 0) {
      EXPECT_LT(scaled[i], scaled[i - 1]) << "frequencies stay decreasing at " << i;
    }
  }
  EXPECT_GT(high, 0);
  EXPECT_GT(low, 0);
  EXPECT_GT(medium, 0);
}

TEST(RopeTable, CosSinOfPositionTimesFrequency) {
  RopeParams p{
      .theta = 10000.0f, .rotary_dim = 64, .scaling = RopeParams::Scaling::kLinear, .factor = 2.0f};
  const int max_pos = 4096;
  std::vector<float> cos(static_cast<size_t>(max_pos) * 32), sin(cos.size());
  rope_fill_table(p, max_pos, cos.data(), sin.data());
  for (int pos : {0, 1, 7, 100, 2047, 4095}) {
    for (int i = 0; i < 32; ++i) {
      const double angle = pos * ref_default(10000.0, 64, i) / 2.0;
      // f32 rounding of the angle grows with it: allow a few ulps of the angle.
      const double tol = 1e-6 + 4.0 * std::abs(angle) * 1.2e-7;
      EXPECT_NEAR(cos[static_cast<size_t>(pos) * 32 + i], std::cos(angle), tol) << pos << " " << i;
      EXPECT_NEAR(sin[static_cast<size_t>(pos) * 32 + i], std::sin(angle), tol) << pos << " " << i;
    }
  }
  EXPECT_EQ(cos[0], 1.0f);
  EXPECT_EQ(sin[0], 0.0f);
}

}  // namespace
}  // namespace baton::kernels
