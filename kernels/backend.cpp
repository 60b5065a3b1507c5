#include "kernels/backend.h"

#include <utility>

namespace baton::kernels {

Tensor::Tensor(void* d, DType t, std::initializer_list<int64_t> dims) : data(d), dtype(t) {
  BATON_CHECK(dims.size() >= 1 && dims.size() <= 4);
  for (int64_t v : dims) shape[static_cast<size_t>(ndim++)] = v;
}

int64_t Tensor::numel() const {
  if (ndim == 0) return 0;
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[static_cast<size_t>(i)];
  return n;
}

Tensor Tensor::slice_rows(int64_t begin, int64_t count) const {
  if (ndim == 1) {  // a vector's rows are its elements
    BATON_CHECK(begin >= 0 && count >= 0 && begin + count <= shape[0]);
    Tensor t = *this;
    t.data = static_cast<char*>(data) + static_cast<size_t>(begin) * dtype_size(dtype);
    t.shape[0] = count;
    return t;
  }
  BATON_CHECK(ndim >= 1 && begin >= 0 && count >= 0 && begin + count <= rows());
  Tensor t = *this;
  int64_t c = cols();
  t.data = static_cast<char*>(data) + static_cast<size_t>(begin * c) * dtype_size(dtype);
  t.ndim = 2;
  t.shape = {count, c, 0, 0};
  return t;
}

Tensor Tensor::reshaped(std::initializer_list<int64_t> dims) const {
  Tensor t(data, dtype, dims);
  BATON_CHECK_MSG(t.numel() == numel(), "reshape must keep the element count");
  return t;
}

DeviceBuffer::DeviceBuffer(void* data, size_t bytes, void (*release)(void*, size_t))
    : data_(data), bytes_(bytes), release_(release) {}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)),
      bytes_(std::exchange(o.bytes_, 0)),
      release_(std::exchange(o.release_, nullptr)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (data_ && release_) release_(data_, bytes_);
    data_ = std::exchange(o.data_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
    release_ = std::exchange(o.release_, nullptr);
  }
  return *this;
}

DeviceBuffer::~DeviceBuffer() {
  if (data_ && release_) release_(data_, bytes_);
}

Tensor DeviceBuffer::tensor(DType t, std::initializer_list<int64_t> dims) const {
  Tensor v(data_, t, dims);
  BATON_CHECK_MSG(v.bytes() <= bytes_, "tensor view larger than its buffer");
  return v;
}

}  // namespace baton::kernels
