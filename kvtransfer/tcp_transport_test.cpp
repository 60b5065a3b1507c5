#include "kvtransfer/tcp_transport.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "kvtransfer/wire.h"

namespace baton::kvtransfer {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

Deadline in(Clock::Duration d) { return Deadline::after(SteadyClock::instance(), d); }

std::vector<uint8_t> random_bytes(size_t n, uint64_t seed) {
  std::vector<uint8_t> v(n);
  uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
  for (size_t i = 0; i < n; i += 8) {
    x += 0x9e3779b97f4a7c15ULL;  // splitmix64
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    std::memcpy(v.data() + i, &z, std::min<size_t>(8, n - i));
  }
  return v;
}

std::unique_ptr<TcpTransport> make(TcpTransportOptions o = {}) {
  auto t = TcpTransport::create(std::move(o));
  EXPECT_TRUE(t.is_ok()) << t.status().to_string();
  return std::move(t).value();
}

MemorySlice whole(KvTransport& t, std::vector<uint8_t>& buf) {
  auto h = t.register_memory(buf.data(), buf.size());
  EXPECT_TRUE(h.is_ok());
  return MemorySlice{*h, 0, buf.size()};
}

TransferDesc to(const TcpTransport& peer, uint64_t id, MemorySlice src,
                Deadline d = Deadline::never()) {
  return TransferDesc{id, peer.endpoint(), src, d};
}

class TcpTransportTest : public ::testing::Test {
 protected:
  std::unique_ptr<TcpTransport> sender_ = make();
  std::unique_ptr<TcpTransport> receiver_ = make();
};

void expect_bit_exact(size_t bytes, bool receive_first) {
  auto sender = make();
  auto receiver = make();
  auto src = random_bytes(bytes, bytes);
  std::vector<uint8_t> dst(bytes, 0);
  auto s = whole(*sender, src);
  auto d = whole(*receiver, dst);
  TransferId rx{};
  if (receive_first) rx = receiver->submit_receive(7, d, in(60s)).value();
  auto tx = sender->submit_send(to(*receiver, 7, s, in(60s)));
  ASSERT_TRUE(tx.is_ok());
  if (!receive_first) {
    // The send is done once the receiver holds the verified bytes.
    ASSERT_TRUE(sender->wait(*tx, in(60s)).is_ok());
    EXPECT_EQ(receiver->unclaimed_bytes(), bytes);
    rx = receiver->submit_receive(7, d, in(60s)).value();
  }
  const Status got = receiver->wait(rx, in(60s));
  ASSERT_TRUE(got.is_ok()) << got.to_string();
  ASSERT_TRUE(sender->wait(*tx, in(60s)).is_ok());
  EXPECT_TRUE(receiver->poll(rx)->done());
  EXPECT_TRUE(sender->poll(*tx)->done());
  EXPECT_EQ(std::memcmp(src.data(), dst.data(), bytes), 0);
  EXPECT_EQ(receiver->unclaimed_bytes(), 0u);
}

// Every transfer reports its end once through the finished callback, on both
// sides, successes and failures alike.
TEST(TcpTransportCallbackTest, ReportsEachFinishedTransferOnce) {
  auto sender = make();
  auto receiver = make();
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<uint64_t, bool>> sent, received;
  sender->set_on_finished([&](TransferId id, const TransferState& st) {
    std::lock_guard lock(mu);
    sent.emplace_back(id.value, st.done());
    cv.notify_all();
  });
  receiver->set_on_finished([&](TransferId id, const TransferState& st) {
    std::lock_guard lock(mu);
    received.emplace_back(id.value, st.done());
    cv.notify_all();
  });
  auto src = random_bytes(4096, 1);
  std::vector<uint8_t> dst(4096, 0);
  auto rx = receiver->submit_receive(11, whole(*receiver, dst), in(60s));
  ASSERT_TRUE(rx.is_ok());
  auto tx = sender->submit_send(to(*receiver, 11, whole(*sender, src), in(60s)));
  ASSERT_TRUE(tx.is_ok());
  // A receive that is cancelled fails through the callback too.
  std::vector<uint8_t> other(64, 0);
  auto rx2 = receiver->submit_receive(12, whole(*receiver, other), in(60s));
  ASSERT_TRUE(rx2.is_ok());
  ASSERT_TRUE(receiver->cancel(*rx2).is_ok());
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_until(lock, std::chrono::steady_clock::now() + 60s,
                            [&] { return sent.size() == 1 && received.size() == 2; }));
  EXPECT_EQ(sent[0], std::make_pair(tx->value, true));
  std::sort(received.begin(), received.end());
  EXPECT_EQ(received[0], std::make_pair(rx->value, true));
  EXPECT_EQ(received[1], std::make_pair(rx2->value, false));
  EXPECT_EQ(std::memcmp(src.data(), dst.data(), dst.size()), 0);
}

