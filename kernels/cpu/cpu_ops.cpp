// The row-wise and data-movement ops of CpuBackend: norms, embedding,
// activation, RoPE and the paged KV cache writes and copies.

#include <cmath>
#include <cstring>

#include "kernels/cpu/cpu_backend.h"

namespace baton::kernels {
namespace {

bool is_float_storage(DType t) { return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16; }

// One row from one float storage dtype to another; tmp holds the f32 form
// when neither side is f32.
void convert_row(const VecOps& ops, const void* src, DType sdt, void* dst, DType ddt, int64_t n,
                 std::vector<float>& tmp) {
  if (sdt == ddt) {
    std::memcpy(dst, src, static_cast<size_t>(n) * dtype_size(sdt));
  } else if (ddt == DType::kF32) {
    ops.to_f32(src, sdt, static_cast<float*>(dst), n);
  } else if (sdt == DType::kF32) {
    from_f32(static_cast<const float*>(src), ddt, dst, n);
  } else {
    tmp.resize(static_cast<size_t>(n));
    ops.to_f32(src, sdt, tmp.data(), n);
    from_f32(tmp.data(), ddt, dst, n);
  }
}

void check_cache(const KvCacheView& c) {
  BATON_CHECK(c.block_size > 0 && c.num_kv_heads > 0 && c.head_dim > 0);
  BATON_CHECK(c.k.dtype == c.v.dtype && is_float_storage(c.k.dtype));
  BATON_CHECK(c.k.numel() == c.v.numel());
  BATON_CHECK(c.k.numel() % (static_cast<int64_t>(c.block_size) * c.num_kv_heads * c.head_dim) ==
              0);
}

// Address of token `slot`'s row (all kv heads) in one side of the cache.
char* slot_row(const Tensor& side, int64_t slot, int64_t row_elems) {
  return static_cast<char*>(side.data) +
         static_cast<size_t>(slot * row_elems) * dtype_size(side.dtype);
}

}  // namespace

void CpuBackend::rms_rows(const float* x, const float* w, float eps, int64_t d, float* out) const {
  const float ms = ops_.dot(x, x, d) / static_cast<float>(d);
  ops_.scale_mul(x, 1.0f / std::sqrt(ms + eps), w, out, d);
}

void CpuBackend::embedding(const Tensor& table, const Tensor& ids, Tensor& out) {
  BATON_CHECK(is_float_storage(table.dtype) && table.ndim == 2);
  BATON_CHECK(ids.dtype == DType::kI32 && out.dtype == DType::kF32);
  BATON_CHECK(out.rows() == ids.numel() && out.cols() == table.cols());
  const int64_t d = table.cols();
  const int64_t vocab = table.rows();
  const int32_t* id = ids.as<int32_t>();
  const size_t row_bytes = static_cast<size_t>(d) * dtype_size(table.dtype);
  pool_.parallel_for(ids.numel(), row_grain(d), [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) {
      BATON_CHECK_MSG(id[r] >= 0 && id[r] < vocab, "embedding: token id out of range");
      const char* src =
          static_cast<const char*>(table.data) + static_cast<size_t>(id[r]) * row_bytes;
      ops_.to_f32(src, table.dtype, out.as<float>() + r * d, d);
    }
  });
}

void CpuBackend::rms_norm(const Tensor& x, const Tensor& w, float eps, Tensor& out) {
  BATON_CHECK(x.dtype == DType::kF32 && out.dtype == DType::kF32);
  const int64_t d = x.cols();
  BATON_CHECK(w.numel() == d && out.rows() == x.rows() && out.cols() == d);
  std::vector<float> tmp;
  const float* wf = as_f32(w, tmp);
  pool_.parallel_for(x.rows(), row_grain(d), [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r)
      rms_rows(x.as<float>() + r * d, wf, eps, d, out.as<float>() + r * d);
  });
}

