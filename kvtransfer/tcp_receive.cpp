// The receiving side of TcpTransport: the listener, incoming messages into
// posted destinations or the hold area, verification and acks.

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "kvtransfer/tcp_transport_impl.h"
#include "kvtransfer/wire.h"

namespace baton::kvtransfer {

void TcpTransport::Impl::accept() {
  acceptor.async_accept([this](const error_code& ec, tcp::socket s) {
    if (stopping || !acceptor.is_open()) return;
    if (!ec) {
      auto c = std::make_shared<InConn>(io);
      c->sock = std::move(s);
      tune(c->sock);
      in_conns.insert(c);
      read_header(c);
    }
    accept();
  });
}

void TcpTransport::Impl::read_header(const std::shared_ptr<InConn>& c) {
  c->sink = InConn::Sink::kNone;
  asio::async_read(c->sock, asio::buffer(c->header), [this, c](const error_code& ec, size_t) {
    if (c->closed) return;
    if (ec) return in_failed(c, ec);
    auto h = wire::decode_header(c->header.data());
    if (!h || h->kind != wire::FrameKind::kData || h->payload_bytes > kMaxTransferBytes) {
      return in_failed(c, asio::error::invalid_argument);
    }
    begin_message(c, *h);
  });
}

void TcpTransport::Impl::begin_message(const std::shared_ptr<InConn>& c,
                                       const wire::FrameHeader& h) {
  c->msg = h;
  c->got = 0;
  c->sum = wire::Checksum64();
  c->op.reset();
  c->held.reset();
  const uint64_t id = h.transfer_id;
  auto discard = [&](StatusCode code) {
    c->sink = InConn::Sink::kDiscard;
    c->discard_code = code;
  };
  if (auto p = posted.find(id); p != posted.end()) {
    auto op = p->second;
    posted.erase(p);
    if (op->bytes != h.payload_bytes) {
      finish(op, invalid_argument("transfer " + std::to_string(id) + ": message carries " +
                                  bytes_str(h.payload_bytes) + " bytes, receive posted for " +
                                  bytes_str(op->bytes)));
      discard(StatusCode::kInvalidArgument);
    } else {
      op->io = Op::Io::kReading;
      op->in = c;
      c->op = op;
      c->sink = InConn::Sink::kDest;
    }
  } else if (held.count(id) > 0) {
    discard(StatusCode::kConflict);
  } else {
    bool fits;
    {
      std::lock_guard lock(mu);
      fits = held_bytes <= options.max_unclaimed_bytes &&
             h.payload_bytes <= options.max_unclaimed_bytes - held_bytes;
      if (fits) held_bytes += h.payload_bytes;
    }
    if (!fits) {
      refuse(id, resource_exhausted(
                     "transfer " + std::to_string(id) + ": " + bytes_str(h.payload_bytes) +
                     " bytes arrived before its receive was posted and exceed the hold limit (" +
                     bytes_str(options.max_unclaimed_bytes) + " bytes)"));
      discard(StatusCode::kResourceExhausted);
    } else {
      auto hd = std::make_shared<Held>();
      hd->wire_id = id;
      hd->bytes = h.payload_bytes;
      hd->data.reset(new uint8_t[std::max<uint64_t>(h.payload_bytes, 1)]);
      held[id] = hd;
      c->held = hd;
      c->sink = InConn::Sink::kHold;
    }
  }
  read_payload(c);
}

void TcpTransport::Impl::read_payload(const std::shared_ptr<InConn>& c) {
  if (c->got == c->msg.payload_bytes) return read_trailer(c);
  const uint64_t left = c->msg.payload_bytes - c->got;
  uint8_t* target;
  uint64_t n;
  const InConn::Sink sink = c->sink;
  if (sink == InConn::Sink::kDiscard) {
    if (c->discard.empty()) c->discard.resize(kDiscardBytes);
    target = c->discard.data();
    n = std::min<uint64_t>(left, kDiscardBytes);
  } else {
    target = (sink == InConn::Sink::kDest ? c->op->data : c->held->data.get()) + c->got;
    n = std::min(left, kMaxReadBytes);
  }
  c->sock.async_read_some(asio::buffer(target, n),
                          [this, c, target, sink](const error_code& ec, size_t k) {
                            if (c->closed) return;
                            c->got += k;
                            if (ec == asio::error::operation_aborted)
                              return read_payload(c);  // switched to discard
                            if (ec) return in_failed(c, ec);
                            // Only touch the bytes if the sink did not change while they arrived
                            // (an aborted receive's memory belongs to its owner again).
                            if (sink == c->sink && sink != InConn::Sink::kDiscard)
                              c->sum.update(target, k);
                            read_payload(c);
                          });
}

// Reads and writes on an incoming connection resume where they stopped when
// abort() cancels them, so partial progress is tracked explicitly.
void TcpTransport::Impl::read_trailer(const std::shared_ptr<InConn>& c) {
  c->sock.async_read_some(
      asio::buffer(c->trailer.data() + c->trailer_got, c->trailer.size() - c->trailer_got),
      [this, c](const error_code& ec, size_t k) {
        if (c->closed) return;
        c->trailer_got += k;
        if (ec && ec != asio::error::operation_aborted) return in_failed(c, ec);
        if (c->trailer_got < c->trailer.size()) return read_trailer(c);
        c->trailer_got = 0;
        end_message(c);
      });
}

void TcpTransport::Impl::end_message(const std::shared_ptr<InConn>& c) {
  const uint64_t id = c->msg.transfer_id;
  const uint64_t expected = wire::decode_u64(c->trailer.data());
  const uint64_t actual = c->sum.finish();
  Status verdict;
  if (c->sink != InConn::Sink::kDiscard && expected != actual) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), ": sender says %016llx, received bytes give %016llx",
                  static_cast<unsigned long long>(expected),
                  static_cast<unsigned long long>(actual));
    verdict = data_error("checksum mismatch on transfer " + std::to_string(id) + " (" +
                         bytes_str(c->msg.payload_bytes) + " bytes)" + buf);
  }
  StatusCode code = verdict.code();
  switch (c->sink) {
    case InConn::Sink::kDest:
      finish(c->op, verdict);
      c->op.reset();
      break;
    case InConn::Sink::kHold: {
      auto hd = std::move(c->held);
      c->held.reset();
      if (!verdict.is_ok()) {
        drop_held(hd);
        refuse(id, verdict);
        if (hd->claimer) finish(hd->claimer, verdict);
      } else {
        hd->complete = true;
        hd->expires = now() + options.unclaimed_lease;
        if (hd->claimer) deliver(hd, hd->claimer);
      }
      break;
    }
    case InConn::Sink::kDiscard:
      code = c->discard_code;
      break;
    case InConn::Sink::kNone:
      break;
  }
  send_ack(c, id, code);
  read_header(c);
}

