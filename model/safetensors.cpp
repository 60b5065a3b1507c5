#include "model/safetensors.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace baton::model {

namespace {

using nlohmann::json;

std::string quote(std::string_view s) { return json(std::string(s)).dump(); }

Status file_error(const std::filesystem::path& path, std::string_view what) {
  return data_error(fmt::format("{}: {}", path.string(), what));
}
Status tensor_error(const std::filesystem::path& path, std::string_view tensor,
                    std::string_view what) {
  return data_error(fmt::format("{}: tensor {}: {}", path.string(), quote(tensor), what));
}

// Reads a non-negative JSON integer that fits int64.
std::optional<int64_t> as_index(const json& v) {
  if (!v.is_number_unsigned()) return std::nullopt;
  uint64_t u = v.get<uint64_t>();
  if (u > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
  return static_cast<int64_t>(u);
}

Result<SafetensorsTensor> parse_entry(const std::filesystem::path& path, const std::string& name,
                                      const json& v, uint64_t data_size) {
  if (!v.is_object()) return tensor_error(path, name, "header entry is not an object");
  auto dt = v.find("dtype");
  if (dt == v.end() || !dt->is_string()) return tensor_error(path, name, "missing string dtype");
  std::optional<DType> dtype = dtype_from_name(dt->get<std::string>());
  if (!dtype) {
    return tensor_error(path, name, fmt::format("unknown dtype {}", dt->dump()));
  }
  SafetensorsTensor t;
  t.name = name;
  t.dtype = *dtype;

  auto sh = v.find("shape");
  if (sh == v.end() || !sh->is_array()) return tensor_error(path, name, "missing shape list");
  for (const json& d : *sh) {
    std::optional<int64_t> dim = as_index(d);
    if (!dim) {
      return tensor_error(
          path, name,
          fmt::format("shape {}: dimensions must be non-negative integers", sh->dump()));
    }
    t.shape.push_back(*dim);
  }
  std::optional<int64_t> numel = checked_numel(t.shape);
  uint64_t expected_bytes = 0;
  if (!numel ||
      __builtin_mul_overflow(static_cast<uint64_t>(*numel), dtype_size(t.dtype), &expected_bytes)) {
    return tensor_error(path, name, fmt::format("shape {} overflows", sh->dump()));
  }

  auto off = v.find("data_offsets");
  if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
      !(*off)[1].is_number_unsigned()) {
    return tensor_error(path, name, "data_offsets must be a list of two non-negative integers");
  }
  t.begin = (*off)[0].get<uint64_t>();
  t.end = (*off)[1].get<uint64_t>();
  if (t.end < t.begin) {
    return tensor_error(path, name,
                        fmt::format("data_offsets [{}, {}] end before begin", t.begin, t.end));
  }
  if (t.end > data_size) {
    return tensor_error(
        path, name,
        fmt::format("data_offsets [{}, {}] extend beyond the data region ({} bytes)", t.begin,
                    t.end, data_size));
  }
  if (t.end - t.begin != expected_bytes) {
    return tensor_error(path, name,
                        fmt::format("holds {} bytes but shape {} of {} needs {}", t.end - t.begin,
                                    sh->dump(), dtype_name(t.dtype), expected_bytes));
  }
  return t;
}

Result<std::string> read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found(fmt::format("{}: cannot open", path.string()));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return internal_error(fmt::format("{}: read failed", path.string()));
  return ss.str();
}

// A shard name from an index must stay inside the model directory.
bool safe_relative_name(const std::string& name) {
  if (name.empty()) return false;
  std::filesystem::path p(name);
  if (p.is_absolute() || p.has_root_name() || p.has_root_directory()) return false;
  for (const auto& part : p) {
    if (part == "..") return false;
  }
  return true;
}

}  // namespace

std::optional<int64_t> checked_numel(std::span<const int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) return std::nullopt;
  }
  return n;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) munmap(map_, size_);
}

