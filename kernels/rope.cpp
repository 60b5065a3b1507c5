#include "kernels/rope.h"

#include <cmath>
#include <numbers>

#include "common/status.h"

namespace baton::kernels {

std::vector<float> rope_inv_freq(const RopeParams& p) {
  BATON_CHECK_MSG(p.rotary_dim > 0 && p.rotary_dim % 2 == 0, "rotary_dim must be even");
  const int32_t half = p.rotary_dim / 2;
  std::vector<float> inv(static_cast<size_t>(half));
  // Every step mirrors transformers' f32 tensor arithmetic (python scalars are
  // rounded to f32 first), so tables match the reference to the last ulp or so.
  for (int32_t i = 0; i < half; ++i) {
    float exponent = static_cast<float>(2 * i) / static_cast<float>(p.rotary_dim);
    inv[static_cast<size_t>(i)] = 1.0f / std::pow(p.theta, exponent);
  }
  switch (p.scaling) {
    case RopeParams::Scaling::kNone:
      break;
    case RopeParams::Scaling::kLinear:
      for (float& f : inv) f /= p.factor;
      break;
    case RopeParams::Scaling::kLlama3: {
      const float old_len = static_cast<float>(p.original_max_positions);
      const float low_wavelen =
          static_cast<float>(static_cast<double>(p.original_max_positions) / p.low_freq_factor);
      const float high_wavelen =
          static_cast<float>(static_cast<double>(p.original_max_positions) / p.high_freq_factor);
      const float two_pi = static_cast<float>(2.0 * std::numbers::pi);
      const float band = static_cast<float>(static_cast<double>(p.high_freq_factor) -
                                            static_cast<double>(p.low_freq_factor));
      for (float& f : inv) {
        const float wavelen = two_pi / f;
        float scaled = wavelen > low_wavelen ? f / p.factor : f;
        const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
        if (medium) {
          const float smooth = (old_len / wavelen - p.low_freq_factor) / band;
          scaled = (1.0f - smooth) * scaled / p.factor + smooth * scaled;
        }
        f = scaled;
      }
      break;
    }
  }
  return inv;
}

void rope_fill_table(const RopeParams& p, int32_t max_positions, float* cos, float* sin) {
  const std::vector<float> inv = rope_inv_freq(p);
  const size_t half = inv.size();
  for (int32_t pos = 0; pos < max_positions; ++pos) {
    float* c = cos + static_cast<size_t>(pos) * half;
    float* s = sin + static_cast<size_t>(pos) * half;
    for (size_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(pos) * inv[i];
      c[i] = std::cos(angle);
      s[i] = std::sin(angle);
    }
  }
}

}  // namespace baton::kernels
