// The control side of CudaIpcTransport: connections, the offer / grant /
// done / ack exchange, and peer allocations mapped with CUDA IPC.

#include <algorithm>
#include <cstring>

#include "kvtransfer/cuda_ipc/cuda_ipc_impl.h"
#include "kvtransfer/cuda_ipc/device_checksum.h"

namespace baton::kvtransfer {

using namespace cuda_ipc_detail;

namespace {

control::Frame frame(control::Kind kind, uint64_t id, StatusCode code = StatusCode::kOk) {
  control::Frame f;
  f.kind = kind;
  f.transfer_id = id;
  f.code = static_cast<uint64_t>(code);
  return f;
}

// A status code from the peer; anything unknown reads as kInternal.
StatusCode peer_code(uint64_t code) {
  return code <= static_cast<uint64_t>(StatusCode::kDeadlineExceeded)
             ? static_cast<StatusCode>(code)
             : StatusCode::kInternal;
}

}  // namespace

// ---- connections ----

void CudaIpcTransport::Impl::accept() {
  acceptor.async_accept([this](const error_code& ec, tcp::socket s) {
    if (stopping || !acceptor.is_open()) return;
    if (!ec) {
      error_code ignored;
      auto remote = s.remote_endpoint(ignored);
      auto c = std::make_shared<Conn>(
          io, false, remote.address().to_string() + ":" + std::to_string(remote.port()));
      c->sock = std::move(s);
      c->sock.set_option(tcp::no_delay(true), ignored);
      c->sock.set_option(boost::asio::socket_base::keep_alive(true), ignored);
      c->connected = true;
      in_conns.insert(c);
      read_frame(c);
    }
    accept();
  });
}

void CudaIpcTransport::Impl::connect(const std::shared_ptr<Conn>& c) {
  auto hp = parse_peer(c->peer);  // validated on submit
  c->connect_timer.expires_after(options.connect_timeout);
  c->connect_timer.async_wait([this, c](const error_code& ec) {
    if (ec || c->connected) return;
    conn_failed(c, unavailable("connecting to " + c->peer + ": timed out"));
  });
  c->resolver.async_resolve(
      hp->first, std::to_string(hp->second),
      [this, c](const error_code& ec, const tcp::resolver::results_type& results) {
        if (c->closed) return;
        if (ec) return conn_failed(c, unavailable("resolving " + c->peer + ": " + ec.message()));
        boost::asio::async_connect(
            c->sock, results, [this, c](const error_code& ec2, const tcp::endpoint&) {
              if (c->closed) return;
              if (ec2) {
                return conn_failed(c,
                                   unavailable("connecting to " + c->peer + ": " + ec2.message()));
              }
              c->connected = true;
              c->connect_timer.cancel();
              error_code ignored;
              c->sock.set_option(tcp::no_delay(true), ignored);
              c->sock.set_option(boost::asio::socket_base::keep_alive(true), ignored);
              read_frame(c);
              auto unsent = std::move(c->unsent);
              c->unsent.clear();
              for (auto& op : unsent) {
                if (is_pending(*op)) offer(c, op);
              }
            });
      });
}

void CudaIpcTransport::Impl::read_frame(const std::shared_ptr<Conn>& c) {
  boost::asio::async_read(
      c->sock, boost::asio::buffer(c->rbuf), [this, c](const error_code& ec, size_t) {
        if (c->closed) return;
        if (ec) {
          return conn_failed(
              c, unavailable("control connection with " + c->peer + " lost: " + ec.message()));
        }
        auto f = control::decode(c->rbuf.data());
        if (!f) {
          return conn_failed(c, unavailable("peer " + c->peer + " sent a malformed frame"));
        }
        on_frame(c, *f);
        if (!c->closed) read_frame(c);
      });
}

void CudaIpcTransport::Impl::send_frame(const std::shared_ptr<Conn>& c, const control::Frame& f) {
  if (c->closed) return;
  c->wq.push_back(control::encode(f));
  if (!c->writing && c->connected) write_next(c);
}

void CudaIpcTransport::Impl::write_next(const std::shared_ptr<Conn>& c) {
  if (c->wq.empty() || c->closed) {
    c->writing = false;
    return;
  }
  c->writing = true;
  boost::asio::async_write(
      c->sock, boost::asio::buffer(c->wq.front()), [this, c](const error_code& ec, size_t) {
        if (c->closed) return;
        if (ec) {
          return conn_failed(c, unavailable("writing to " + c->peer + ": " + ec.message()));
        }
        c->wq.pop_front();
        write_next(c);
      });
}

void CudaIpcTransport::Impl::conn_failed(const std::shared_ptr<Conn>& c, const Status& status) {
  if (c->closed) return;
  c->closed = true;
  error_code ignored;
  c->resolver.cancel();
  c->connect_timer.cancel();
  c->sock.close(ignored);
  if (c->outgoing) {
    auto it = out_conns.find(c->peer);
    if (it != out_conns.end() && it->second == c) out_conns.erase(it);
    auto sends = std::move(c->sends);
    c->sends.clear();
    for (auto& [id, op] : sends) {
      if (op->io == Op::Io::kCopying) {
        // The source is still being read: fail once the copy stops.
        if (!op->abort_requested) {
          op->abort_requested = true;
          op->aborted = status;
        }
      } else {
        finish(op, status);
      }
    }
    auto unsent = std::move(c->unsent);
    c->unsent.clear();
    for (auto& op : unsent) finish(op, status);
    // The peer process may be gone: let go of its allocations.
    for (auto it = mappings.begin(); it != mappings.end();) {
      auto next = std::next(it);
      if (it->first.first == c->peer_nonce) {
        it->second.forget = true;
        if (it->second.users == 0) close_mapping(it);
      }
      it = next;
    }
  } else {
    in_conns.erase(c);
    for (uint64_t id : c->offers) {
      auto it = offers.find(id);
      if (it != offers.end() && it->second.conn.lock() == c) offers.erase(it);
    }
    c->offers.clear();
    set_offer_count();
    auto granted = std::move(c->granted);
    c->granted.clear();
    for (auto& [id, op] : granted) sender_gone(op, status);
  }
}

void CudaIpcTransport::Impl::on_frame(const std::shared_ptr<Conn>& c, const control::Frame& f) {
  using control::Kind;
  if (c->outgoing) {
    switch (f.kind) {
      case Kind::kGrant:
        return on_grant(c, f);
      case Kind::kRefuse:
      case Kind::kAck: {
        auto it = c->sends.find(f.transfer_id);
        if (it == c->sends.end()) return;  // withdrawn or cancelled meanwhile
        auto op = it->second;
        if (op->io == Op::Io::kCopying) return;  // not expected; the copy's end decides
        c->sends.erase(it);
        const StatusCode code = peer_code(f.code);
        if (code == StatusCode::kOk && f.kind == Kind::kAck) return finish(op, Status::ok());
        return finish(op, Status(code == StatusCode::kOk ? StatusCode::kInternal : code,
                                 "transfer " + std::to_string(op->wire_id) + " " +
                                     (f.kind == Kind::kAck ? "failed at " : "refused by ") +
                                     c->peer + ": " + std::string(code_name(code))));
      }
      case Kind::kRevoke: {
        auto it = c->sends.find(f.transfer_id);
        if (it != c->sends.end() && it->second->io == Op::Io::kCopying) it->second->revoked = true;
        return;
      }
      case Kind::kForget: {
        auto it = mappings.find({f.nonce, f.region});
        if (it == mappings.end()) return;
        it->second.forget = true;
        if (it->second.users == 0) close_mapping(it);
        return;
      }
      default:
        return conn_failed(c, unavailable("peer " + c->peer + " sent an unexpected frame"));
    }
  }
  switch (f.kind) {
    case Kind::kOffer:
      return on_offer(c, f);
    case Kind::kChunk:
      return on_chunk(c, f);
    case Kind::kDone:
      return on_done(c, f);
    default:
      return conn_failed(c, unavailable("peer " + c->peer + " sent an unexpected frame"));
  }
}

// ---- sending ----

void CudaIpcTransport::Impl::start_send(const std::shared_ptr<Op>& op) {
  if (!is_pending(*op)) return;
  if (stopping) return finish(op, cancelled("transport shut down"));
  auto& conn = out_conns[op->peer];
  if (!conn || conn->closed) {
    conn = std::make_shared<Conn>(io, true, op->peer);
    connect(conn);
  }
  op->conn = conn;
  if (!conn->connected) {
    op->io = Op::Io::kQueued;
    conn->unsent.push_back(op);
    return;
  }
  offer(conn, op);
}

void CudaIpcTransport::Impl::offer(const std::shared_ptr<Conn>& c, const std::shared_ptr<Op>& op) {
  if (c->sends.count(op->wire_id) > 0) {
    return finish(
        op, Status(StatusCode::kConflict, "a send of transfer " + std::to_string(op->wire_id) +
                                              " to " + c->peer + " is already in flight"));
  }
  op->io = Op::Io::kOffered;
  c->sends[op->wire_id] = op;
  auto f = frame(control::Kind::kOffer, op->wire_id);
  f.bytes = op->bytes;
  send_frame(c, f);
}

void CudaIpcTransport::Impl::on_grant(const std::shared_ptr<Conn>& c, const control::Frame& f) {
  c->peer_nonce = f.nonce;
  auto it = c->sends.find(f.transfer_id);
  if (it == c->sends.end() || it->second->io != Op::Io::kOffered) return;
  auto op = it->second;
  auto fail = [&](Status why) {
    c->sends.erase(op->wire_id);
    send_frame(c, frame(control::Kind::kDone, op->wire_id, why.code()));
    finish(op, std::move(why));
  };
  if (f.bytes != op->bytes) {
    return fail(invalid_argument("transfer " + std::to_string(op->wire_id) + ": sending " +
                                 std::to_string(op->bytes) + " bytes, receive posted for " +
                                 std::to_string(f.bytes)));
  }
  bool direct_access = true;
  auto dst = map_destination(op, f, direct_access);
  if (!dst.is_ok()) return fail(dst.status());
  op->io = Op::Io::kCopying;
  // With verify the copy goes in pieces, each reported to the receiver as it
  // lands so that it checksums them while the next ones are copied.
  const uint64_t chunk = options.verify ? options.chunk_bytes : op->bytes;
  const bool use_kernel = options.kernel_copy && direct_access &&
                          reinterpret_cast<uintptr_t>(*dst) % 16 == 0 &&
                          reinterpret_cast<uintptr_t>(op->data) % 16 == 0;
  Status s;
  for (uint64_t off = 0; off < op->bytes && s.is_ok(); off += chunk) {
    const uint64_t end = std::min(op->bytes, off + chunk);
    const cudaError_t e =
        use_kernel ? cuda_ipc::launch_copy(*dst + off, op->data + off, end - off, copy_stream)
                   : cudaMemcpyAsync(*dst + off, op->data + off, end - off, cudaMemcpyDefault,
                                     copy_stream);
    if (e != cudaSuccess) {
      cudaGetLastError();
      s = internal_error(cuda_error("copying transfer " + std::to_string(op->wire_id), e));
    } else if (end < op->bytes) {
      s = notify(true, op, false, end);
    }
  }
  if (!s.is_ok()) {
    op->abort_requested = true;
    op->aborted = s;
  }
  if (Status n = notify(true, op, true); !n.is_ok()) {
    // Without a completion report, wait here: the copy must be over before
    // the source is given back.
    cudaStreamSynchronize(copy_stream);
    if (!op->abort_requested) {
      op->abort_requested = true;
      op->aborted = n;
    }
    unmap(op->mapping);
    op->mapping = {0, 0};
    return send_finished_copy(op);
  }
  // The source checksum runs beside the copy: both only read the source.
  if (options.verify) {
    Status v = queue_sum(op, 0, op->bytes);
    if (v.is_ok()) v = collect_sum(op);
    if (!v.is_ok() && !op->abort_requested) {
      op->abort_requested = true;
      op->aborted = v;
    }
  }
}

void CudaIpcTransport::Impl::chunk_copied(const std::shared_ptr<Op>& op, uint64_t end) {
  if (stopping || !is_pending(*op) || op->abort_requested || op->revoked) return;
  auto c = op->conn.lock();
  if (!c || c->closed || c->sends.count(op->wire_id) == 0) return;
  auto f = frame(control::Kind::kChunk, op->wire_id);
  f.offset = end;
  send_frame(c, f);
}

void CudaIpcTransport::Impl::send_finished_copy(const std::shared_ptr<Op>& op) {
  auto c = op->conn.lock();
  const bool attached = c && !c->closed && c->sends.count(op->wire_id) > 0;
  if (op->abort_requested || op->revoked) {
    put_slot(op->slot);
    Status why = op->abort_requested ? op->aborted
                                     : cancelled("transfer " + std::to_string(op->wire_id) +
                                                 ": the receiver cancelled it during the copy");
    if (attached) {
      c->sends.erase(op->wire_id);
      send_frame(c, frame(control::Kind::kDone, op->wire_id,
                          op->revoked ? StatusCode::kCancelled : why.code()));
    }
    return finish(op, std::move(why));
  }
  if (!attached) {
    put_slot(op->slot);
    return finish(op, unavailable("control connection to " + op->peer + " lost"));
  }
  auto f = frame(control::Kind::kDone, op->wire_id);
  f.bytes = op->bytes;
  if (op->slot >= 0) {
    f.value = slot_sum(op->slot, op->bytes);
    f.region = 1;  // a checksum is present
  }
  put_slot(op->slot);
  op->io = Op::Io::kAwaitingAck;
  send_frame(c, f);
}

// ---- peer memory ----

Result<uint8_t*> CudaIpcTransport::Impl::map_destination(const std::shared_ptr<Op>& op,
                                                         const control::Frame& grant,
                                                         bool& direct_access) {
  if (grant.nonce == nonce) {
    // Same process: the address is ours too. Peer access (NVLink) when the
    // destination is on another device, else the copy is staged by CUDA.
    auto* dst = reinterpret_cast<uint8_t*>(grant.value);
    cudaPointerAttributes attr{};
    if (cudaPointerGetAttributes(&attr, dst) == cudaSuccess && attr.device != options.device) {
      int can = 0;
      cudaDeviceCanAccessPeer(&can, options.device, attr.device);
      if (can && peer_enabled.insert(attr.device).second) {
        cudaDeviceEnablePeerAccess(attr.device, 0);
        cudaGetLastError();  // already enabled is fine
      }
      direct_access = can != 0;
    }
    cudaGetLastError();
    return dst;
  }
  const std::pair<uint64_t, uint64_t> key{grant.nonce, grant.region};
  auto it = mappings.find(key);
  if (it != mappings.end() && it->second.handle != grant.handle) {
    // A new allocation behind the same registration id cannot happen, but a
    // stale mapping must never be written through.
    it->second.forget = true;
    if (it->second.users == 0) close_mapping(it);
    it = mappings.end();
  }
  if (it == mappings.end()) {
    trim_mappings();
    cudaIpcMemHandle_t h;
    std::memcpy(&h, grant.handle.data(), sizeof(h));
    void* base = nullptr;
    const cudaError_t e = cudaIpcOpenMemHandle(&base, h, cudaIpcMemLazyEnablePeerAccess);
    if (e != cudaSuccess) {
      cudaGetLastError();
      return unavailable(cuda_error("opening the receiver's memory of transfer " +
                                        std::to_string(op->wire_id) +
                                        " (cudaIpcOpenMemHandle; is the peer on this host?)",
                                    e));
    }
    Mapping m;
    m.handle = grant.handle;
    m.base = static_cast<uint8_t*>(base);
    it = mappings.emplace(key, m).first;
    std::lock_guard lock(mu);
    mapping_count = mappings.size();
  }
  it->second.users++;
  it->second.last_used = now();
  op->mapping = key;
  return it->second.base + grant.offset;
}

void CudaIpcTransport::Impl::unmap(std::pair<uint64_t, uint64_t> key) {
  auto it = mappings.find(key);
  if (it == mappings.end()) return;
  if (--it->second.users == 0 && it->second.forget) close_mapping(it);
}

void CudaIpcTransport::Impl::close_mapping(
    std::map<std::pair<uint64_t, uint64_t>, Mapping>::iterator it) {
  if (it->second.base) cudaIpcCloseMemHandle(it->second.base);
  cudaGetLastError();
  mappings.erase(it);
  std::lock_guard lock(mu);
  mapping_count = mappings.size();
}

void CudaIpcTransport::Impl::trim_mappings() {
  while (mappings.size() >= options.max_open_mappings) {
    auto victim = mappings.end();
    for (auto it = mappings.begin(); it != mappings.end(); ++it) {
      if (it->second.users == 0 &&
          (victim == mappings.end() || it->second.last_used < victim->second.last_used)) {
        victim = it;
      }
    }
    if (victim == mappings.end()) return;  // all in use: go over the bound briefly
    close_mapping(victim);
  }
}

void CudaIpcTransport::Impl::forget_region(uint64_t region) {
  for (auto& c : in_conns) {
    if (c->regions.erase(region) == 0) continue;
    auto f = frame(control::Kind::kForget, 0);
    f.nonce = nonce;
    f.region = region;
    send_frame(c, f);
  }
}

// ---- receiving ----

void CudaIpcTransport::Impl::set_offer_count() {
  std::lock_guard lock(mu);
  offer_count = offers.size();
}

void CudaIpcTransport::Impl::start_receive(const std::shared_ptr<Op>& op) {
  if (!is_pending(*op)) return;
  if (stopping) return finish(op, cancelled("transport shut down"));
  if (auto o = offers.find(op->wire_id); o != offers.end()) {
    Offer offer = o->second;
    offers.erase(o);
    set_offer_count();
    auto c = offer.conn.lock();
    if (!c || c->closed) {
      op->io = Op::Io::kPosted;
      posted[op->wire_id] = op;
      return;
    }
    c->offers.erase(op->wire_id);
    if (offer.bytes != op->bytes) {
      send_frame(c, frame(control::Kind::kRefuse, op->wire_id, StatusCode::kInvalidArgument));
      return finish(op,
                    invalid_argument("transfer " + std::to_string(op->wire_id) + ": offered with " +
                                     std::to_string(offer.bytes) + " bytes, receive posted for " +
                                     std::to_string(op->bytes)));
    }
    return grant(c, op);
  }
  if (auto r = refused.find(op->wire_id); r != refused.end()) {
    Status why = r->second.first;
    refused.erase(r);
    return finish(op, why);
  }
  op->io = Op::Io::kPosted;
  posted[op->wire_id] = op;
}

void CudaIpcTransport::Impl::on_offer(const std::shared_ptr<Conn>& c, const control::Frame& f) {
  const uint64_t id = f.transfer_id;
  if (auto p = posted.find(id); p != posted.end()) {
    auto op = p->second;
    posted.erase(p);
    if (op->bytes != f.bytes) {
      send_frame(c, frame(control::Kind::kRefuse, id, StatusCode::kInvalidArgument));
      return finish(op, invalid_argument("transfer " + std::to_string(id) + ": offered with " +
                                         std::to_string(f.bytes) + " bytes, receive posted for " +
                                         std::to_string(op->bytes)));
    }
    return grant(c, op);
  }
  if (offers.count(id) > 0 || c->granted.count(id) > 0) {
    return send_frame(c, frame(control::Kind::kRefuse, id, StatusCode::kConflict));
  }
  if (offers.size() >= options.max_pending_offers) {
    refuse(id, resource_exhausted("transfer " + std::to_string(id) +
                                  ": offered before its receive was posted while " +
                                  std::to_string(offers.size()) + " offers already wait"));
    return send_frame(c, frame(control::Kind::kRefuse, id, StatusCode::kResourceExhausted));
  }
  offers[id] = Offer{id, f.bytes, c, now() + options.offer_lease};
  c->offers.insert(id);
  set_offer_count();
}

void CudaIpcTransport::Impl::grant(const std::shared_ptr<Conn>& c, const std::shared_ptr<Op>& op) {
  Region region;
  {
    std::lock_guard lock(mu);
    auto r = regions.find(op->region);
    if (r != regions.end()) region = r->second;
  }
  op->io = Op::Io::kGranted;
  op->conn = c;
  c->granted[op->wire_id] = op;
  c->regions.insert(op->region);
  auto f = frame(control::Kind::kGrant, op->wire_id);
  f.bytes = op->bytes;
  f.nonce = nonce;
  f.region = op->region;
  f.offset = region.alloc_offset + static_cast<uint64_t>(op->data - region.base);
  f.value = reinterpret_cast<uint64_t>(op->data);
  f.handle = region.handle;
  send_frame(c, f);
}

void CudaIpcTransport::Impl::on_chunk(const std::shared_ptr<Conn>& c, const control::Frame& f) {
  auto g = c->granted.find(f.transfer_id);
  if (g == c->granted.end()) return;
  auto op = g->second;
  if (!options.verify || op->abort_requested || op->sender_settled ||
      (op->io != Op::Io::kGranted && op->io != Op::Io::kLanding)) {
    return;
  }
  // Pieces end on 16-byte boundaries; anything else is not from this sender.
  if (f.offset <= op->covered || f.offset > op->bytes || f.offset % 8 != 0) return;
  op->io = Op::Io::kLanding;
  Status s = queue_sum(op, op->covered, f.offset);
  if (!s.is_ok()) {
    op->abort_requested = true;
    op->aborted = s;
    return;
  }
  op->covered = f.offset;
}

void CudaIpcTransport::Impl::on_done(const std::shared_ptr<Conn>& c, const control::Frame& f) {
  const uint64_t id = f.transfer_id;
  auto g = c->granted.find(id);
  if (g == c->granted.end()) {
    // A withdrawn offer that was not granted yet.
    if (c->offers.erase(id) > 0) {
      offers.erase(id);
      set_offer_count();
    }
    return;
  }
  auto op = g->second;
  if (op->sender_settled) return;
  const StatusCode code = peer_code(f.code);
  if (code != StatusCode::kOk) {
    return sender_gone(op,
                       Status(code, "transfer " + std::to_string(id) + ": the sender " + c->peer +
                                        " gave up (" + std::string(code_name(code)) + ")"));
  }
  op->sender_settled = true;
  op->ack_needed = true;
  if (f.bytes != op->bytes) {
    op->sender_status =
        data_error("transfer " + std::to_string(id) + ": sender copied " + std::to_string(f.bytes) +
                   " bytes, expected " + std::to_string(op->bytes));
  } else if (options.verify && f.region == 1 && !op->abort_requested) {
    // Everything has landed: checksum what is left, then compare.
    op->has_expected = true;
    op->expected_sum = f.value;
    Status s = queue_sum(op, op->covered, op->bytes);
    if (s.is_ok()) {
      op->covered = op->bytes;
      s = collect_sum(op);
    }
    if (!s.is_ok()) {
      op->abort_requested = true;
      op->aborted = s;
    }
  }
  if (op->slot >= 0 && op->gpu_pending == 0) {
    // Checksums of earlier pieces may still read the slot: let them drain.
    if (!notify(false, op, true).is_ok()) cudaStreamSynchronize(sum_stream);
  }
  maybe_finish_receive(op);
}

void CudaIpcTransport::Impl::sender_gone(const std::shared_ptr<Op>& op, Status why) {
  if (op->sender_settled) return maybe_finish_receive(op);
  op->sender_settled = true;
  op->sender_status = std::move(why);
  if (op->slot >= 0 && op->gpu_pending == 0) {
    if (!notify(false, op, true).is_ok()) cudaStreamSynchronize(sum_stream);
  }
  maybe_finish_receive(op);
}

void CudaIpcTransport::Impl::maybe_finish_receive(const std::shared_ptr<Op>& op) {
  if (!op->sender_settled || op->gpu_pending > 0 || !is_pending(*op)) return;
  auto c = op->conn.lock();
  bool attached = false;
  if (c && !c->closed) {
    auto g = c->granted.find(op->wire_id);
    if (g != c->granted.end() && g->second == op) {
      c->granted.erase(g);
      attached = true;
    }
  }
  Status verdict;
  if (op->abort_requested) {
    verdict = op->aborted;
  } else if (!op->sender_status.is_ok()) {
    verdict = op->sender_status;
  } else if (op->has_expected && op->slot >= 0) {
    const uint64_t actual = slot_sum(op->slot, op->bytes);
    if (actual != op->expected_sum) {
      char buf[96];
      std::snprintf(buf, sizeof(buf), ": sender says %016llx, received bytes give %016llx",
                    static_cast<unsigned long long>(op->expected_sum),
                    static_cast<unsigned long long>(actual));
      verdict = data_error("checksum mismatch on transfer " + std::to_string(op->wire_id) + " (" +
                           std::to_string(op->bytes) + " bytes)" + buf);
    }
  }
  put_slot(op->slot);
  if (attached && op->ack_needed) {
    send_frame(c, frame(control::Kind::kAck, op->wire_id, verdict.code()));
  }
  finish(op, std::move(verdict));
}

}  // namespace baton::kvtransfer