void TcpTransport::Impl::drop_held(const std::shared_ptr<Held>& hd) {
  auto it = held.find(hd->wire_id);
  if (it != held.end() && it->second == hd) held.erase(it);
  std::lock_guard lock(mu);
  held_bytes -= hd->bytes;
}

void TcpTransport::Impl::deliver(const std::shared_ptr<Held>& hd, const std::shared_ptr<Op>& op) {
  drop_held(hd);
  if (!is_pending(*op)) return;
  if (hd->bytes != op->bytes) {
    return finish(op, invalid_argument("transfer " + std::to_string(op->wire_id) +
                                       ": message carries " + bytes_str(hd->bytes) +
                                       " bytes, receive posted for " + bytes_str(op->bytes)));
  }
  std::memcpy(op->data, hd->data.get(), hd->bytes);
  finish(op, Status::ok());
}

void TcpTransport::Impl::send_ack(const std::shared_ptr<InConn>& c, uint64_t id, StatusCode code) {
  std::array<uint8_t, wire::kHeaderBytes> a{};
  wire::encode_header({wire::FrameKind::kAck, id, 0, static_cast<uint64_t>(code)}, a.data());
  c->acks.push_back(a);
  if (!c->ack_writing) write_acks(c);
}

void TcpTransport::Impl::write_acks(const std::shared_ptr<InConn>& c) {
  if (c->acks.empty() || c->closed) {
    c->ack_writing = false;
    return;
  }
  c->ack_writing = true;
  const auto& a = c->acks.front();
  c->sock.async_write_some(asio::buffer(a.data() + c->ack_sent, a.size() - c->ack_sent),
                           [this, c](const error_code& ec, size_t n) {
                             if (c->closed) return;
                             c->ack_sent += n;
                             if (ec && ec != asio::error::operation_aborted) {
                               return in_failed(c, ec);
                             }
                             if (c->ack_sent == c->acks.front().size()) {
                               c->acks.pop_front();
                               c->ack_sent = 0;
                             }
                             c->ack_writing = false;
                             write_acks(c);
                           });
}

void TcpTransport::Impl::in_failed(const std::shared_ptr<InConn>& c, const error_code& ec) {
  if (c->closed) return;
  c->closed = true;
  error_code ignored;
  c->sock.close(ignored);
  in_conns.erase(c);
  if (c->sink == InConn::Sink::kNone || c->sink == InConn::Sink::kDiscard) return;
  const Status truncated = unavailable(
      "truncated transfer " + std::to_string(c->msg.transfer_id) + ": got " + bytes_str(c->got) +
      " of " + bytes_str(c->msg.payload_bytes) + " bytes (" +
      (ec == asio::error::eof ? std::string("sender closed the connection") : ec.message()) + ")");
  if (c->sink == InConn::Sink::kDest) {
    finish(c->op, truncated);
  } else if (c->held) {
    drop_held(c->held);
    if (c->held->claimer) finish(c->held->claimer, truncated);
  }
  c->op.reset();
  c->held.reset();
}

void TcpTransport::Impl::start_receive(const std::shared_ptr<Op>& op) {
  if (!is_pending(*op)) return;
  if (stopping) return finish(op, cancelled("transport shut down"));
  if (auto h = held.find(op->wire_id); h != held.end()) {
    auto hd = h->second;
    if (hd->complete) return deliver(hd, op);
    op->io = Op::Io::kClaiming;
    hd->claimer = op;
    return;
  }
  if (auto r = refused.find(op->wire_id); r != refused.end()) {
    Status why = r->second.first;
    refused.erase(r);
    return finish(op, why);
  }
  op->io = Op::Io::kPosted;
  posted[op->wire_id] = op;
}

}  // namespace baton::kvtransfer
