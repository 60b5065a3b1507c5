// CudaIpcTransport against a second process (cuda_ipc_peer) and, for the
// failure paths, against a raw control socket. With two GPUs the bytes move
// GPU 0 <-> GPU 1; with one they move GPU 0 -> GPU 0 across processes.
// Skipped with a message where no GPU is usable.

#include <arpa/inet.h>
#include <cuda_runtime_api.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "kvtransfer/cuda_ipc/control_wire.h"
#include "kvtransfer/cuda_ipc/cuda_ipc_transport.h"
#include "kvtransfer/cuda_ipc/device_checksum.h"
#include "kvtransfer/cuda_ipc/test_pattern.h"

extern char** environ;

namespace baton::kvtransfer {
namespace {

using namespace std::chrono_literals;

Deadline in(Clock::Duration d) { return Deadline::after(SteadyClock::instance(), d); }

// Waits for `cond` with a deadline, on the transport's own state (no sleeps
// as synchronisation: this is a bounded poll of a condition).
template <typename F>
bool eventually(F cond, Clock::Duration limit = 10s) {
  const auto end = SteadyClock::instance().now() + limit;
  while (SteadyClock::instance().now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return cond();
}

// Both sides copy in 1 MiB pieces, so that the transfers below (up to 32 MiB)
// go through the piecewise verification.
constexpr uint64_t kChunk = uint64_t{1} << 20;

// The peer program in a child process, spoken to over pipes.
class Peer {
 public:
  Peer(int device, uint64_t buffer_bytes) {
    const auto exe =
        std::filesystem::read_symlink("/proc/self/exe").parent_path() / "cuda_ipc_peer";
    int to_child[2], from_child[2];
    EXPECT_EQ(pipe(to_child), 0);
    EXPECT_EQ(pipe(from_child), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, to_child[0], 0);
    posix_spawn_file_actions_adddup2(&fa, from_child[1], 1);
    posix_spawn_file_actions_addclose(&fa, to_child[1]);
    posix_spawn_file_actions_addclose(&fa, from_child[0]);
    const std::string dev = std::to_string(device), size = std::to_string(buffer_bytes),
                      chunk = std::to_string(kChunk);
    const std::string path = exe.string();
    char* argv[] = {const_cast<char*>(path.c_str()), const_cast<char*>(dev.c_str()),
                    const_cast<char*>(size.c_str()), const_cast<char*>(chunk.c_str()), nullptr};
    EXPECT_EQ(posix_spawn(&pid_, path.c_str(), &fa, nullptr, argv, environ), 0) << path;
    posix_spawn_file_actions_destroy(&fa);
    close(to_child[0]);
    close(from_child[1]);
    in_ = to_child[1];
    out_ = from_child[0];
    const std::string ready = read_line(30s);
    if (ready.rfind("ready ", 0) == 0) endpoint_ = ready.substr(6);
    EXPECT_FALSE(endpoint_.empty()) << "peer said: " << ready;
  }
  ~Peer() {
    kill_now();
    if (in_ >= 0) close(in_);
    if (out_ >= 0) close(out_);
  }

  const std::string& endpoint() const { return endpoint_; }

  std::string ask(const std::string& line, Clock::Duration limit = 30s) {
    const std::string l = line + "\n";
    if (write(in_, l.data(), l.size()) != static_cast<ssize_t>(l.size())) return "error write";
    return read_line(limit);
  }

  void kill_now() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int st = 0;
    waitpid(pid_, &st, 0);
    pid_ = -1;
  }

 private:
  std::string read_line(Clock::Duration limit) {
    const auto end = SteadyClock::instance().now() + limit;
    while (true) {
      const size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          end - SteadyClock::instance().now());
      if (left.count() <= 0) return "error timeout";
      pollfd p{out_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char tmp[512];
      const ssize_t n = read(out_, tmp, sizeof(tmp));
      if (n <= 0) return "error eof";
      buf_.append(tmp, static_cast<size_t>(n));
    }
  }

  pid_t pid_ = -1;
  int in_ = -1, out_ = -1;
  std::string buf_;
  std::string endpoint_;
};

class CudaIpcTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    devices_ = cuda_device_count();
    if (devices_ == 0) GTEST_SKIP() << "no CUDA device usable: cuda-ipc transport tests skipped";
    peer_device_ = devices_ > 1 ? 1 : 0;
    CudaIpcTransportOptions o;
    o.device = 0;
    o.chunk_bytes = kChunk;
    auto t = CudaIpcTransport::create(o);
    ASSERT_TRUE(t.is_ok()) << t.status().to_string();
    transport_ = std::move(*t);
    ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&buf_, kBuf), cudaSuccess);
    auto h = transport_->register_memory(buf_, kBuf);
    ASSERT_TRUE(h.is_ok()) << h.status().to_string();
    handle_ = *h;
  }
  void TearDown() override {
    transport_.reset();
    if (buf_) cudaFree(buf_);
  }

  std::vector<uint8_t> read_back(uint64_t offset, uint64_t bytes) {
    std::vector<uint8_t> host(bytes);
    EXPECT_EQ(cudaMemcpy(host.data(), static_cast<uint8_t*>(buf_) + offset, bytes,
                         cudaMemcpyDeviceToHost),
              cudaSuccess);
    return host;
  }
  void fill(uint64_t seed, uint64_t offset, uint64_t bytes) {
    const auto p = cuda_ipc::pattern(seed, bytes);
    ASSERT_EQ(
        cudaMemcpy(static_cast<uint8_t*>(buf_) + offset, p.data(), bytes, cudaMemcpyHostToDevice),
        cudaSuccess);
  }
  static std::string expect_result(uint64_t seed, uint64_t bytes) {
    const auto p = cuda_ipc::pattern(seed, bytes);
    return "result ok " + std::to_string(cuda_ipc::host_checksum(p.data(), p.size()));
  }

  static constexpr uint64_t kBuf = uint64_t{64} << 20;
  int devices_ = 0;
  int peer_device_ = 0;
  std::unique_ptr<CudaIpcTransport> transport_;
  void* buf_ = nullptr;
  MemoryHandle handle_;
};

