// GPU-to-GPU KV transfer through CudaIpcTransport, next to cudaMemcpyPeer of
// the same bytes between the same GPUs in the same run.
//
//   kv_transfer_gpu_bench [--src 0] [--dst 1] [--reps N] [--max-mib 2048] [--chunk-mib 64]
//                        [--sm 1]
//
// The receiver is a second process (forked before either touches CUDA) that
// owns the destination buffer on --dst, as a decode instance would; the
// sender is this process, with the source buffer on --src. For each size
// (1 MiB ... --max-mib, plus the KV of one Llama-3.1-8B request at 1k, 4k and
// 16k tokens: 128 KiB per token), interleaved so that all six see the same
// noise:
//   peer      cudaMemcpyPeerAsync src -> a buffer of this process on --dst,
//             peer access enabled, timed from the call to the stream's end;
//   raw-ce    cudaMemcpyAsync src -> the receiver's buffer opened here with
//             cudaIpcOpenMemHandle: the copy the transport makes, without
//             its protocol (what the transport could reach at best);
//   raw-sm    the same copy by a kernel on the sender's SMs;
//   ipc       one transfer through the transport with end-to-end GPU
//             checksums (the default), timed from submit_send to the
//             sender's kDone, which includes the offer, the grant, the copy,
//             the receiver's verification and its ack;
//   ipc-nv    the same with verification off on both sides;
//   ipc-sm    verified, copying with a kernel on the sender's SMs
//             (CudaIpcTransportOptions::kernel_copy) instead of the copy
//             engine (raw-sm and ipc-sm are skipped with --sm 0).
// --chunk-mib sets CudaIpcTransportOptions::chunk_bytes on both sides (the
// pieces in which a verified transfer is copied and checksummed).
// Median of --reps runs (default 20; 10 above 256 MiB) after one warm-up of
// each (the first transfer opens the peer's allocation with CUDA IPC; later
// ones reuse the mapping, as a decode instance's import buffer would).

#include <cuda_runtime_api.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kvtransfer/cuda_ipc/cuda_ipc_transport.h"
#include "kvtransfer/cuda_ipc/device_checksum.h"

namespace {

using namespace baton;
using namespace baton::kvtransfer;
using BenchClock = std::chrono::steady_clock;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "kv_transfer_gpu_bench: %s\n", what.c_str());
  std::exit(1);
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) die(std::string(what) + ": " + cudaGetErrorString(e));
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Line I/O over a pipe pair.
struct Line {
  int rd = -1, wr = -1;
  std::string buf;
  void put(const std::string& s) {
    const std::string l = s + "\n";
    if (::write(wr, l.data(), l.size()) != static_cast<ssize_t>(l.size())) die("pipe write");
  }
  std::string get() {
    while (true) {
      const size_t nl = buf.find('\n');
      if (nl != std::string::npos) {
        std::string l = buf.substr(0, nl);
        buf.erase(0, nl + 1);
        return l;
      }
      char tmp[256];
      const ssize_t n = ::read(rd, tmp, sizeof(tmp));
      if (n <= 0) die("peer process went away");
      buf.append(tmp, static_cast<size_t>(n));
    }
  }
};

