#pragma once

// Helpers shared by the CPU kernel tests: seeded random data in any float
// storage dtype (with the exact values the kernels will read, for double
// references), device buffers, and the list of instruction sets to sweep.

#include <gtest/gtest.h>

#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/isa.h"

namespace baton::kernels::test {

// Readable parameter values in gtest messages.
inline void PrintTo(Isa isa, std::ostream* os) { *os << isa_name(isa); }

inline const std::vector<Isa>& all_isas() {
  static const std::vector<Isa> kIsas = {Isa::kScalar, Isa::kAvx2, Isa::kAvx512};
  return kIsas;
}

inline std::string isa_param_name(const ::testing::TestParamInfo<Isa>& info) {
  return std::string(isa_name(info.param));
}

// Values stored in `dtype` plus their exact widened values.
struct HostData {
  DType dtype = DType::kF32;
  std::vector<uint8_t> bytes;
  std::vector<double> values;
  int64_t size() const { return static_cast<int64_t>(values.size()); }
};

inline HostData random_data(std::mt19937& rng, DType dtype, int64_t n, float lo = -1.0f,
                            float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  HostData d;
  d.dtype = dtype;
  d.bytes.resize(static_cast<size_t>(n) * dtype_size(dtype));
  d.values.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const float f = dist(rng);
    float stored = f;
    if (dtype == DType::kBF16) {
      const uint16_t h = f32_to_bf16(f);
      std::memcpy(d.bytes.data() + i * 2, &h, 2);
      stored = bf16_to_f32(h);
    } else if (dtype == DType::kF16) {
      const uint16_t h = f32_to_f16(f);
      std::memcpy(d.bytes.data() + i * 2, &h, 2);
      stored = f16_to_f32(h);
    } else {
      std::memcpy(d.bytes.data() + i * 4, &f, 4);
    }
    d.values[static_cast<size_t>(i)] = stored;
  }
  return d;
}

inline DeviceBuffer device_copy(Backend& b, const void* host, size_t bytes) {
  Result<DeviceBuffer> buf = b.allocate(bytes);
  EXPECT_TRUE(buf.is_ok());
  EXPECT_TRUE(b.upload(host, bytes, buf->data()).is_ok());
  return std::move(buf).value();
}

inline DeviceBuffer device_copy(Backend& b, const HostData& d) {
  return device_copy(b, d.bytes.data(), d.bytes.size());
}

template <typename T>
DeviceBuffer device_copy(Backend& b, const std::vector<T>& v) {
  return device_copy(b, v.data(), v.size() * sizeof(T));
}

inline DeviceBuffer device_zeros(Backend& b, size_t bytes) {
  std::vector<uint8_t> z(bytes, 0);
  return device_copy(b, z.data(), bytes);
}

inline std::vector<float> host_floats(Backend& b, const DeviceBuffer& buf, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  EXPECT_TRUE(b.download(buf.data(), out.size() * sizeof(float), out.data()).is_ok());
  return out;
}

}  // namespace baton::kernels::test