void CpuBackend::add_rms_norm(Tensor& residual, const Tensor& x, const Tensor& w, float eps,
                              Tensor& out) {
  BATON_CHECK(residual.dtype == DType::kF32 && x.dtype == DType::kF32 && out.dtype == DType::kF32);
  const int64_t d = x.cols();
  BATON_CHECK(residual.rows() == x.rows() && residual.cols() == d);
  BATON_CHECK(w.numel() == d && out.rows() == x.rows() && out.cols() == d);
  std::vector<float> tmp;
  const float* wf = as_f32(w, tmp);
  pool_.parallel_for(x.rows(), row_grain(d), [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) {
      float* res = residual.as<float>() + r * d;
      ops_.axpby(1.0f, res, 1.0f, x.as<float>() + r * d, d);
      rms_rows(res, wf, eps, d, out.as<float>() + r * d);
    }
  });
}

void CpuBackend::silu_mul(const Tensor& gate_up, Tensor& out) {
  BATON_CHECK(gate_up.dtype == DType::kF32 && out.dtype == DType::kF32);
  const int64_t inter = out.cols();
  BATON_CHECK(gate_up.cols() == 2 * inter && gate_up.rows() == out.rows());
  pool_.parallel_for(out.rows(), row_grain(inter), [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) {
      const float* g = gate_up.as<float>() + r * 2 * inter;
      const float* u = g + inter;
      float* o = out.as<float>() + r * inter;
      for (int64_t i = 0; i < inter; ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
    }
  });
}

void CpuBackend::gather_rows(const Tensor& x, const Tensor& rows, Tensor& out) {
  BATON_CHECK(rows.dtype == DType::kI32 && x.dtype == out.dtype);
  BATON_CHECK(out.rows() == rows.numel() && out.cols() == x.cols());
  const size_t row_bytes = static_cast<size_t>(x.cols()) * dtype_size(x.dtype);
  const int32_t* idx = rows.as<int32_t>();
  for (int64_t r = 0; r < rows.numel(); ++r) {
    BATON_CHECK_MSG(idx[r] >= 0 && idx[r] < x.rows(), "gather_rows: row index out of range");
    std::memcpy(static_cast<char*>(out.data) + static_cast<size_t>(r) * row_bytes,
                static_cast<const char*>(x.data) + static_cast<size_t>(idx[r]) * row_bytes,
                row_bytes);
  }
}

void CpuBackend::rope(Tensor& q, Tensor& k, const Tensor& positions, int32_t head_dim,
                      const RopeTable& table) {
  BATON_CHECK(q.dtype == DType::kF32 && positions.dtype == DType::kI32);
  const int32_t half = table.rotary_dim / 2;
  BATON_CHECK(table.rotary_dim % 2 == 0 && table.rotary_dim > 0 && table.rotary_dim <= head_dim);
  BATON_CHECK(table.cos.cols() == half && table.sin.cols() == half);
  BATON_CHECK(q.rows() == positions.numel() && q.cols() % head_dim == 0);
  const bool has_k = k.data != nullptr && k.numel() > 0;
  if (has_k) {
    BATON_CHECK(k.dtype == DType::kF32 && k.rows() == q.rows() && k.cols() % head_dim == 0);
  }
  const int32_t* pos = positions.as<int32_t>();
  const int64_t q_heads = q.cols() / head_dim;
  const int64_t k_heads = has_k ? k.cols() / head_dim : 0;
  pool_.parallel_for(q.rows(), row_grain(q.cols() + k.cols()), [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t) {
      BATON_CHECK_MSG(pos[t] >= 0 && pos[t] < table.max_positions, "rope: position out of range");
      const float* c = table.cos.as<float>() + static_cast<int64_t>(pos[t]) * half;
      const float* s = table.sin.as<float>() + static_cast<int64_t>(pos[t]) * half;
      auto rotate = [&](float* row, int64_t heads) {
        for (int64_t h = 0; h < heads; ++h) {
          float* x = row + h * head_dim;
          for (int32_t j = 0; j < half; ++j) {
            const float x1 = x[j];
            const float x2 = x[j + half];
            x[j] = x1 * c[j] - x2 * s[j];
            x[j + half] = x2 * c[j] + x1 * s[j];
          }
        }
      };
      rotate(q.as<float>() + t * q.cols(), q_heads);
      if (has_k) rotate(k.as<float>() + t * k.cols(), k_heads);
    }
  });
}

