// Throughput of the KV transfer path over loopback, next to its physical
// limit measured in the same run.
//
//   kv_transfer_bench [--max-mib N] [--reps N] [--chunk-kib N] [--socket-buffer-kib N]
//
// 1. TcpTransport vs a raw TCP socket: one buffer of 1 MiB ... max-mib MiB
//    (default 512) moved from one registered host buffer to another, through
//    two TcpTransports (sender and receiver, each with its I/O thread; the
//    time runs from submit to the sender seeing the receiver's ack), and
//    through one plain blocking socket pair (a send() thread and a recv()
//    thread, no framing, no checksum). Median and best of --reps runs
//    (default 5; four times as many for sizes up to 16 MiB), raw and
//    TcpTransport runs interleaved so that both see the same noise.
// 2. Contiguous vs per-block, for a Llama-3.1-8B shape (32 layers, 8 KV
//    heads, head_dim 128, bf16: 128 KiB per token) at 1k and 4k tokens: one
//    contiguous transfer of the whole request (Baton's design), vs one
//    message per 16-token block per layer per K/V (a block-fixed design:
//    32 KiB messages), both pipelined (all submitted, then awaited) and with
//    a round trip per block (each awaited before the next).

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "kvtransfer/kv_layout.h"
#include "kvtransfer/tcp_transport.h"