const SafetensorsTensor* SafetensorsFile::find(std::string_view name) const {
  auto it =
      std::lower_bound(tensors_.begin(), tensors_.end(), name,
                       [](const SafetensorsTensor& t, std::string_view n) { return t.name < n; });
  if (it == tensors_.end() || it->name != name) return nullptr;
  return &*it;
}

Result<std::unique_ptr<SafetensorsFile>> SafetensorsFile::open(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return not_found(fmt::format("{}: cannot open: {}", path.string(), std::strerror(errno)));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return not_found(fmt::format("{}: not a regular file", path.string()));
  }
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->size_ = static_cast<uint64_t>(st.st_size);
  if (file->size_ < 8) {
    ::close(fd);
    return file_error(path,
                      fmt::format("{} bytes is too small for a safetensors header", file->size_));
  }
  void* map = mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
  int map_errno = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED) {
    return internal_error(
        fmt::format("{}: mmap failed: {}", path.string(), std::strerror(map_errno)));
  }
  file->map_ = map;
  const auto* base = static_cast<const std::byte*>(map);

  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) {
    header_len = (header_len << 8) | static_cast<uint8_t>(base[i]);
  }
  if (header_len > kMaxSafetensorsHeaderBytes) {
    return file_error(path, fmt::format("header length {} is over the {} byte limit", header_len,
                                        kMaxSafetensorsHeaderBytes));
  }
  if (header_len > file->size_ - 8) {
    return file_error(path, fmt::format("header length {} extends beyond the file ({} bytes)",
                                        header_len, file->size_));
  }
  const uint64_t data_size = file->size_ - 8 - header_len;
  const std::byte* data = base + 8 + header_len;
  const char* header = reinterpret_cast<const char*>(base + 8);

  json doc = json::parse(header, header + header_len, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return file_error(path, "header is not valid JSON");
  if (!doc.is_object()) return file_error(path, "header is not a JSON object");

  for (const auto& [key, value] : doc.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) return file_error(path, "__metadata__ is not an object");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) {
          return file_error(path, fmt::format("__metadata__ {}: value is not a string", quote(mk)));
        }
        file->metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    BATON_ASSIGN_OR_RETURN(SafetensorsTensor t, parse_entry(path, key, value, data_size));
    t.data = data + t.begin;
    file->tensors_.push_back(std::move(t));
  }

  // Overlap check: in offset order each tensor must start at or after the end
  // of the previous one. Empty tensors occupy nothing and cannot overlap.
  std::vector<const SafetensorsTensor*> by_offset;
  for (const auto& t : file->tensors_) {
    if (t.end > t.begin) by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const auto* a, const auto* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const SafetensorsTensor* prev = by_offset[i - 1];
    const SafetensorsTensor* cur = by_offset[i];
    if (cur->begin < prev->end) {
      return tensor_error(
          path, cur->name,
          fmt::format("data_offsets [{}, {}] overlap tensor {} [{}, {}]", cur->begin, cur->end,
                      quote(prev->name), prev->begin, prev->end));
    }
  }
  std::sort(file->tensors_.begin(), file->tensors_.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  return file;
}

