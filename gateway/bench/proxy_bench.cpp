// The latency the gateway adds in front of an instance, side by side with
// nginx configured as a plain reverse proxy (keep-alive upstream, no
// buffering) in front of the same upstream, in one run.
//
//   gateway_proxy_bench [--requests N] [--workers W] [--nginx PATH] [--levels 1,64,512]
//
// The upstream is an in-process Baton HttpServer that answers at once: a
// short JSON body for non-streamed requests, or an SSE stream of 256 chunks.
// A load generator in this process keeps C keep-alive connections busy (C in
// --levels), each sending its next request when the previous answer is
// complete, against three targets in turn: the upstream directly, nginx and
// the gateway (round_robin over the one upstream, access log off). Added
// latency = percentile(via proxy) - percentile(direct) at the same C.
// Everything shares the machine's cores, so the figures are for comparison
// within a run, not absolute.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "gateway/gateway.h"
#include "protocol/http_server.h"
#include "protocol/sse.h"

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
using namespace baton;

constexpr int kStreamChunks = 256;

// ---- load generator ----

struct LoadResult {
  std::vector<double> latencies_us;
  double seconds = 0;
  int errors = 0;
};

class Conn : public std::enable_shared_from_this<Conn> {
 public:
  Conn(net::io_context& ioc, tcp::endpoint ep, std::string target, std::string body, int requests,
       LoadResult& out)
      : stream_(ioc), ep_(ep), left_(requests), out_(out) {
    req_.method(http::verb::post);
    req_.target(target);
    req_.version(11);
    req_.set(http::field::host, "127.0.0.1");
    req_.set(http::field::content_type, "application/json");
    req_.body() = std::move(body);
    req_.keep_alive(true);
    req_.prepare_payload();
  }

  void start() {
    stream_.async_connect(ep_, [self = shared_from_this()](beast::error_code ec) {
      if (ec) {
        ++self->out_.errors;
        return;
      }
      self->stream_.socket().set_option(tcp::no_delay(true));
      self->next();
    });
  }

 private:
  void next() {
    if (left_-- <= 0) return;
    t0_ = Clock::now();
    http::async_write(stream_, req_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) {
        ++self->out_.errors;
        return;
      }
      self->res_ = {};
      http::async_read(self->stream_, self->buf_, self->res_, [self](beast::error_code ec, size_t) {
        if (ec || self->res_.result_int() != 200) {
          ++self->out_.errors;
          return;
        }
        self->out_.latencies_us.push_back(
            std::chrono::duration<double, std::micro>(Clock::now() - self->t0_).count());
        self->next();
      });
    });
  }

  beast::tcp_stream stream_;
  tcp::endpoint ep_;
  int left_;
  LoadResult& out_;
  http::request<http::string_body> req_;
  http::response<http::string_body> res_;
  beast::flat_buffer buf_;
  Clock::time_point t0_;
};

LoadResult run_load(uint16_t port, bool stream, int connections, int per_connection) {
  net::io_context ioc(1);
  LoadResult r;
  const std::string body =
      stream ? R"({"model":"m","prompt":"hi","stream":true})" : R"({"model":"m","prompt":"hi"})";
  tcp::endpoint ep(net::ip::make_address("127.0.0.1"), port);
  for (int c = 0; c < connections; ++c) {
    std::make_shared<Conn>(ioc, ep, "/v1/completions", body, per_connection, r)->start();
  }
  auto t0 = Clock::now();
  ioc.run();
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return r;
}

double pct(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1))];
}

// ---- nginx ----

struct Nginx {
  pid_t pid = -1;
  std::filesystem::path dir;
  ~Nginx() {
    if (pid > 0) {
      kill(pid, SIGQUIT);
      int st;
      waitpid(pid, &st, 0);
    }
    if (!dir.empty()) std::filesystem::remove_all(dir);
  }
};

bool port_open(uint16_t port) {
  net::io_context ioc;
  tcp::socket s(ioc);
  beast::error_code ec;
  s.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port), ec);
  return !ec;
}