TEST_F(CudaIpcTransportTest, BytesArriveIdenticalAcrossProcessesReceivePostedFirst) {
  Peer peer(peer_device_, kBuf);
  // Odd size at an odd offset: exercises the allocation offset in the grant
  // and the unaligned checksum path.
  const uint64_t bytes = (uint64_t{8} << 20) + 13, offset = 5;
  auto r = transport_->submit_receive(11, {handle_, offset, bytes}, in(20s));
  ASSERT_TRUE(r.is_ok());
  ASSERT_EQ(peer.ask("fill 7 0 " + std::to_string(bytes)), "ok");
  ASSERT_EQ(
      peer.ask("send 11 0 " + std::to_string(bytes) + " " + transport_->endpoint() + " 20000"),
      "ok");
  ASSERT_TRUE(transport_->wait(*r, in(20s)).is_ok());
  EXPECT_EQ(peer.ask("wait 11"), "result ok 0");
  EXPECT_TRUE(read_back(offset, bytes) == cuda_ipc::pattern(7, bytes));
}

TEST_F(CudaIpcTransportTest, ReceivePostedAfterTheOfferArrived) {
  Peer peer(peer_device_, kBuf);
  const uint64_t bytes = uint64_t{32} << 20;
  ASSERT_EQ(peer.ask("fill 9 0 " + std::to_string(bytes)), "ok");
  ASSERT_EQ(
      peer.ask("send 12 0 " + std::to_string(bytes) + " " + transport_->endpoint() + " 20000"),
      "ok");
  ASSERT_TRUE(eventually([&] { return transport_->pending_offers() == 1; }));
  auto r = transport_->submit_receive(12, {handle_, 0, bytes}, in(20s));
  ASSERT_TRUE(r.is_ok());
  ASSERT_TRUE(transport_->wait(*r, in(20s)).is_ok());
  EXPECT_EQ(peer.ask("wait 12"), "result ok 0");
  EXPECT_EQ(transport_->pending_offers(), 0u);
  EXPECT_TRUE(read_back(0, bytes) == cuda_ipc::pattern(9, bytes));
}

TEST_F(CudaIpcTransportTest, SendToAnotherProcessAndReuseTheMapping) {
  Peer peer(peer_device_, kBuf);
  for (uint64_t i = 0; i < 3; ++i) {
    const uint64_t bytes = (uint64_t{4} << 20) + 1000 * i, seed = 100 + i;
    fill(seed, 4096 * i, bytes);
    ASSERT_EQ(
        peer.ask("recv " + std::to_string(20 + i) + " 64 " + std::to_string(bytes) + " 20000"),
        "ok");
    auto s =
        transport_->submit_send({20 + i, peer.endpoint(), {handle_, 4096 * i, bytes}, in(20s)});
    ASSERT_TRUE(s.is_ok());
    ASSERT_TRUE(transport_->wait(*s, in(20s)).is_ok()) << transport_->poll(*s)->status.to_string();
    EXPECT_EQ(peer.ask("wait " + std::to_string(20 + i)), expect_result(seed, bytes));
  }
  // One allocation on the peer: opened once, kept for the next transfers.
  EXPECT_EQ(transport_->open_mappings(), 1u);
}