// The receiving process: two transports on `dev` (verification on, off)
// sharing one destination buffer. Commands: "R <which> <id> <bytes>" posts a
// receive and answers "posted", then "done <code>" when it finishes.
int receiver(int dev, uint64_t max_bytes, uint64_t chunk_bytes, Line line) {
  std::unique_ptr<CudaIpcTransport> t[2];
  MemoryHandle h[2];
  check(cudaSetDevice(dev), "cudaSetDevice (receiver)");
  void* buf = nullptr;
  check(cudaMalloc(&buf, max_bytes), "cudaMalloc (receiver)");
  std::string eps;
  for (int i = 0; i < 2; ++i) {
    CudaIpcTransportOptions o;
    o.device = dev;
    o.verify = i == 0;
    o.chunk_bytes = chunk_bytes;
    auto r = CudaIpcTransport::create(o);
    if (!r.is_ok()) die(r.status().to_string());
    t[i] = std::move(*r);
    auto hh = t[i]->register_memory(buf, max_bytes);
    if (!hh.is_ok()) die(hh.status().to_string());
    h[i] = *hh;
    eps += " " + t[i]->endpoint();
  }
  cudaIpcMemHandle_t ipc{};
  check(cudaIpcGetMemHandle(&ipc, buf), "cudaIpcGetMemHandle");
  std::string hex;
  for (size_t i = 0; i < sizeof(ipc); ++i) {
    char b[3];
    std::snprintf(b, sizeof(b), "%02x", reinterpret_cast<const unsigned char*>(&ipc)[i]);
    hex += b;
  }
  line.put("ready" + eps + " " + hex);
  while (true) {
    const std::string cmd = line.get();
    if (cmd == "quit") break;
    int which = 0;
    unsigned long long id = 0, bytes = 0;
    if (std::sscanf(cmd.c_str(), "R %d %llu %llu", &which, &id, &bytes) != 3) die("bad command");
    auto r = t[which]->submit_receive(
        id, {h[which], 0, bytes},
        Deadline::after(SteadyClock::instance(), std::chrono::seconds(30)));
    if (!r.is_ok()) die(r.status().to_string());
    line.put("posted");
    const Status s = t[which]->wait(*r, Deadline::never());
    t[which]->release(*r);
    line.put("done " + std::string(code_name(s.code())));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int src = 0, dst = 1, reps_arg = 0, sm = 1;
  uint64_t max_mib = 2048, chunk_mib = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--src") {
      src = std::atoi(argv[i + 1]);
    } else if (a == "--dst") {
      dst = std::atoi(argv[i + 1]);
    } else if (a == "--reps") {
      reps_arg = std::atoi(argv[i + 1]);
    } else if (a == "--max-mib") {
      max_mib = std::strtoull(argv[i + 1], nullptr, 10);
    } else if (a == "--sm") {
      sm = std::atoi(argv[i + 1]);
    } else if (a == "--chunk-mib") {
      chunk_mib = std::strtoull(argv[i + 1], nullptr, 10);
    } else {
      die("unknown flag " + a);
    }
  }
  const uint64_t max_bytes = max_mib << 20;

  int to_child[2], from_child[2];
  if (::pipe(to_child) != 0 || ::pipe(from_child) != 0) die("pipe");
  // Fork before any CUDA call: a child of a process with CUDA state cannot
  // use CUDA.
  const pid_t pid = ::fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    ::close(to_child[1]);
    ::close(from_child[0]);
    return receiver(dst, max_bytes, chunk_mib << 20, Line{to_child[0], from_child[1], {}});
  }
  ::close(to_child[0]);
  ::close(from_child[1]);
  Line peer{from_child[0], to_child[1], {}};
  const std::string ready = peer.get();
  char ep0[128], ep1[128], hex[160];
  if (std::sscanf(ready.c_str(), "ready %127s %127s %159s", ep0, ep1, hex) != 3) {
    die("peer: " + ready);
  }
  cudaIpcMemHandle_t ipc{};
  if (std::strlen(hex) != 2 * sizeof(ipc)) die("peer: bad handle");
  for (size_t i = 0; i < sizeof(ipc); ++i) {
    unsigned v = 0;
    std::sscanf(hex + 2 * i, "%2x", &v);
    reinterpret_cast<unsigned char*>(&ipc)[i] = static_cast<unsigned char>(v);
  }
  const std::string endpoint[2] = {ep0, ep1};

  int count = 0;
  check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  cudaDeviceProp ps{}, pd{};
  check(cudaGetDeviceProperties(&ps, src), "properties");
  check(cudaGetDeviceProperties(&pd, dst), "properties");
  int can = 0;
  cudaDeviceCanAccessPeer(&can, src, dst);
  std::printf("GPU %d (%s) -> GPU %d (%s), %d devices, peer access %s\n", src, ps.name, dst,
              pd.name, count, can ? "yes" : "no");

  // Baseline buffers: the source on src, a destination of this process on dst.
  void *sbuf = nullptr, *dbuf = nullptr;
  check(cudaSetDevice(dst), "cudaSetDevice");
  check(cudaMalloc(&dbuf, max_bytes), "cudaMalloc dst");
  if (can && src != dst) {
    const cudaError_t e = cudaDeviceEnablePeerAccess(src, 0);
    if (e != cudaErrorPeerAccessAlreadyEnabled) check(e, "enable peer access");
  }
  check(cudaSetDevice(src), "cudaSetDevice");
  check(cudaMalloc(&sbuf, max_bytes), "cudaMalloc src");
  check(cudaMemset(sbuf, 0x5a, max_bytes), "cudaMemset");
  if (can && src != dst) {
    const cudaError_t e = cudaDeviceEnablePeerAccess(dst, 0);
    if (e != cudaErrorPeerAccessAlreadyEnabled) check(e, "enable peer access");
  }
  cudaStream_t stream;
  check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
  void* mapped = nullptr;
  check(cudaIpcOpenMemHandle(&mapped, ipc, cudaIpcMemLazyEnablePeerAccess), "cudaIpcOpenMemHandle");

  std::unique_ptr<CudaIpcTransport> t[3];
  MemoryHandle h[3];
  for (int i = 0; i < 3; ++i) {
    CudaIpcTransportOptions o;
    o.kernel_copy = i == 2;
    o.device = src;
    o.verify = i != 1;
    o.chunk_bytes = chunk_mib << 20;
    auto r = CudaIpcTransport::create(o);
    if (!r.is_ok()) die(r.status().to_string());
    t[i] = std::move(*r);
    auto hh = t[i]->register_memory(sbuf, max_bytes);
    if (!hh.is_ok()) die(hh.status().to_string());
    h[i] = *hh;
  }

  uint64_t next_id = 1;
  auto run_peer = [&](uint64_t bytes) {
    const auto t0 = BenchClock::now();
    check(cudaMemcpyPeerAsync(dbuf, dst, sbuf, src, bytes, stream), "cudaMemcpyPeerAsync");
    check(cudaStreamSynchronize(stream), "sync");
    return std::chrono::duration<double>(BenchClock::now() - t0).count();
  };
  auto run_raw = [&](uint64_t bytes) {
    const auto t0 = BenchClock::now();
    check(cudaMemcpyAsync(mapped, sbuf, bytes, cudaMemcpyDefault, stream), "cudaMemcpyAsync");
    check(cudaStreamSynchronize(stream), "sync");
    return std::chrono::duration<double>(BenchClock::now() - t0).count();
  };
  auto run_raw_kernel = [&](uint64_t bytes) {
    const auto t0 = BenchClock::now();
    check(cuda_ipc::launch_copy(mapped, sbuf, bytes, stream), "launch_copy");
    check(cudaStreamSynchronize(stream), "sync");
    return std::chrono::duration<double>(BenchClock::now() - t0).count();
  };
  auto run_ipc = [&](int which, uint64_t bytes) {
    const uint64_t id = next_id++;
    const int rx = which == 1 ? 1 : 0;  // the receiver's transport: verify on or off
    peer.put("R " + std::to_string(rx) + " " + std::to_string(id) + " " + std::to_string(bytes));
    if (peer.get() != "posted") die("peer did not post");
    const auto t0 = BenchClock::now();
    auto s =
        t[which]->submit_send({id,
                               endpoint[rx],
                               {h[which], 0, bytes},
                               Deadline::after(SteadyClock::instance(), std::chrono::seconds(30))});
    if (!s.is_ok()) die(s.status().to_string());
    const Status st = t[which]->wait(*s, Deadline::never());
    const double dt = std::chrono::duration<double>(BenchClock::now() - t0).count();
    t[which]->release(*s);
    const std::string done = peer.get();
    if (!st.is_ok() || done != "done ok") die("transfer failed: " + st.to_string() + " / " + done);
    return dt;
  };

  struct Size {
    uint64_t bytes;
    std::string label;
  };
  std::vector<Size> sizes;
  for (uint64_t mib = 1; mib <= max_mib; mib *= 4) sizes.push_back({mib << 20, ""});
  for (uint64_t tokens : {1024, 4096, 16384}) {
    const uint64_t b = tokens * (uint64_t{128} << 10);
    if (b <= max_bytes)
      sizes.push_back({b, "Llama-3.1-8B " + std::to_string(tokens / 1024) + "k tok"});
  }
  if (max_bytes > sizes.back().bytes) sizes.push_back({max_bytes, ""});
  std::stable_sort(sizes.begin(), sizes.end(),
                   [](const Size& a, const Size& b) { return a.bytes < b.bytes; });

  run_peer(1 << 20);
  run_raw(1 << 20);
  if (sm) run_raw_kernel(1 << 20);
  for (int i = 0; i < (sm ? 3 : 2); ++i) run_ipc(i, 1 << 20);
  std::printf("%8s %7s %7s %7s %7s %7s %7s %8s %8s %6s %6s %6s  %s\n", "MiB", "peer", "raw-ce",
              "raw-sm", "ipc", "ipc-nv", "ipc-sm", "peer us", "ipc us", "ratio", "r-nv", "r-sm",
              "(GB/s)");
  for (const auto& sz : sizes) {
    const int reps = reps_arg > 0 ? reps_arg : (sz.bytes > (uint64_t{256} << 20) ? 10 : 20);
    std::vector<double> tp, tr, tk, ti, tn, ts;
    for (int r = 0; r < reps; ++r) {
      tp.push_back(run_peer(sz.bytes));
      tr.push_back(run_raw(sz.bytes));
      tk.push_back(sm ? run_raw_kernel(sz.bytes) : 1e9);
      ti.push_back(run_ipc(0, sz.bytes));
      tn.push_back(run_ipc(1, sz.bytes));
      ts.push_back(sm ? run_ipc(2, sz.bytes) : 1e9);
    }
    auto gbs = [&](const std::vector<double>& v) { return sz.bytes / median(v) / 1e9; };
    const double gp = gbs(tp);
    std::printf("%8.1f %7.1f %7.1f %7.1f %7.1f %7.1f %7.1f %8.1f %8.1f %6.3f %6.3f %6.3f  %s\n",
                sz.bytes / double(1 << 20), gp, gbs(tr), gbs(tk), gbs(ti), gbs(tn), gbs(ts),
                median(tp) * 1e6, median(ti) * 1e6, gbs(ti) / gp, gbs(tn) / gp, gbs(ts) / gp,
                sz.label.c_str());
    std::fflush(stdout);
  }
  peer.put("quit");
  int st = 0;
  ::waitpid(pid, &st, 0);
  return 0;
}