void CpuBackend::kv_append(const Tensor& k, const Tensor& v, const Tensor& slots,
                           KvCacheView& cache) {
  check_cache(cache);
  const int64_t row = static_cast<int64_t>(cache.num_kv_heads) * cache.head_dim;
  BATON_CHECK(slots.dtype == DType::kI32 && k.rows() == slots.numel() && v.rows() == k.rows());
  BATON_CHECK(k.cols() == row && v.cols() == row);
  BATON_CHECK(is_float_storage(k.dtype) && is_float_storage(v.dtype));
  const int64_t num_slots = cache.k.numel() / row;
  const int32_t* slot = slots.as<int32_t>();
  pool_.parallel_for(k.rows(), row_grain(2 * row), [&](int64_t b, int64_t e, int) {
    std::vector<float> tmp;
    for (int64_t t = b; t < e; ++t) {
      if (slot[t] < 0) continue;
      BATON_CHECK_MSG(slot[t] < num_slots, "kv_append: slot outside the cache");
      const size_t src_off = static_cast<size_t>(t * row);
      convert_row(ops_, static_cast<const char*>(k.data) + src_off * dtype_size(k.dtype), k.dtype,
                  slot_row(cache.k, slot[t], row), cache.k.dtype, row, tmp);
      convert_row(ops_, static_cast<const char*>(v.data) + src_off * dtype_size(v.dtype), v.dtype,
                  slot_row(cache.v, slot[t], row), cache.v.dtype, row, tmp);
    }
  });
}

void CpuBackend::copy_kv_rows(const KvCacheView& cache, const int32_t* block_table,
                              int32_t first_token, int32_t num_tokens, const Tensor& k_dense,
                              const Tensor& v_dense, bool to_cache) {
  check_cache(cache);
  const int64_t row = static_cast<int64_t>(cache.num_kv_heads) * cache.head_dim;
  BATON_CHECK(first_token >= 0 && num_tokens >= 0);
  BATON_CHECK(k_dense.rows() == num_tokens && v_dense.rows() == num_tokens);
  BATON_CHECK(k_dense.cols() == row && v_dense.cols() == row);
  BATON_CHECK(is_float_storage(k_dense.dtype) && is_float_storage(v_dense.dtype));
  const int64_t cache_blocks = cache.k.numel() / (row * cache.block_size);
  pool_.parallel_for(num_tokens, row_grain(2 * row), [&](int64_t b, int64_t e, int) {
    std::vector<float> tmp;
    for (int64_t i = b; i < e; ++i) {
      const int64_t t = first_token + i;
      const int32_t blk = block_table[t / cache.block_size];
      BATON_CHECK_MSG(blk >= 0 && blk < cache_blocks,
                      "kv_gather/kv_scatter: block id outside the cache");
      const int64_t slot = static_cast<int64_t>(blk) * cache.block_size + t % cache.block_size;
      for (const auto& [dense, side] :
           {std::pair{&k_dense, &cache.k}, std::pair{&v_dense, &cache.v}}) {
        char* dense_row = static_cast<char*>(dense->data) +
                          static_cast<size_t>(i * row) * dtype_size(dense->dtype);
        if (to_cache) {
          convert_row(ops_, dense_row, dense->dtype, slot_row(*side, slot, row), side->dtype, row,
                      tmp);
        } else {
          convert_row(ops_, slot_row(*side, slot, row), side->dtype, dense_row, dense->dtype, row,
                      tmp);
        }
      }
    }
  });
}

void CpuBackend::kv_gather(const KvCacheView& cache, const int32_t* block_table,
                           int32_t first_token, int32_t num_tokens, Tensor& k_out, Tensor& v_out) {
  copy_kv_rows(cache, block_table, first_token, num_tokens, k_out, v_out, /*to_cache=*/false);
}

void CpuBackend::kv_scatter(KvCacheView& cache, const int32_t* block_table, int32_t first_token,
                            int32_t num_tokens, const Tensor& k_in, const Tensor& v_in) {
  copy_kv_rows(cache, block_table, first_token, num_tokens, k_in, v_in, /*to_cache=*/true);
}

}  // namespace baton::kernels
