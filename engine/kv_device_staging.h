#pragma once

// KvStagingArena: hands out slices of one block of backend memory (a GPU
// transport's registered staging area) for requests' KV exports and imports
// (KvDeviceSlice in engine.h), so the area is allocated and registered once
// and each request only takes a range of it.
//
// Bounded: take() never waits; a request that does not fit now is
// kResourceExhausted, the same answer as "no KV room". A slice goes back to
// the arena when the last copy of its KvDeviceSlice::owner is dropped, which
// may happen after the arena object itself is gone (the ranges' bookkeeping
// is shared with the owners); the memory itself must outlive every slice.
//
// Thread-safety: every method is thread-safe, and so is dropping an owner.

#include <cstdint>
#include <memory>

#include "common/status.h"
#include "engine/engine.h"

namespace baton::engine {

class KvStagingArena {
 public:
  // Slices of [base, base + bytes), each starting at a multiple of `align`
  // bytes from base (a power of two).
  KvStagingArena(void* base, uint64_t bytes, uint64_t align = 256);
  ~KvStagingArena();
  KvStagingArena(const KvStagingArena&) = delete;
  KvStagingArena& operator=(const KvStagingArena&) = delete;

  // A slice of at least `bytes` bytes (data, bytes and owner set).
  // kInvalidArgument for 0 bytes or more than the whole arena,
  // kResourceExhausted when no free range is large enough now.
  Result<KvDeviceSlice> take(uint64_t bytes);

  uint64_t capacity() const;
  uint64_t used() const;  // bytes in slices handed out, alignment included
  size_t slices() const;  // slices handed out and not yet returned
  void* base() const;

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace baton::engine
