#include "engine/kv_device_staging.h"

#include <algorithm>
#include <iterator>
#include <map>
#include <mutex>

namespace baton::engine {

struct KvStagingArena::State {
  std::byte* base = nullptr;
  uint64_t capacity = 0;
  uint64_t align = 1;
  mutable std::mutex mu;
  std::map<uint64_t, uint64_t> free;  // offset -> length, disjoint and coalesced
  uint64_t used = 0;
  size_t slices = 0;

  void give_back(uint64_t offset, uint64_t length) {
    std::lock_guard lock(mu);
    used -= length;
    --slices;
    auto next = free.lower_bound(offset);
    if (next != free.end() && offset + length == next->first) {
      length += next->second;
      next = free.erase(next);
    }
    if (next != free.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == offset) {
        prev->second += length;
        return;
      }
    }
    free.emplace(offset, length);
  }
};

namespace {

// Returns its range to the arena's state when the last owner goes.
struct SliceLease {
  SliceLease(std::shared_ptr<KvStagingArena::State> s, uint64_t o, uint64_t l)
      : state(std::move(s)), offset(o), length(l) {}
  ~SliceLease() { state->give_back(offset, length); }
  SliceLease(const SliceLease&) = delete;
  SliceLease& operator=(const SliceLease&) = delete;
  std::shared_ptr<KvStagingArena::State> state;
  uint64_t offset;
  uint64_t length;
};

}  // namespace

KvStagingArena::KvStagingArena(void* base, uint64_t bytes, uint64_t align)
    : state_(std::make_shared<State>()) {
  BATON_CHECK(base != nullptr && bytes > 0);
  BATON_CHECK(align > 0 && (align & (align - 1)) == 0);
  state_->base = static_cast<std::byte*>(base);
  state_->capacity = bytes;
  state_->align = align;
  state_->free.emplace(0, bytes);
}

KvStagingArena::~KvStagingArena() = default;

Result<KvDeviceSlice> KvStagingArena::take(uint64_t bytes) {
  State& s = *state_;
  if (bytes == 0 || bytes > s.capacity) {
    return invalid_argument("KV staging: a slice of " + std::to_string(bytes) +
                            " bytes from an area of " + std::to_string(s.capacity));
  }
  // Ranges start aligned and lengths are rounded up, so every free range
  // starts aligned too.
  const uint64_t length = std::min(s.capacity, (bytes + s.align - 1) / s.align * s.align);
  std::lock_guard lock(s.mu);
  for (auto it = s.free.begin(); it != s.free.end(); ++it) {
    if (it->second < length) continue;
    const uint64_t offset = it->first;
    const uint64_t rest = it->second - length;
    s.free.erase(it);
    if (rest > 0) s.free.emplace(offset + length, rest);
    s.used += length;
    ++s.slices;
    KvDeviceSlice slice;
    slice.data = s.base + offset;
    slice.bytes = bytes;
    slice.owner = std::make_shared<SliceLease>(state_, offset, length);
    return slice;
  }
  return resource_exhausted("KV staging area full: " + std::to_string(s.used) + " of " +
                            std::to_string(s.capacity) + " bytes in use by " +
                            std::to_string(s.slices) + " transfer(s), " + std::to_string(bytes) +
                            " more asked");
}

uint64_t KvStagingArena::capacity() const { return state_->capacity; }

uint64_t KvStagingArena::used() const {
  std::lock_guard lock(state_->mu);
  return state_->used;
}

size_t KvStagingArena::slices() const {
  std::lock_guard lock(state_->mu);
  return state_->slices;
}

void* KvStagingArena::base() const { return state_->base; }

}  // namespace baton::engine
