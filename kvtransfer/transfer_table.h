#pragma once

// The part of a KvTransport that every implementation shares: its table of
// transfers by local id and what callers do with an entry of it (poll, wait,
// cancel, release, the finished callback). The transports keep their own
// I/O; this header only needs their Impl to provide
//
//   std::mutex mu;                        // guards ops, each op's state, on_finished
//   std::condition_variable cv;           // notified when an op finishes
//   std::map<uint64_t, std::shared_ptr<Op>> ops;   // by local id
//   std::shared_ptr<const KvTransport::FinishedCallback> on_finished;
//   boost::asio::io_context io;                 // the transport's I/O thread
//   void abort(const std::shared_ptr<Op>&, Status);   // on the I/O thread
//   std::map<uint64_t, std::pair<Status, Clock::TimePoint>> refused;  // I/O thread
//
// and Op to carry `TransferState state` and `finished_at` (under mu) and
// `uint64_t wire_id`.

#include <boost/asio/post.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>

#include "common/clock.h"
#include "common/status.h"
#include "kvtransfer/transport.h"

namespace baton::kvtransfer::transfer_table {

template <class Impl>
auto find(Impl& impl, TransferId id) -> std::decay_t<decltype(impl.ops.begin()->second)> {
  std::lock_guard lock(impl.mu);
  auto it = impl.ops.find(id.value);
  return it == impl.ops.end() ? nullptr : it->second;
}

inline Status unknown(TransferId id) {
  return not_found("unknown transfer " + std::to_string(id.value));
}

template <class Impl>
Result<TransferState> poll(Impl& impl, TransferId id) {
  std::lock_guard lock(impl.mu);
  auto it = impl.ops.find(id.value);
  if (it == impl.ops.end()) return unknown(id);
  return it->second->state;
}

template <class Impl>
Status wait(Impl& impl, TransferId id, Deadline deadline) {
  std::unique_lock lock(impl.mu);
  auto it = impl.ops.find(id.value);
  if (it == impl.ops.end()) return unknown(id);
  auto op = it->second;
  auto finished = [&] { return !op->state.pending(); };
  if (deadline.is_never()) {
    impl.cv.wait(lock, finished);
  } else if (!impl.cv.wait_until(lock, deadline.time_point(), finished)) {
    return deadline_exceeded("waiting for transfer " + std::to_string(op->wire_id) +
                             ": the wait's deadline passed first");
  }
  return op->state.status;
}

// Fails the transfer with kCancelled on the I/O thread, saying `why`.
template <class Impl, class OpPtr>
void abort_on_io(Impl& impl, const OpPtr& op, const char* why) {
  Impl* p = &impl;
  boost::asio::post(impl.io, [p, op, why] {
    p->abort(op, cancelled("transfer " + std::to_string(op->wire_id) + " " + why));
  });
}

template <class Impl>
Status cancel(Impl& impl, TransferId id) {
  auto op = find(impl, id);
  if (!op) return unknown(id);
  abort_on_io(impl, op, "cancelled");
  return Status::ok();
}

template <class Impl>
void release(Impl& impl, TransferId id) {
  auto op = find(impl, id);
  if (!op) return;
  abort_on_io(impl, op, "released");
  std::lock_guard lock(impl.mu);
  impl.ops.erase(id.value);
}

// Forgets the records of finished transfers older than `lease`, and the
// refusals (wire id -> {why, when}) older than `refusal_lease`.
template <class Impl>
void forget_expired(Impl& impl, Clock::TimePoint now, Clock::Duration lease,
                    Clock::Duration refusal_lease) {
  std::erase_if(impl.refused,
                [&](const auto& r) { return r.second.second + refusal_lease <= now; });
  std::lock_guard lock(impl.mu);
  std::erase_if(impl.ops, [&](const auto& o) {
    return !o.second->state.pending() && o.second->finished_at + lease <= now;
  });
}

template <class Impl>
void set_on_finished(Impl& impl, KvTransport::FinishedCallback cb) {
  std::lock_guard lock(impl.mu);
  impl.on_finished =
      cb ? std::make_shared<const KvTransport::FinishedCallback>(std::move(cb)) : nullptr;
}

}  // namespace baton::kvtransfer::transfer_table
