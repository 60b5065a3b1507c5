#pragma once

// Rotary position embedding tables, computed on the host exactly the way
// Hugging Face transformers computes them (f32 throughout), so that a model
// served by Baton sees the same rotations it was trained with. The tables are
// then uploaded into a RopeTable (kernels/backend.h).

#include <cstdint>
#include <vector>

namespace baton::kernels {

struct RopeParams {
  enum class Scaling { kNone, kLinear, kLlama3 };

  float theta = 10000.0f;  // rope_theta
  int32_t rotary_dim = 0;  // even; head_dim * partial_rotary_factor
  Scaling scaling = Scaling::kNone;
  float factor = 1.0f;                    // linear and llama3
  float low_freq_factor = 1.0f;           // llama3
  float high_freq_factor = 4.0f;          // llama3
  int32_t original_max_positions = 8192;  // llama3: original_max_position_embeddings
};

// The rotary_dim / 2 inverse frequencies. kNone: 1 / theta^(2i / rotary_dim);
// kLinear: those divided by factor; kLlama3: low frequencies (wavelength above
// original_max_positions / low_freq_factor) divided by factor, high ones
// (below original_max_positions / high_freq_factor) kept, and a smooth blend
// in between.
std::vector<float> rope_inv_freq(const RopeParams& params);

// Fills cos and sin, each [max_positions, rotary_dim / 2] row-major host
// memory, with cos/sin(position * inv_freq[i]), the product taken in f32.
void rope_fill_table(const RopeParams& params, int32_t max_positions, float* cos, float* sin);

}  // namespace baton::kernels