namespace {

using namespace baton;
using namespace baton::kvtransfer;
using BenchClock = std::chrono::steady_clock;

double seconds_since(BenchClock::time_point t0) {
  return std::chrono::duration<double>(BenchClock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "kv_transfer_bench: %s\n", what.c_str());
  std::exit(1);
}

// A connected loopback socket pair made with plain POSIX calls.
struct RawPair {
  int tx = -1, rx = -1;
  RawPair() {
    const int lst = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (::bind(lst, reinterpret_cast<sockaddr*>(&a), len) != 0 || ::listen(lst, 1) != 0 ||
        ::getsockname(lst, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      die("raw listen failed");
    }
    tx = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(tx, reinterpret_cast<sockaddr*>(&a), len) != 0) die("raw connect failed");
    rx = ::accept(lst, nullptr, nullptr);
    ::close(lst);
    const int one = 1;
    ::setsockopt(tx, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  ~RawPair() {
    ::close(tx);
    ::close(rx);
  }
  // Seconds to move `bytes` from src to dst.
  double move(const uint8_t* src, uint8_t* dst, size_t bytes) {
    const auto t0 = BenchClock::now();
    std::thread sender([&] {
      for (size_t at = 0; at < bytes;) {
        const ssize_t n = ::send(tx, src + at, bytes - at, 0);
        if (n <= 0) die("raw send failed");
        at += static_cast<size_t>(n);
      }
    });
    for (size_t at = 0; at < bytes;) {
      const ssize_t n = ::recv(rx, dst + at, bytes - at, 0);
      if (n <= 0) die("raw recv failed");
      at += static_cast<size_t>(n);
    }
    const double s = seconds_since(t0);
    sender.join();
    return s;
  }
};

struct Pair {
  std::unique_ptr<TcpTransport> tx, rx;
  MemoryHandle src, dst;
  uint64_t next_id = 1;

  Pair(uint8_t* s, uint8_t* d, size_t bytes, const TcpTransportOptions& o) {
    auto a = TcpTransport::create(o);
    auto b = TcpTransport::create(o);
    if (!a.is_ok() || !b.is_ok()) die("cannot start transports");
    tx = std::move(a).value();
    rx = std::move(b).value();
    src = tx->register_memory(s, bytes).value();
    dst = rx->register_memory(d, bytes).value();
  }

  Deadline deadline() const {
    return Deadline::after(SteadyClock::instance(), std::chrono::seconds(120));
  }

  std::pair<TransferId, TransferId> submit(uint64_t offset, uint64_t bytes) {
    const uint64_t id = next_id++;
    auto r = rx->submit_receive(id, {dst, offset, bytes}, deadline());
    auto s = tx->submit_send({id, rx->endpoint(), {src, offset, bytes}, deadline()});
    if (!r.is_ok() || !s.is_ok()) die("submit failed");
    return {*r, *s};
  }

  void finish(std::pair<TransferId, TransferId> t) {
    const Status a = rx->wait(t.first, deadline());
    const Status b = tx->wait(t.second, deadline());
    if (!a.is_ok() || !b.is_ok()) die("transfer failed: " + a.to_string() + " / " + b.to_string());
    rx->release(t.first);
    tx->release(t.second);
  }

  double move(uint64_t offset, uint64_t bytes) {
    const auto t0 = BenchClock::now();
    finish(submit(offset, bytes));
    return seconds_since(t0);
  }

  // One message per run of `block_bytes`; pipelined or one round trip each.
  double move_blocks(const std::vector<std::pair<uint64_t, uint64_t>>& blocks, bool pipelined) {
    const auto t0 = BenchClock::now();
    if (pipelined) {
      std::vector<std::pair<TransferId, TransferId>> ids;
      ids.reserve(blocks.size());
      for (auto [off, n] : blocks) ids.push_back(submit(off, n));
      for (auto& t : ids) finish(t);
    } else {
      for (auto [off, n] : blocks) finish(submit(off, n));
    }
    return seconds_since(t0);
  }
};

}  // namespace

int main(int argc, char** argv) {
  size_t max_mib = 512;
  int reps = 5;
  TcpTransportOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--max-mib" && i + 1 < argc) {
      max_mib = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--chunk-kib" && i + 1 < argc) {
      options.write_chunk_bytes = std::strtoull(argv[++i], nullptr, 10) << 10;
    } else if (a == "--socket-buffer-kib" && i + 1 < argc) {
      options.socket_buffer_bytes = std::atoi(argv[++i]) * 1024;
    } else if (a == "--reps" && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr,
                   "usage: kv_transfer_bench [--max-mib N] [--reps N] [--chunk-kib N] "
                   "[--socket-buffer-kib N]\n");
      return 2;
    }
  }
  const KvLayout llama{32, 8, 128, 2};
  const size_t block_tokens = 16;
  const size_t buf_bytes = std::max<size_t>(max_mib << 20, llama.bytes_for(4096).value());
  std::vector<uint8_t> src(buf_bytes), dst(buf_bytes);
  for (size_t i = 0; i < buf_bytes; ++i) src[i] = static_cast<uint8_t>(i * 2654435761u >> 13);
  std::memset(dst.data(), 0, dst.size());

  RawPair raw;
  Pair pair(src.data(), dst.data(), buf_bytes, options);
  raw.move(src.data(), dst.data(), 1 << 20);  // warm up both paths
  pair.move(0, 1 << 20);

  std::printf("## TcpTransport vs raw TCP socket (loopback, median of %d)\n\n", reps);
  std::printf(
      "| size | runs | raw socket GB/s | TcpTransport GB/s | ratio | best raw | best "
      "TcpTransport | best ratio |\n");
  std::printf("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (size_t mib : {1, 4, 16, 64, 128, 256, 512, 1024, 2048}) {
    if (mib > max_mib) break;
    const size_t bytes = mib << 20;
    std::vector<double> r, t;
    // Small sizes are cheap and noisier: more runs.
    const int runs = mib <= 16 ? 4 * reps : reps;
    for (int k = 0; k < runs; ++k) {
      r.push_back(raw.move(src.data(), dst.data(), bytes));
      t.push_back(pair.move(0, bytes));
    }
    if (std::memcmp(src.data(), dst.data(), bytes) != 0) die("payload differs");
    const double rg = bytes / median(r) / 1e9, tg = bytes / median(t) / 1e9;
    const double rb = bytes / *std::min_element(r.begin(), r.end()) / 1e9;
    const double tb = bytes / *std::min_element(t.begin(), t.end()) / 1e9;
    std::printf("| %zu MiB | %d | %.2f | %.2f | %.0f%% | %.2f | %.2f | %.0f%% |\n", mib, runs, rg,
                tg, 100 * tg / rg, rb, tb, 100 * tb / rb);
    std::fflush(stdout);
  }

  std::printf(
      "\n## Contiguous vs per-block (Llama-3.1-8B KV: 32 layers x 8 heads x 128 x bf16, "
      "%zu-token blocks)\n\n",
      block_tokens);
  std::printf(
      "| tokens | bytes | contiguous ms | per-block pipelined ms (msgs) | ratio | "
      "per-block round-trip ms | ratio |\n");
  std::printf("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (int64_t tokens : {1024, 4096, 16384}) {
    const uint64_t bytes = llama.bytes_for(tokens).value();
    if (bytes > buf_bytes) break;
    std::vector<std::pair<uint64_t, uint64_t>> blocks;
    const uint64_t block_bytes = block_tokens * llama.token_row_bytes();
    for (int64_t l = 0; l < llama.num_layers; ++l) {
      for (KvPart p : {KvPart::kKey, KvPart::kValue}) {
        for (int64_t t = 0; t < tokens; t += block_tokens) {
          blocks.emplace_back(llama.offset(tokens, l, p, t).value(), block_bytes);
        }
      }
    }
    std::vector<double> c, pb, rt;
    for (int k = 0; k < reps; ++k) {
      c.push_back(pair.move(0, bytes));
      pb.push_back(pair.move_blocks(blocks, true));
      rt.push_back(pair.move_blocks(blocks, false));
    }
    if (std::memcmp(src.data(), dst.data(), bytes) != 0) die("payload differs");
    const double cm = median(c) * 1e3, pm = median(pb) * 1e3, rm = median(rt) * 1e3;
    std::printf("| %lld | %llu MiB | %.1f | %.1f (%zu) | %.2fx | %.1f | %.2fx |\n",
                static_cast<long long>(tokens), static_cast<unsigned long long>(bytes >> 20), cm,
                pm, blocks.size(), pm / cm, rm, rm / cm);
    std::fflush(stdout);
  }
  return 0;
}