TEST(TcpTransportBitExactTest, OneMiBReceivePostedFirst) { expect_bit_exact(1 << 20, true); }
TEST(TcpTransportBitExactTest, SixtyFourMiBReceivePostedFirst) { expect_bit_exact(64 << 20, true); }
TEST(TcpTransportBitExactTest, OneMiBReceivePostedAfterData) { expect_bit_exact(1 << 20, false); }
TEST(TcpTransportBitExactTest, SixtyFourMiBReceivePostedAfterData) {
  expect_bit_exact(64 << 20, false);
}
TEST(TcpTransportBitExactTest, OddSizes) {
  expect_bit_exact(1000003, true);
  expect_bit_exact(1, false);
}

TEST_F(TcpTransportTest, ConcurrentTransfersOverOneConnectionKeepTheirIdsApart) {
  constexpr int kN = 16;
  std::vector<std::vector<uint8_t>> src(kN), dst(kN);
  std::vector<MemorySlice> s(kN), d(kN);
  for (int i = 0; i < kN; ++i) {
    const size_t n = (64 << 10) * (i + 1) + i;  // distinct sizes and contents
    src[i] = random_bytes(n, 100 + i);
    dst[i].assign(n, 0);
    s[i] = whole(*sender_, src[i]);
    d[i] = whole(*receiver_, dst[i]);
  }
  // Half the receives go up before the data, half after it was sent, in
  // reverse order.
  std::vector<TransferId> rx(kN), tx(kN);
  for (int i = 0; i < kN; i += 2)
    rx[i] = receiver_->submit_receive(1000 + i, d[i], in(60s)).value();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kN; i += 4)
        tx[i] = sender_->submit_send(to(*receiver_, 1000 + i, s[i], in(60s))).value();
    });
  }
  for (auto& th : threads) th.join();
  for (int i = kN - 1; i >= 1; i -= 2)
    rx[i] = receiver_->submit_receive(1000 + i, d[i], in(60s)).value();
  for (int i = 0; i < kN; ++i) {
    ASSERT_TRUE(receiver_->wait(rx[i], in(60s)).is_ok()) << i;
    ASSERT_TRUE(sender_->wait(tx[i], in(60s)).is_ok()) << i;
    EXPECT_EQ(src[i], dst[i]) << "transfer " << i;
  }
  EXPECT_EQ(sender_->outgoing_connections(), 1u);
}

// A raw client that speaks the wire format by hand.
struct RawClient {
  asio::io_context io;
  tcp::socket sock{io};
  explicit RawClient(uint16_t port) {
    sock.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  }
  void write(const void* p, size_t n) { asio::write(sock, asio::buffer(p, n)); }
  void header(uint64_t id, uint64_t bytes) {
    uint8_t h[wire::kHeaderBytes];
    wire::encode_header({wire::FrameKind::kData, id, bytes, 0}, h);
    write(h, sizeof(h));
  }
  void trailer(uint64_t sum) {
    uint8_t t[wire::kTrailerBytes];
    wire::encode_u64(sum, t);
    write(t, sizeof(t));
  }
  wire::FrameHeader read_ack() {
    uint8_t h[wire::kHeaderBytes];
    asio::read(sock, asio::buffer(h));
    return wire::decode_header(h).value();
  }
};

