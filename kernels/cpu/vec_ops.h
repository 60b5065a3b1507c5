#pragma once

// Small vector primitives the non-GEMM CPU ops are built from (norms,
// attention, conversions), as a table of functions per instruction set so an
// op picks its variant once per call rather than per element.

#include <cstdint>

#include "common/dtype.h"
#include "kernels/cpu/isa.h"

namespace baton::kernels {

struct VecOps {
  // sum a[i] * b[i], f32 accumulation.
  float (*dot)(const float* a, const float* b, int64_t n);
  // y[i] = alpha * y[i] + beta * x[i]
  void (*axpby)(float alpha, float* y, float beta, const float* x, int64_t n);
  // out[i] = x[i] * s * w[i] (out may alias x)
  void (*scale_mul)(const float* x, float s, const float* w, float* out, int64_t n);
  // dst[i] = src[i] widened to f32; src dtype f32, bf16 or f16.
  void (*to_f32)(const void* src, DType dtype, float* dst, int64_t n);
};

// The table of `isa`, which must be supported.
const VecOps& vec_ops(Isa isa);

// Per-ISA tables (vec_ops_*.cpp).
const VecOps& vec_ops_scalar();
const VecOps& vec_ops_avx2();
const VecOps& vec_ops_avx512();

// f32 to a storage dtype (f32, bf16 or f16), round to nearest even.
void from_f32(const float* src, DType dtype, void* dst, int64_t n);

}  // namespace baton::kernels