TEST_F(CudaIpcTransportTest, KernelCopyToAnotherProcessAndWithinThisOne) {
  CudaIpcTransportOptions o;
  o.device = 0;
  o.chunk_bytes = kChunk;
  o.kernel_copy = true;
  auto sender = CudaIpcTransport::create(o);
  ASSERT_TRUE(sender.is_ok());
  auto h = (*sender)->register_memory(buf_, kBuf);
  ASSERT_TRUE(h.is_ok());
  Peer peer(peer_device_, kBuf);
  const uint64_t bytes = (uint64_t{8} << 20) + 48;
  fill(55, 0, bytes);
  ASSERT_EQ(peer.ask("recv 90 0 " + std::to_string(bytes) + " 20000"), "ok");
  auto s = (*sender)->submit_send({90, peer.endpoint(), {*h, 0, bytes}, in(20s)});
  ASSERT_TRUE(s.is_ok());
  ASSERT_TRUE((*sender)->wait(*s, in(20s)).is_ok()) << (*sender)->poll(*s)->status.to_string();
  EXPECT_EQ(peer.ask("wait 90"), expect_result(55, bytes));
  // Within this process: into the second half of our own buffer.
  auto r = transport_->submit_receive(91, {handle_, kBuf / 2, bytes}, in(20s));
  s = (*sender)->submit_send({91, transport_->endpoint(), {*h, 0, bytes}, in(20s)});
  ASSERT_TRUE(r.is_ok() && s.is_ok());
  ASSERT_TRUE((*sender)->wait(*s, in(20s)).is_ok());
  ASSERT_TRUE(transport_->wait(*r, in(20s)).is_ok());
  EXPECT_TRUE(read_back(kBuf / 2, bytes) == cuda_ipc::pattern(55, bytes));
}