const SafetensorsCheckpoint::Entry* SafetensorsCheckpoint::find(std::string_view name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

Result<SafetensorsCheckpoint> SafetensorsCheckpoint::open(const std::filesystem::path& model_dir) {
  SafetensorsCheckpoint ckpt;
  std::error_code ec;
  const std::filesystem::path single = model_dir / "model.safetensors";
  const std::filesystem::path index_path = model_dir / "model.safetensors.index.json";

  if (std::filesystem::exists(single, ec)) {
    BATON_ASSIGN_OR_RETURN(auto file, SafetensorsFile::open(single));
    for (const auto& t : file->tensors()) ckpt.tensors_.emplace(t.name, Entry{&t, file.get()});
    ckpt.files_.push_back(std::move(file));
    return ckpt;
  }
  if (!std::filesystem::exists(index_path, ec)) {
    return not_found(fmt::format("{}: no model.safetensors or model.safetensors.index.json",
                                 model_dir.string()));
  }

  BATON_ASSIGN_OR_RETURN(std::string text, read_text(index_path));
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object())
    return file_error(index_path, "not a valid JSON object");
  auto wm = doc.find("weight_map");
  if (wm == doc.end() || !wm->is_object()) {
    return file_error(index_path, "weight_map: missing or not an object");
  }

  std::map<std::string, const SafetensorsFile*> shards;   // shard name -> opened file
  std::map<std::string, std::string, std::less<>> owner;  // tensor -> shard name
  for (const auto& [tensor, shard_json] : wm->items()) {
    if (!shard_json.is_string()) {
      return file_error(index_path, fmt::format("weight_map: tensor {}: shard name is not a string",
                                                quote(tensor)));
    }
    std::string shard = shard_json.get<std::string>();
    if (!safe_relative_name(shard)) {
      return file_error(index_path,
                        fmt::format("weight_map: tensor {}: shard name {} is not a file inside the "
                                    "model directory",
                                    quote(tensor), quote(shard)));
    }
    auto it = shards.find(shard);
    if (it == shards.end()) {
      BATON_ASSIGN_OR_RETURN(auto file, SafetensorsFile::open(model_dir / shard));
      it = shards.emplace(shard, file.get()).first;
      ckpt.files_.push_back(std::move(file));
    }
    const SafetensorsTensor* t = it->second->find(tensor);
    if (t == nullptr) {
      return tensor_error(
          it->second->path(), tensor,
          fmt::format("listed in {} but not present in the shard", index_path.filename().string()));
    }
    owner.emplace(tensor, shard);
    ckpt.tensors_.emplace(tensor, Entry{t, it->second});
  }
  // Every tensor a shard holds must be the one the index points at: a copy in
  // a second shard, or one the index forgot, means a broken or mixed export.
  for (const auto& [shard, file] : shards) {
    for (const auto& t : file->tensors()) {
      auto o = owner.find(t.name);
      if (o == owner.end()) {
        return tensor_error(file->path(), t.name,
                            fmt::format("not listed in {}", index_path.filename().string()));
      }
      if (o->second != shard) {
        return tensor_error(
            file->path(), t.name,
            fmt::format("present in two shards: {} and {}", quote(o->second), quote(shard)));
      }
    }
  }
  return ckpt;
}

Status write_safetensors(const std::filesystem::path& path, std::span<const TensorToWrite> tensors,
                         const std::map<std::string, std::string>& metadata) {
  std::vector<const TensorToWrite*> order;
  for (const auto& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](const auto* a, const auto* b) { return a->name < b->name; });

  json header = json::object();
  if (!metadata.empty()) {
    json meta = json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    const TensorToWrite& t = *order[i];
    if (t.name == "__metadata__" || t.name.empty()) {
      return invalid_argument(
          fmt::format("{}: invalid tensor name {}", path.string(), quote(t.name)));
    }
    if (i > 0 && order[i - 1]->name == t.name) {
      return invalid_argument(fmt::format("{}: duplicate tensor {}", path.string(), quote(t.name)));
    }
    std::optional<int64_t> numel = checked_numel(t.shape);
    if (!numel || static_cast<uint64_t>(*numel) * dtype_size(t.dtype) != t.data.size()) {
      return invalid_argument(fmt::format("{}: tensor {}: {} bytes do not match its shape",
                                          path.string(), quote(t.name), t.data.size()));
    }
    header[t.name] = {{"dtype", std::string(dtype_name(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.data.size()}}};
    offset += t.data.size();
  }
  std::string text = header.dump();
  // Pad with spaces (valid JSON whitespace) so the data region is 8-aligned.
  text.append((8 - text.size() % 8) % 8, ' ');

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return internal_error(fmt::format("{}: cannot create", path.string()));
  char len[8];
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out.write(len, 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const auto* t : order) {
    out.write(reinterpret_cast<const char*>(t->data.data()),
              static_cast<std::streamsize>(t->data.size()));
  }
  out.close();
  if (!out) return internal_error(fmt::format("{}: write failed", path.string()));
  return Status::ok();
}

}  // namespace baton::model
