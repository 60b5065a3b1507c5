#pragma once

// The linear op: out[n, m] = x[n, k] · w[m, k]^T (+ bias[m]), f32 activations,
// f32/bf16/f16 weights, f32 accumulation. Weights are streamed once per row
// panel: each worker owns a band of output columns and register-blocks
// several x rows against a few weight rows, so a weight tile loaded from
// memory is reused from cache for every x row of the panel. For n == 1 this is
// a GEMV that runs at memory bandwidth.

#include <cstdint>

#include "common/dtype.h"
#include "kernels/cpu/isa.h"

namespace baton::kernels {

class ForkJoinPool;

struct LinearArgs {
  const float* x = nullptr;  // [n, k]
  const void* w = nullptr;   // [m, k] in w_dtype
  DType w_dtype = DType::kF32;
  const void* bias = nullptr;  // [m] in bias_dtype, or null
  DType bias_dtype = DType::kF32;
  float* out = nullptr;  // [n, m]
  int64_t n = 0;
  int64_t k = 0;
  int64_t m = 0;
};

// Computes out[rows [row_begin, row_end), cols [col_begin, col_end)].
// Tiles are independent, so disjoint tiles may run concurrently.
using LinearTileFn = void (*)(const LinearArgs& a, int64_t row_begin, int64_t row_end,
                              int64_t col_begin, int64_t col_end);

void linear_tile_scalar(const LinearArgs& a, int64_t row_begin, int64_t row_end, int64_t col_begin,
                        int64_t col_end);
void linear_tile_avx2(const LinearArgs& a, int64_t row_begin, int64_t row_end, int64_t col_begin,
                      int64_t col_end);
void linear_tile_avx512(const LinearArgs& a, int64_t row_begin, int64_t row_end, int64_t col_begin,
                        int64_t col_end);

// The tile kernel of `isa`, which must be supported (isa_supported).
LinearTileFn linear_tile_fn(Isa isa);

// The whole product, split into tiles over the pool's threads.
void linear(ForkJoinPool& pool, Isa isa, const LinearArgs& a);

}  // namespace baton::kernels