uint16_t free_port() {
  net::io_context ioc;
  tcp::acceptor a(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

bool start_nginx(Nginx& n, const std::string& binary, uint16_t listen, uint16_t upstream,
                 int workers) {
  n.dir = std::filesystem::temp_directory_path() / ("baton-nginx-" + std::to_string(getpid()));
  std::filesystem::create_directories(n.dir);
  const std::string d = n.dir.string();
  std::ofstream conf(n.dir / "nginx.conf");
  conf << "daemon off;\nworker_processes " << workers << ";\npid " << d << "/nginx.pid;\n"
       << "error_log " << d << "/error.log warn;\n"
       << "events { worker_connections 4096; }\n"
       << "http {\n  access_log off;\n"
       << "  client_body_temp_path " << d << "/body;\n  proxy_temp_path " << d << "/proxy;\n"
       << "  fastcgi_temp_path " << d << "/fcgi;\n  uwsgi_temp_path " << d << "/uwsgi;\n"
       << "  scgi_temp_path " << d << "/scgi;\n"
       << "  upstream up { server 127.0.0.1:" << upstream << "; keepalive 1024; }\n"
       << "  server {\n    listen 127.0.0.1:" << listen << ";\n"
       << "    keepalive_requests 1000000;\n"
       << "    location / {\n      proxy_pass http://up;\n      proxy_http_version 1.1;\n"
       << "      proxy_set_header Connection \"\";\n      proxy_buffering off;\n    }\n  }\n}\n";
  conf.close();
  n.pid = fork();
  if (n.pid == 0) {
    execl(binary.c_str(), binary.c_str(), "-p", d.c_str(), "-c", (d + "/nginx.conf").c_str(),
          nullptr);
    _exit(127);
  }
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline) {
    if (port_open(listen)) return true;
    int st;
    if (waitpid(n.pid, &st, WNOHANG) == n.pid) {
      n.pid = -1;
      return false;
    }
    usleep(10000);  // waiting for another process to bind; bounded above
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  int requests = 6000;
  int workers = 2;
  std::string nginx = "/usr/sbin/nginx";
  std::vector<int> levels = {1, 64, 512};
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--requests")) requests = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--workers")) workers = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--nginx")) nginx = argv[i + 1];
    if (!std::strcmp(argv[i], "--levels")) {
      levels.clear();
      std::string s = argv[i + 1];
      for (size_t p = 0; p < s.size();) {
        levels.push_back(std::atoi(s.c_str() + p));
        p = s.find(',', p);
        if (p == std::string::npos) break;
        ++p;
      }
    }
  }
  signal(SIGPIPE, SIG_IGN);

  // The upstream: answers at once.
  std::string stream_body;
  for (int i = 0; i < kStreamChunks; ++i) {
    stream_body +=
        protocol::sse_event(R"({"choices":[{"index":0,"text":"tok)" + std::to_string(i) + "\"}]}");
  }
  protocol::HttpServerOptions uo;
  uo.io_threads = 1;
  uo.max_connections = 8192;
  auto upstream = protocol::HttpServer::start(
      uo, [&](protocol::HttpRequest req, std::shared_ptr<protocol::ResponseWriter> w) {
        if (req.body.find("\"stream\":true") == std::string::npos) {
          return w->send(200, "application/json",
                         R"({"id":"cmpl-1","object":"text_completion","choices":[{"text":"ok"}]})");
        }
        w->start_stream(200, "text/event-stream");
        for (int i = 0; i < kStreamChunks; ++i) {
          w->write(protocol::sse_event(R"({"choices":[{"index":0,"text":"tok)" + std::to_string(i) +
                                       "\"}]}"));
        }
        w->write(std::string(protocol::kSseDone));
        w->end_stream();
      });
  if (!upstream.is_ok()) {
    std::fprintf(stderr, "upstream: %s\n", upstream.status().to_string().c_str());
    return 1;
  }
  const uint16_t up_port = (*upstream)->port();

  gateway::GatewayConfig gc;
  gc.port = 0;
  gc.io_threads = workers;
  gc.access_log = false;
  gc.health.interval = std::chrono::milliseconds(0);
  gc.limits.max_connections = 8192;
  gateway::GroupConfig g;
  g.policy = gateway::PolicyKind::kRoundRobin;
  gc.groups.push_back(g);
  gc.instances.push_back({"up", "127.0.0.1", up_port, gateway::Role::kMixed, "default", false});
  auto gw = gateway::Gateway::start(gc);
  if (!gw.is_ok()) {
    std::fprintf(stderr, "gateway: %s\n", gw.status().to_string().c_str());
    return 1;
  }
  Nginx ng;
  const uint16_t ng_port = free_port();
  if (!start_nginx(ng, nginx, ng_port, up_port, workers)) {
    std::fprintf(stderr, "nginx did not start (%s)\n", nginx.c_str());
    return 1;
  }
  std::printf(
      "gateway (%d event loops) vs nginx (%d workers), upstream 1 thread; "
      "latency to the last byte, µs\n",
      workers, workers);
  std::printf("%-7s %5s | %9s %9s | %9s %9s %9s | %9s %9s %9s | %8s %8s\n", "kind", "conns",
              "direct50", "direct99", "nginx50", "nginx99", "+nginx50", "gw50", "gw99", "+gw50",
              "ngx rps", "gw rps");
  for (bool stream : {false, true}) {
    for (int c : levels) {
      int total = stream ? requests / 8 : requests;
      int per = std::max(2, total / c);
      // Warm connections and pools on every target first.
      run_load(up_port, stream, c, 2);
      run_load(ng_port, stream, c, 2);
      run_load((*gw)->port(), stream, c, 2);
      LoadResult d = run_load(up_port, stream, c, per);
      LoadResult n = run_load(ng_port, stream, c, per);
      LoadResult w = run_load((*gw)->port(), stream, c, per);
      const double d50 = pct(d.latencies_us, 0.5), d99 = pct(d.latencies_us, 0.99);
      const double n50 = pct(n.latencies_us, 0.5), n99 = pct(n.latencies_us, 0.99);
      const double w50 = pct(w.latencies_us, 0.5), w99 = pct(w.latencies_us, 0.99);
      std::printf("%-7s %5d | %9.0f %9.0f | %9.0f %9.0f %9.0f | %9.0f %9.0f %9.0f | %8.0f %8.0f",
                  stream ? "sse256" : "short", c, d50, d99, n50, n99, n50 - d50, w50, w99,
                  w50 - d50, n.latencies_us.size() / n.seconds, w.latencies_us.size() / w.seconds);
      std::printf("   (+p99 nginx %.0f, gateway %.0f; upstream conns %zu)", n99 - d99, w99 - d99,
                  (*upstream)->active_connections());
      if (d.errors + n.errors + w.errors > 0) {
        std::printf("  errors: direct %d nginx %d gateway %d", d.errors, n.errors, w.errors);
      }
      std::printf("\n");
      std::fflush(stdout);
    }
  }
  (*gw)->stop();
  (*upstream)->stop();
  return 0;
}