TEST_F(TcpTransportTest, TruncatedTransferFailsAndIsNotMarkedDone) {
  std::vector<uint8_t> dst(1 << 20, 0);
  auto rx = receiver_->submit_receive(42, whole(*receiver_, dst), in(60s)).value();
  {
    RawClient raw(receiver_->port());
    raw.header(42, 1 << 20);
    auto part = random_bytes(100000, 3);
    raw.write(part.data(), part.size());
  }  // closes mid-payload
  const Status st = receiver_->wait(rx, in(60s));
  EXPECT_EQ(st.code(), StatusCode::kUnavailable) << st.to_string();
  EXPECT_NE(st.message().find("truncated transfer 42: got 100000 of 1048576 bytes"),
            std::string::npos)
      << st.message();
  EXPECT_TRUE(receiver_->poll(rx)->failed());
}

TEST_F(TcpTransportTest, CorruptedTransferFailsWithChecksumMismatch) {
  std::vector<uint8_t> dst(1 << 20, 0);
  auto rx = receiver_->submit_receive(43, whole(*receiver_, dst), in(60s)).value();
  RawClient raw(receiver_->port());
  auto payload = random_bytes(1 << 20, 4);
  const uint64_t sum = wire::checksum64(payload.data(), payload.size());
  payload[123456] ^= 0x10;  // flipped in flight
  raw.header(43, payload.size());
  raw.write(payload.data(), payload.size());
  raw.trailer(sum);
  const Status st = receiver_->wait(rx, in(60s));
  EXPECT_EQ(st.code(), StatusCode::kUnprocessable) << st.to_string();
  EXPECT_NE(st.message().find("checksum mismatch"), std::string::npos) << st.message();
  EXPECT_TRUE(receiver_->poll(rx)->failed());
  // The sender hears the verdict too.
  const auto ack = raw.read_ack();
  EXPECT_EQ(ack.transfer_id, 43u);
  EXPECT_EQ(static_cast<StatusCode>(ack.aux), StatusCode::kUnprocessable);
  // The connection stays usable for the next, intact, message.
  std::vector<uint8_t> dst2(4096, 0);
  auto rx2 = receiver_->submit_receive(44, whole(*receiver_, dst2), in(60s)).value();
  auto ok = random_bytes(4096, 5);
  raw.header(44, ok.size());
  raw.write(ok.data(), ok.size());
  raw.trailer(wire::checksum64(ok.data(), ok.size()));
  EXPECT_TRUE(receiver_->wait(rx2, in(60s)).is_ok());
  EXPECT_EQ(ok, dst2);
  EXPECT_EQ(static_cast<StatusCode>(raw.read_ack().aux), StatusCode::kOk);
}

TEST_F(TcpTransportTest, CancelledReceiveFails) {
  std::vector<uint8_t> dst(1 << 20, 0);
  auto rx = receiver_->submit_receive(50, whole(*receiver_, dst), in(60s)).value();
  ASSERT_TRUE(receiver_->cancel(rx).is_ok());
  const Status st = receiver_->wait(rx, in(60s));
  EXPECT_EQ(st.code(), StatusCode::kCancelled) << st.to_string();
  EXPECT_TRUE(receiver_->poll(rx)->failed());
  EXPECT_EQ(receiver_->cancel(TransferId{999999}).code(), StatusCode::kNotFound);
}

