#pragma once

// Element types shared by model loading, kernels and KV transfer, with exact
// scalar conversions between f32 and the two 16-bit float formats.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace baton {

enum class DType : uint8_t { kF32, kF16, kBF16, kI32, kI64, kI8, kU8, kBool };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
      return 2;
    case DType::kI64:
      return 8;
    case DType::kI8:
    case DType::kU8:
    case DType::kBool:
      return 1;
  }
  return 0;
}

// Safetensors spelling: "F32", "F16", "BF16", "I32", "I64", "I8", "U8", "BOOL".
std::string_view dtype_name(DType t);
std::optional<DType> dtype_from_name(std::string_view name);

// bf16 is the top half of an f32; rounding to nearest even, NaN kept quiet.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// IEEE half precision, round to nearest even, with subnormals and inf/NaN.
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

}  // namespace baton
