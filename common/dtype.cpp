#include "common/dtype.h"

namespace baton {

namespace {
struct Name {
  DType t;
  std::string_view s;
};
constexpr Name kNames[] = {{DType::kF32, "F32"}, {DType::kF16, "F16"},  {DType::kBF16, "BF16"},
                           {DType::kI32, "I32"}, {DType::kI64, "I64"},  {DType::kI8, "I8"},
                           {DType::kU8, "U8"},   {DType::kBool, "BOOL"}};
}  // namespace

std::string_view dtype_name(DType t) {
  for (const auto& n : kNames) {
    if (n.t == t) return n.s;
  }
  return "?";
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& n : kNames) {
    if (n.s == name) return n.t;
  }
  return std::nullopt;
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (mant == 0) {
      u = sign;
    } else {
      // Subnormal half: normalise into an f32 exponent.
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400u) == 0);
      mant &= 0x3ffu;
      u = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | mant << 13;
    }
  } else if (exp == 0x1f) {
    u = sign | 0x7f800000u | mant << 13;
  } else {
    u = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);   // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow to inf
  if (abs < 0x38800000u) {
    // Result is subnormal or zero: shift the implicit-one mantissa into place.
    if (abs < 0x33000000u) return static_cast<uint16_t>(sign);
    uint32_t e = abs >> 23;
    uint32_t m = (abs & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e;  // value = m * 2^(e-150) = out * 2^-24
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t halfway = 1u << (shift - 1);
    uint32_t out = m >> shift;
    if (rem > halfway || (rem == halfway && (out & 1u))) ++out;
    return static_cast<uint16_t>(sign | out);
  }
  // Normal: rebias exponent, round mantissa from 23 to 10 bits.
  uint32_t v = abs - 0x38000000u;  // (127-15) << 23
  uint32_t out = v >> 13;
  uint32_t rem = v & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (out & 1u))) ++out;
  return static_cast<uint16_t>(sign | out);
}

}  // namespace baton
