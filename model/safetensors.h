#pragma once

// Safetensors checkpoints: a validating, memory-mapped reader for one file or
// a sharded model directory, and a small writer used by tests and tools.
//
// File layout: 8-byte little-endian header length N, N bytes of JSON
// {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__":
// {str: str}}, then the data region; offsets are relative to its start.
//
// Everything in the header is checked when a file is opened (header size,
// JSON, dtypes, shapes, offsets inside the data region, sizes matching the
// shape, no overlapping tensors), so a SafetensorsFile that opened is safe to
// read. Every error names the file and, where there is one, the tensor.
//
// Memory: a SafetensorsFile maps its file read-only (MAP_PRIVATE) for its
// whole lifetime; tensor data pointers stay valid until it is destroyed and are
// only as aligned as the file makes them (the writer aligns the data region to
// 8 bytes; other writers may not). Pages are read lazily by the kernel.
// Opened files are immutable and may be read from any number of threads.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"

namespace baton::model {

// Largest header accepted; real checkpoints have headers of a few hundred KB.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull * 1024 * 1024;

struct SafetensorsTensor {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // offsets into the data region
  uint64_t end = 0;
  const std::byte* data = nullptr;  // into the mapping; valid while the file lives
  size_t bytes() const { return static_cast<size_t>(end - begin); }
};

class SafetensorsFile {
 public:
  // Maps and validates `path`. kNotFound when it cannot be opened,
  // kUnprocessable when its contents are malformed.
  static Result<std::unique_ptr<SafetensorsFile>> open(const std::filesystem::path& path);

  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const std::filesystem::path& path() const { return path_; }
  // Sorted by name.
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* find(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  uint64_t file_size() const { return size_; }

 private:
  SafetensorsFile() = default;

  std::filesystem::path path_;
  void* map_ = nullptr;
  uint64_t size_ = 0;
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A model directory's safetensors: either model.safetensors, or the shards
// named by model.safetensors.index.json ({"weight_map": {tensor: file}}).
// Each shard is opened once; every mapped tensor must exist in its shard, no
// tensor may appear in two shards or be left out of the index, and shard
// names may not leave the directory (absolute paths, "..").
class SafetensorsCheckpoint {
 public:
  struct Entry {
    const SafetensorsTensor* tensor;
    const SafetensorsFile* file;
  };

  // model.safetensors wins when both it and an index exist (as in
  // transformers). kNotFound when neither exists.
  static Result<SafetensorsCheckpoint> open(const std::filesystem::path& model_dir);

  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  // Every tensor of every file, by name.
  const std::map<std::string, Entry, std::less<>>& tensors() const { return tensors_; }
  const Entry* find(std::string_view name) const;

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Entry, std::less<>> tensors_;
};

// One tensor for write_safetensors; `data` must hold numel * dtype_size bytes.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::span<const std::byte> data;
};

// Writes a safetensors file (tensors laid out in name order, header padded so
// the data region starts 8-byte aligned). Fails on duplicate names, a size
// that does not match the shape, or an I/O error.
Status write_safetensors(const std::filesystem::path& path, std::span<const TensorToWrite> tensors,
                         const std::map<std::string, std::string>& metadata = {});

// Checked product of a shape's dimensions; nullopt on a negative dimension or
// overflow of int64.
std::optional<int64_t> checked_numel(std::span<const int64_t> shape);

}  // namespace baton::model
