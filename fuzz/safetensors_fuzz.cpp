// Fuzz target: the safetensors reader (model/safetensors.h), which validates
// a checkpoint's header before anything reads tensor data. The input is the
// whole file. Checked: no crash or UB, and the promise of the header comment:
// every tensor of a file that opened lies inside the file, its size matches
// dtype x shape, and tensors do not overlap.

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "model/safetensors.h"

namespace {

using baton::model::SafetensorsFile;

void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "safetensors_fuzz: %s\n", what);
  std::abort();
}

// The reader maps a path, so each input becomes an in-memory file.
int memory_file() {
  static int fd = [] {
    int f = ::memfd_create("safetensors_fuzz", 0);
    require(f >= 0, "memfd_create failed");
    return f;
  }();
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int fd = memory_file();
  require(::ftruncate(fd, 0) == 0, "ftruncate failed");
  size_t written = 0;
  while (written < size) {
    ssize_t n = ::pwrite(fd, data + written, size - written, static_cast<off_t>(written));
    require(n > 0, "pwrite failed");
    written += static_cast<size_t>(n);
  }
  auto file = SafetensorsFile::open("/proc/self/fd/" + std::to_string(fd));
  if (!file.is_ok()) return 0;
  const auto& f = *file.value();
  require(f.file_size() == size, "file size");
  uint64_t prev_end = 0;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& t : f.tensors()) {
    require(t.begin <= t.end, "begin > end");
    uint64_t elements = 1;
    for (int64_t d : t.shape) {
      require(d >= 0, "negative dimension");
      require(!__builtin_mul_overflow(elements, static_cast<uint64_t>(d), &elements),
              "element count overflows");
    }
    uint64_t bytes = 0;
    require(!__builtin_mul_overflow(elements, baton::dtype_size(t.dtype), &bytes),
            "byte count overflows");
    require(bytes == t.end - t.begin, "size != dtype x shape");
    require(t.bytes() == 0 || t.data != nullptr, "no data pointer");
    ranges.emplace_back(t.begin, t.end);
  }
  std::sort(ranges.begin(), ranges.end());
  for (const auto& [b, e] : ranges) {
    require(b >= prev_end || b == e, "tensors overlap");
    if (e > prev_end) prev_end = e;
  }
  // Touching every byte would catch a data range outside the mapping.
  uint64_t sum = 0;
  for (const auto& t : f.tensors()) {
    for (size_t i = 0; i < t.bytes(); ++i) sum += static_cast<uint8_t>(t.data[i]);
  }
  volatile uint64_t sink = sum;
  (void)sink;
  return 0;
}