TEST_F(CudaIpcTransportTest, WithinOneProcessToTheOtherDevice) {
  CudaIpcTransportOptions o;
  o.device = peer_device_;
  auto other = CudaIpcTransport::create(o);
  ASSERT_TRUE(other.is_ok());
  void* dst = nullptr;
  ASSERT_EQ(cudaSetDevice(peer_device_), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dst, kBuf), cudaSuccess);
  auto h = (*other)->register_memory(dst, kBuf);
  ASSERT_TRUE(h.is_ok());
  const uint64_t bytes = uint64_t{16} << 20;
  fill(3, 0, bytes);
  std::atomic<int> finished{0};
  (*other)->set_on_finished([&](TransferId, const TransferState& s) {
    if (s.done()) ++finished;
  });
  auto r = (*other)->submit_receive(5, {*h, 0, bytes}, in(20s));
  auto s = transport_->submit_send({5, (*other)->endpoint(), {handle_, 0, bytes}, in(20s)});
  ASSERT_TRUE(r.is_ok() && s.is_ok());
  ASSERT_TRUE(transport_->wait(*s, in(20s)).is_ok());
  ASSERT_TRUE((*other)->wait(*r, in(20s)).is_ok());
  EXPECT_EQ(finished.load(), 1);
  std::vector<uint8_t> host(bytes);
  ASSERT_EQ(cudaMemcpy(host.data(), dst, bytes, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_TRUE(host == cuda_ipc::pattern(3, bytes));
  EXPECT_EQ(transport_->open_mappings(), 0u);  // same process: no IPC mapping
  other->reset();
  cudaFree(dst);
}

TEST_F(CudaIpcTransportTest, DeadlinesFailBothSides) {
  auto r = transport_->submit_receive(30, {handle_, 0, 1024}, in(200ms));
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(transport_->wait(*r, in(10s)).code(), StatusCode::kDeadlineExceeded);

  Peer peer(peer_device_, kBuf);  // never posts a receive for 31
  auto s = transport_->submit_send({31, peer.endpoint(), {handle_, 0, 1024}, in(300ms)});
  ASSERT_TRUE(s.is_ok());
  EXPECT_EQ(transport_->wait(*s, in(10s)).code(), StatusCode::kDeadlineExceeded);
  // The withdrawn offer leaves nothing behind: a receive for 31 there waits
  // for a new offer and fails at its own deadline.
  ASSERT_EQ(peer.ask("recv 31 0 1024 300"), "ok");
  EXPECT_EQ(peer.ask("wait 31"), "result deadline_exceeded 0");
}

TEST_F(CudaIpcTransportTest, CancelFailsAtOnceAndTheMemoryIsFree) {
  auto r = transport_->submit_receive(40, {handle_, 0, 1024}, Deadline::never());
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(transport_->deregister_memory(handle_).code(), StatusCode::kConflict);
  ASSERT_TRUE(transport_->cancel(*r).is_ok());
  EXPECT_EQ(transport_->wait(*r, in(10s)).code(), StatusCode::kCancelled);

  Peer peer(peer_device_, kBuf);
  auto s = transport_->submit_send({41, peer.endpoint(), {handle_, 0, 1024}, Deadline::never()});
  ASSERT_TRUE(s.is_ok());
  ASSERT_TRUE(transport_->cancel(*s).is_ok());
  EXPECT_EQ(transport_->wait(*s, in(10s)).code(), StatusCode::kCancelled);
  transport_->release(*r);
  transport_->release(*s);
  EXPECT_TRUE(transport_->deregister_memory(handle_).is_ok());
  EXPECT_EQ(transport_->poll(*r).status().code(), StatusCode::kNotFound);
}

TEST_F(CudaIpcTransportTest, KilledReceiverFailsThePendingSend) {
  Peer peer(peer_device_, kBuf);
  // Connect first (a finished transfer), then leave an offer waiting.
  fill(1, 0, 4096);
  ASSERT_EQ(peer.ask("recv 50 0 4096 20000"), "ok");
  auto first = transport_->submit_send({50, peer.endpoint(), {handle_, 0, 4096}, in(20s)});
  ASSERT_TRUE(first.is_ok());
  ASSERT_TRUE(transport_->wait(*first, in(20s)).is_ok());
  auto s = transport_->submit_send({51, peer.endpoint(), {handle_, 0, 4096}, in(60s)});
  ASSERT_TRUE(s.is_ok());
  peer.kill_now();
  const auto t0 = SteadyClock::instance().now();
  EXPECT_EQ(transport_->wait(*s, in(20s)).code(), StatusCode::kUnavailable);
  EXPECT_LT(SteadyClock::instance().now() - t0, 10s);  // at once, not at the deadline
}

TEST_F(CudaIpcTransportTest, KilledSenderDropsItsOffer) {
  Peer peer(peer_device_, kBuf);
  ASSERT_EQ(peer.ask("fill 2 0 4096"), "ok");
  ASSERT_EQ(peer.ask("send 60 0 4096 " + transport_->endpoint() + " 60000"), "ok");
  ASSERT_TRUE(eventually([&] { return transport_->pending_offers() == 1; }));
  peer.kill_now();
  ASSERT_TRUE(eventually([&] { return transport_->pending_offers() == 0; }));
  auto r = transport_->submit_receive(60, {handle_, 0, 4096}, in(300ms));
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(transport_->wait(*r, in(10s)).code(), StatusCode::kDeadlineExceeded);
}

// A raw control connection stands in for a sender that misbehaves or dies
// between the grant and its kDone.
class RawSender {
 public:
  explicit RawSender(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok_ = connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    timeval tv{10, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~RawSender() { close_now(); }
  bool ok() const { return ok_; }
  void send(const control::Frame& f) {
    const auto b = control::encode(f);
    ASSERT_EQ(::send(fd_, b.data(), b.size(), MSG_NOSIGNAL), static_cast<ssize_t>(b.size()));
  }
  std::optional<control::Frame> receive() {
    control::Buffer b{};
    size_t got = 0;
    while (got < b.size()) {
      const ssize_t n = recv(fd_, b.data() + got, b.size() - got, 0);
      if (n <= 0) return std::nullopt;
      got += static_cast<size_t>(n);
    }
    return control::decode(b.data());
  }
  void close_now() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  bool ok_ = false;
};

TEST_F(CudaIpcTransportTest, SenderLostAfterTheGrantFailsTheReceiveAtOnce) {
  RawSender raw(transport_->port());
  ASSERT_TRUE(raw.ok());
  auto r = transport_->submit_receive(70, {handle_, 0, 4096}, in(60s));
  ASSERT_TRUE(r.is_ok());
  control::Frame offer;
  offer.kind = control::Kind::kOffer;
  offer.transfer_id = 70;
  offer.bytes = 4096;
  raw.send(offer);
  auto grant = raw.receive();
  ASSERT_TRUE(grant.has_value());
  EXPECT_EQ(grant->kind, control::Kind::kGrant);
  EXPECT_EQ(grant->bytes, 4096u);
  raw.close_now();
  const auto t0 = SteadyClock::instance().now();
  EXPECT_EQ(transport_->wait(*r, in(20s)).code(), StatusCode::kUnavailable);
  EXPECT_LT(SteadyClock::instance().now() - t0, 10s);
}

TEST_F(CudaIpcTransportTest, ChecksumMismatchFailsTheReceiveWithDataError) {
  RawSender raw(transport_->port());
  ASSERT_TRUE(raw.ok());
  fill(4, 0, 4096);
  auto r = transport_->submit_receive(80, {handle_, 0, 4096}, in(20s));
  ASSERT_TRUE(r.is_ok());
  control::Frame f;
  f.kind = control::Kind::kOffer;
  f.transfer_id = 80;
  f.bytes = 4096;
  raw.send(f);
  ASSERT_TRUE(raw.receive().has_value());
  // Claims a copy of bytes whose checksum is not what the destination holds.
  const auto other = cuda_ipc::pattern(5, 4096);
  f.kind = control::Kind::kDone;
  f.region = 1;
  f.value = cuda_ipc::host_checksum(other.data(), other.size());
  raw.send(f);
  auto ack = raw.receive();
  ASSERT_TRUE(ack.has_value());
  EXPECT_EQ(ack->kind, control::Kind::kAck);
  EXPECT_EQ(ack->code, static_cast<uint64_t>(StatusCode::kUnprocessable));
  EXPECT_EQ(transport_->wait(*r, in(10s)).code(), StatusCode::kUnprocessable);
  // The same bytes with their true checksum verify.
  auto r2 = transport_->submit_receive(81, {handle_, 0, 4096}, in(20s));
  f.kind = control::Kind::kOffer;
  f.transfer_id = 81;
  f.region = 0;
  f.value = 0;
  raw.send(f);
  ASSERT_TRUE(raw.receive().has_value());
  const auto mine = cuda_ipc::pattern(4, 4096);
  f.kind = control::Kind::kDone;
  f.region = 1;
  f.value = cuda_ipc::host_checksum(mine.data(), mine.size());
  raw.send(f);
  ack = raw.receive();
  ASSERT_TRUE(ack.has_value());
  EXPECT_EQ(ack->code, 0u);
  EXPECT_TRUE(transport_->wait(*r2, in(10s)).is_ok());
}

TEST_F(CudaIpcTransportTest, HostMemoryAndUnknownPeersAreRefused) {
  std::vector<uint8_t> host(4096);
  EXPECT_EQ(transport_->register_memory(host.data(), host.size()).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(transport_->submit_send({1, "nohostport", {handle_, 0, 16}, in(1s)}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(transport_->capabilities().device_memory);
  EXPECT_FALSE(transport_->capabilities().host_memory);
}

TEST(DeviceChecksum, MatchesTheHostReferenceAtEveryAlignment) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device usable";
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  const uint64_t n = (uint64_t{1} << 20) + 77;
  const auto p = cuda_ipc::pattern(42, n + 16);
  uint8_t* d = nullptr;
  unsigned long long* acc = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), n + 16), cudaSuccess);
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&acc), 16), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(d, p.data(), n + 16, cudaMemcpyHostToDevice), cudaSuccess);
  for (uint64_t off : {0, 1, 8, 13}) {
    for (uint64_t len : {uint64_t{1}, uint64_t{15}, uint64_t{4096}, n}) {
      const uint64_t expected = cuda_ipc::host_checksum(p.data() + off, len);
      unsigned long long h[2];
      ASSERT_EQ(cudaMemset(acc, 0, 16), cudaSuccess);
      ASSERT_EQ(cuda_ipc::launch_checksum(d + off, len, 0, acc, nullptr), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(h, acc, 16, cudaMemcpyDeviceToHost), cudaSuccess);
      EXPECT_EQ(cuda_ipc::finish_checksum(h[0], h[1], len), expected)
          << "offset " << off << " length " << len;
      if (len < 4096) continue;
      // In two pieces, the second first: the same checksum as the whole.
      ASSERT_EQ(cudaMemset(acc, 0, 16), cudaSuccess);
      ASSERT_EQ(cuda_ipc::launch_checksum(d + off + 1024, len - 1024, 128, acc, nullptr),
                cudaSuccess);
      ASSERT_EQ(cuda_ipc::launch_checksum(d + off, 1024, 0, acc, nullptr), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(h, acc, 16, cudaMemcpyDeviceToHost), cudaSuccess);
      EXPECT_EQ(cuda_ipc::finish_checksum(h[0], h[1], len), expected)
          << "pieces, offset " << off << " length " << len;
    }
  }
  cudaFree(d);
  cudaFree(acc);
}

}  // namespace
}  // namespace baton::kvtransfer