TEST_F(TcpTransportTest, ReceiveCancelledWhileBytesArriveLeavesTheConnectionUsable) {
  std::vector<uint8_t> dst(1 << 20, 0);
  auto rx = receiver_->submit_receive(51, whole(*receiver_, dst), in(60s)).value();
  RawClient raw(receiver_->port());
  auto payload = random_bytes(1 << 20, 6);
  raw.header(51, payload.size());
  raw.write(payload.data(), payload.size() / 2);
  ASSERT_TRUE(receiver_->cancel(rx).is_ok());
  EXPECT_EQ(receiver_->wait(rx, in(60s)).code(), StatusCode::kCancelled);
  raw.write(payload.data() + payload.size() / 2, payload.size() / 2);
  raw.trailer(wire::checksum64(payload.data(), payload.size()));
  // Depending on whether the cancel came before or after the header was
  // read, the rest is dropped (kCancelled) or held for a new receive (kOk).
  const auto ack = raw.read_ack();
  EXPECT_EQ(ack.transfer_id, 51u);
  EXPECT_TRUE(ack.aux == static_cast<uint64_t>(StatusCode::kCancelled) ||
              ack.aux == static_cast<uint64_t>(StatusCode::kOk));
  std::vector<uint8_t> dst2(4096, 0);
  auto rx2 = receiver_->submit_receive(52, whole(*receiver_, dst2), in(60s)).value();
  auto ok = random_bytes(4096, 7);
  raw.header(52, ok.size());
  raw.write(ok.data(), ok.size());
  raw.trailer(wire::checksum64(ok.data(), ok.size()));
  ASSERT_TRUE(receiver_->wait(rx2, in(60s)).is_ok());
  EXPECT_EQ(ok, dst2);
}

// A peer that accepts connections and never reads: sends to it stall once the
// socket buffers are full.
struct SilentPeer {
  asio::io_context io;
  tcp::acceptor acceptor{io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  tcp::socket accepted{io};
  std::thread thread;
  SilentPeer() {
    acceptor.async_accept(accepted, [](const boost::system::error_code&) {});
    thread = std::thread([this] { io.run(); });
  }
  ~SilentPeer() { thread.join(); }
  std::string endpoint() const {
    return "127.0.0.1:" + std::to_string(acceptor.local_endpoint().port());
  }
};

TEST_F(TcpTransportTest, CancelledSendStopsAndFails) {
  SilentPeer peer;
  std::vector<uint8_t> src(64 << 20, 1);
  auto tx = sender_->submit_send({1, peer.endpoint(), whole(*sender_, src), in(60s)}).value();
  ASSERT_TRUE(sender_->cancel(tx).is_ok());
  const Status st = sender_->wait(tx, in(60s));
  EXPECT_EQ(st.code(), StatusCode::kCancelled) << st.to_string();
}

TEST_F(TcpTransportTest, DeadlinesExpireOnBothSides) {
  std::vector<uint8_t> dst(4096, 0);
  auto rx = receiver_->submit_receive(60, whole(*receiver_, dst), in(50ms)).value();
  Status st = receiver_->wait(rx, in(60s));
  EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded) << st.to_string();

  SilentPeer peer;
  std::vector<uint8_t> src(64 << 20, 2);
  auto tx = sender_->submit_send({61, peer.endpoint(), whole(*sender_, src), in(200ms)}).value();
  st = sender_->wait(tx, in(60s));
  EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded) << st.to_string();
  // The wait's own deadline is separate from the transfer's.
  std::vector<uint8_t> dst2(16, 0);
  auto rx2 = receiver_->submit_receive(62, whole(*receiver_, dst2), Deadline::never()).value();
  EXPECT_EQ(receiver_->wait(rx2, in(10ms)).code(), StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(receiver_->poll(rx2)->pending());
}

TEST_F(TcpTransportTest, PeerDyingMidTransferFailsTheSendAtOnce) {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  std::vector<uint8_t> src(64 << 20, 3);
  auto tx = sender_
                ->submit_send({70, "127.0.0.1:" + std::to_string(acceptor.local_endpoint().port()),
                               whole(*sender_, src), Deadline::never()})
                .value();
  {
    tcp::socket s(io);
    acceptor.accept(s);
    uint8_t h[wire::kHeaderBytes];
    asio::read(s, asio::buffer(h));
    s.set_option(asio::socket_base::linger(true, 0));  // reset
  }
  const Status st = sender_->wait(tx, in(60s));
  EXPECT_EQ(st.code(), StatusCode::kUnavailable) << st.to_string();
}

