// Fuzz target: HTTP/1.x request parsing and the server's own limits. The
// input is the raw byte stream of one client connection to a real
// HttpServer on loopback (there is no parser apart from the connection).
// The client writes the input, half-closes, and reads until the server
// closes. Checked: the server neither crashes nor hangs (a read that waits
// longer than kReadTimeout aborts), and everything it writes is a sequence of
// HTTP/1.x responses. Limits are small so that fuzzed inputs reach them.

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "common/logging.h"
#include "protocol/http_server.h"

namespace {

using namespace baton::protocol;

constexpr int kReadTimeoutSeconds = 10;

void handle(HttpRequest req, std::shared_ptr<ResponseWriter> writer) {
  if (req.path == "/stream") {
    if (!writer->start_stream(200, "text/event-stream")) return;
    writer->write("data: " + std::to_string(req.body.size()) + "\n\n");
    writer->write(req.body);
    writer->end_stream();
    return;
  }
  if (req.path == "/error") return writer->send_error(400, req.body, "bad_request");
  if (req.path == "/drop") return;  // the server answers 500 for us
  std::string echo = req.method + " " + req.target + "\n";
  for (const auto& [name, value] : req.headers) echo += name + ": " + value + "\n";
  echo += req.body;
  writer->send(200, "text/plain", std::move(echo),
               {{"X-Echo-Length", std::to_string(req.body.size())}});
}

HttpServer& server() {
  static std::unique_ptr<HttpServer> instance = [] {
    // Refused requests are logged; millions of them only slow the fuzzer.
    baton::LogOptions quiet;
    quiet.level = "off";
    (void)baton::init_logging(quiet);
    HttpServerOptions opts;
    opts.io_threads = 1;
    opts.max_body_bytes = 2048;
    opts.max_header_bytes = 1024;
    opts.max_header_count = 16;
    opts.max_connections = 64;
    auto started = HttpServer::start(opts, handle);
    if (!started.is_ok()) {
      std::fprintf(stderr, "http_request_fuzz: %s\n", started.status().to_string().c_str());
      std::abort();
    }
    return std::move(started).value();
  }();
  return *instance;
}

int connect_to(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) std::abort();
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // libFuzzer's timers interrupt system calls: an interrupted connect goes
  // on in the background (EALREADY until it is done).
  while (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno == EISCONN) break;
    if (errno == EINTR || errno == EALREADY) continue;
    std::fprintf(stderr, "http_request_fuzz: connect: %s\n", std::strerror(errno));
    std::abort();
  }
  // Close with a reset: the client closes last, and thousands of
  // connections a second would otherwise fill the ephemeral ports with
  // TIME_WAIT sockets.
  linger no_linger{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &no_linger, sizeof(no_linger));
  timeval tv{kReadTimeoutSeconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  return fd;
}

// Every response starts with a status line "HTTP/1.x NNN".
void check_responses(std::string_view out) {
  if (out.empty()) return;
  if (out.size() < 12 || (out.substr(0, 9) != "HTTP/1.1 " && out.substr(0, 9) != "HTTP/1.0 ")) {
    std::fprintf(stderr, "http_request_fuzz: output does not start with a status line\n");
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uint16_t port = server().port();
  int fd = connect_to(port);
  size_t sent = 0;
  while (sent < size) {
    ssize_t n = ::send(fd, data + sent, size - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the server closed early (a limit): fine
    sent += static_cast<size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      std::fprintf(stderr, "http_request_fuzz: server silent for %d s\n", kReadTimeoutSeconds);
      std::abort();
    }
    break;  // EOF, or a reset after a limit
  }
  ::close(fd);
  check_responses(out);
  return 0;
}
