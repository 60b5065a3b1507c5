// cuda_ipc_peer: the other process of the cuda-ipc transport tests. It owns
// one CudaIpcTransport and one device buffer and obeys line commands on stdin,
// answering each with one line on stdout:
//   (start)                          -> "ready <endpoint>"
//   fill <seed> <offset> <bytes>     -> "ok": the pattern into the buffer
//   send <id> <offset> <bytes> <peer> <deadline_ms>   -> "ok" | "error <why>"
//   recv <id> <offset> <bytes> <deadline_ms>          -> "ok" | "error <why>"
//   wait <id>                        -> "result <code> <checksum>": the
//       transfer's outcome and, for a receive, host_checksum of the bytes
//       that landed (0 for a send)
//   cancel <id>                      -> "ok"
//   quit
// Usage: cuda_ipc_peer <device> <buffer_bytes> [chunk_bytes]

#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "kvtransfer/cuda_ipc/cuda_ipc_transport.h"
#include "kvtransfer/cuda_ipc/device_checksum.h"
#include "kvtransfer/cuda_ipc/test_pattern.h"

using namespace baton;
using namespace baton::kvtransfer;

namespace {

struct Pending {
  TransferId id;
  bool receive = false;
  uint64_t offset = 0;
  uint64_t bytes = 0;
};

Deadline deadline_ms(long ms) {
  return ms <= 0 ? Deadline::never()
                 : Deadline::after(SteadyClock::instance(), std::chrono::milliseconds(ms));
}

void say(const std::string& line) {
  std::cout << line << std::endl;  // flushed: the test reads line by line
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 && argc != 4) {
    std::fprintf(stderr, "usage: cuda_ipc_peer <device> <buffer_bytes> [chunk_bytes]\n");
    return 2;
  }
  const int device = std::atoi(argv[1]);
  const uint64_t buffer_bytes = std::strtoull(argv[2], nullptr, 10);
  CudaIpcTransportOptions options;
  options.device = device;
  if (argc == 4) options.chunk_bytes = std::strtoull(argv[3], nullptr, 10);
  auto transport = CudaIpcTransport::create(options);
  if (!transport.is_ok()) {
    say("error " + transport.status().to_string());
    return 1;
  }
  cudaSetDevice(device);
  void* buf = nullptr;
  if (cudaMalloc(&buf, buffer_bytes) != cudaSuccess) {
    say("error cudaMalloc failed");
    return 1;
  }
  auto handle = (*transport)->register_memory(buf, buffer_bytes);
  if (!handle.is_ok()) {
    say("error " + handle.status().to_string());
    return 1;
  }
  say("ready " + (*transport)->endpoint());
  std::map<uint64_t, Pending> pending;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string cmd;
    in >> cmd;
    if (cmd == "quit") break;
    if (cmd == "fill") {
      uint64_t seed = 0, offset = 0, bytes = 0;
      in >> seed >> offset >> bytes;
      const auto bytes_host = cuda_ipc::pattern(seed, bytes);
      const cudaError_t e = cudaMemcpy(static_cast<uint8_t*>(buf) + offset, bytes_host.data(),
                                       bytes, cudaMemcpyHostToDevice);
      say(e == cudaSuccess ? "ok" : "error fill");
    } else if (cmd == "send" || cmd == "recv") {
      uint64_t id = 0, offset = 0, bytes = 0;
      std::string peer;
      long ms = 0;
      in >> id >> offset >> bytes;
      if (cmd == "send") in >> peer;
      in >> ms;
      const MemorySlice slice{*handle, offset, bytes};
      Result<TransferId> t =
          cmd == "send" ? (*transport)->submit_send(TransferDesc{id, peer, slice, deadline_ms(ms)})
                        : (*transport)->submit_receive(id, slice, deadline_ms(ms));
      if (!t.is_ok()) {
        say("error " + t.status().to_string());
        continue;
      }
      pending[id] = Pending{*t, cmd == "recv", offset, bytes};
      say("ok");
    } else if (cmd == "wait") {
      uint64_t id = 0;
      in >> id;
      auto it = pending.find(id);
      if (it == pending.end()) {
        say("error unknown transfer");
        continue;
      }
      const Status s = (*transport)->wait(it->second.id, Deadline::never());
      uint64_t sum = 0;
      if (s.is_ok() && it->second.receive) {
        std::vector<uint8_t> host(it->second.bytes);
        cudaMemcpy(host.data(), static_cast<uint8_t*>(buf) + it->second.offset, host.size(),
                   cudaMemcpyDeviceToHost);
        sum = cuda_ipc::host_checksum(host.data(), host.size());
      }
      (*transport)->release(it->second.id);
      pending.erase(it);
      say("result " + std::string(code_name(s.code())) + " " + std::to_string(sum));
    } else if (cmd == "cancel") {
      uint64_t id = 0;
      in >> id;
      auto it = pending.find(id);
      if (it != pending.end()) (void)(*transport)->cancel(it->second.id);
      say("ok");
    } else {
      say("error unknown command");
    }
  }
  return 0;
}