TEST(TcpTransportHoldTest, UnknownIdBeyondTheHoldLimitIsRefused) {
  TcpTransportOptions o;
  o.max_unclaimed_bytes = 1 << 20;
  auto receiver = make(o);
  auto sender = make();
  auto a = random_bytes(768 << 10, 8), b = random_bytes(768 << 10, 9);
  auto ta = sender->submit_send(to(*receiver, 80, whole(*sender, a), in(60s))).value();
  ASSERT_TRUE(sender->wait(ta, in(60s)).is_ok());  // held: fits the limit
  auto tb = sender->submit_send(to(*receiver, 81, whole(*sender, b), in(60s))).value();
  const Status st = sender->wait(tb, in(60s));
  EXPECT_EQ(st.code(), StatusCode::kResourceExhausted) << st.to_string();
  EXPECT_EQ(receiver->unclaimed_bytes(), 768u << 10);

  // A receive posted later for the refused id fails at once with the reason.
  std::vector<uint8_t> db(b.size(), 0), da(a.size(), 0);
  auto rb = receiver->submit_receive(81, whole(*receiver, db), in(60s)).value();
  const Status why = receiver->wait(rb, in(60s));
  EXPECT_EQ(why.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(why.message().find("hold limit"), std::string::npos) << why.message();
  // The held one is still delivered.
  auto ra = receiver->submit_receive(80, whole(*receiver, da), in(60s)).value();
  ASSERT_TRUE(receiver->wait(ra, in(60s)).is_ok());
  EXPECT_EQ(a, da);
  EXPECT_EQ(receiver->unclaimed_bytes(), 0u);
}

TEST_F(TcpTransportTest, SizeMismatchFailsBothSides) {
  std::vector<uint8_t> src(2000, 1), dst(1000, 0);
  auto rx = receiver_->submit_receive(90, whole(*receiver_, dst), in(60s)).value();
  auto tx = sender_->submit_send(to(*receiver_, 90, whole(*sender_, src), in(60s))).value();
  EXPECT_EQ(receiver_->wait(rx, in(60s)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(sender_->wait(tx, in(60s)).code(), StatusCode::kInvalidArgument);
}

TEST_F(TcpTransportTest, BadRequestsAreRejectedUpFront) {
  std::vector<uint8_t> buf(100, 0);
  EXPECT_FALSE(sender_->register_memory(nullptr, 10).is_ok());
  auto h = sender_->register_memory(buf.data(), buf.size()).value();
  EXPECT_EQ(sender_->submit_send({1, "nohostport", {h, 0, 10}, in(1s)}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(sender_->submit_send(to(*receiver_, 1, {h, 50, 51})).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(sender_->submit_send(to(*receiver_, 1, {MemoryHandle{12345}, 0, 1})).status().code(),
            StatusCode::kInvalidArgument);
  auto rx = sender_->submit_receive(5, {h, 0, 100}, Deadline::never()).value();
  EXPECT_EQ(sender_->submit_receive(5, {h, 0, 100}, Deadline::never()).status().code(),
            StatusCode::kConflict);
  EXPECT_EQ(sender_->deregister_memory(h).code(), StatusCode::kConflict);
  ASSERT_TRUE(sender_->cancel(rx).is_ok());
  ASSERT_EQ(sender_->wait(rx, in(60s)).code(), StatusCode::kCancelled);
  EXPECT_TRUE(sender_->deregister_memory(h).is_ok());
  sender_->release(rx);
  EXPECT_EQ(sender_->poll(rx).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(sender_->capabilities().host_memory);
  EXPECT_FALSE(sender_->capabilities().device_memory);
}

TEST(TcpTransportLifecycleTest, DestroyingTheTransportFailsPendingTransfers) {
  auto t = make();
  std::vector<uint8_t> buf(64, 0);
  auto rx = t->submit_receive(1, whole(*t, buf), Deadline::never());
  ASSERT_TRUE(rx.is_ok());
  t.reset();  // must not hang or crash
}

}  // namespace
}  // namespace baton::kvtransfer
