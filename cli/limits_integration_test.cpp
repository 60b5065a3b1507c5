// The limits a client meets, end to end: a real `baton serve` with small
// limits, and a real `baton gateway` in front of it with the same ones, each
// probed over loopback. Every limit is refused with a clear status and
// message on both: prompt over the context (400), max_tokens and n over their
// limits (400), body too large (413), too many or too large headers (431),
// connections per client (429 + Retry-After), headers dribbled byte by byte
// (closed within the header timeout); model paths outside --model-root
// refused at start, and the API's `model` field never names a file. Also a
// small overload: an instance with room for one request sheds the excess at
// once with 503 + Retry-After, through the gateway, and serves after.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "gateway/test_process.h"
#include "protocol/http_client.h"

namespace baton {
namespace {

using namespace std::chrono_literals;
using gateway::testing::ChildProcess;
using gateway::testing::port_of_line;
using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr auto kStartup = 60s;  // loading the model on a busy 2-core machine
constexpr auto kWait = 30s;

// The limits both processes are started with.
constexpr int kMaxModelLen = 128;
constexpr int kMaxTokensLimit = 64;
constexpr int kMaxBodyKb = 16;
constexpr int kMaxHeaderKb = 4;
constexpr int kMaxHeaders = 30;
constexpr int kPerClient = 3;
constexpr auto kHeaderTimeout = 1000ms;

const std::string kBaton = std::string(BATON_BINARY_DIR) + "/cli/baton";
const std::string kModels = std::string(BATON_SOURCE_DIR) + "/models";

// A shell that runs `baton` with stderr merged into stdout, so that a test
// reads the error a refused start prints.
std::vector<std::string> with_stderr(const std::vector<std::string>& argv) {
  std::string cmd = "exec";
  for (const auto& a : argv) cmd += " '" + a + "'";
  return {"/bin/sh", "-c", cmd + " 2>&1"};
}

struct Process {
  std::unique_ptr<ChildProcess> child;
  uint16_t port = 0;
};

Process start(const std::vector<std::string>& argv, const std::string& ready) {
  Process p;
  p.child = std::make_unique<ChildProcess>(argv);
  auto line = p.child->wait_for_line(ready, kStartup);
  if (line) p.port = port_of_line(line->substr(0, line->rfind("/v1")));
  return p;
}

std::vector<std::string> serve_argv(std::vector<std::string> extra) {
  std::vector<std::string> argv = {kBaton,
                                   "serve",
                                   "--model-root",
                                   kModels,
                                   "--model",
                                   "baton-tiny",
                                   "--port",
                                   "0",
                                   "--threads",
                                   "1",
                                   "--kv-cache-mb",
                                   "32",
                                   "--log-level",
                                   "warn",
                                   "--max-model-len",
                                   std::to_string(kMaxModelLen),
                                   "--max-tokens-limit",
                                   std::to_string(kMaxTokensLimit),
                                   "--max-body-kb",
                                   std::to_string(kMaxBodyKb),
                                   "--max-header-kb",
                                   std::to_string(kMaxHeaderKb),
                                   "--max-headers",
                                   std::to_string(kMaxHeaders),
                                   "--header-timeout-ms",
                                   std::to_string(kHeaderTimeout.count())};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

// A gateway YAML with the same limits in front of `upstream`.
std::string write_gateway_config(const std::string& name, uint16_t upstream, int per_client = 0) {
  const std::string path =
      (fs::temp_directory_path() / (name + "-" + std::to_string(getpid()) + ".yaml")).string();
  std::ofstream(path) << "listen: {host: 127.0.0.1, port: 0, io_threads: 2}\n"
                      << "instances:\n  - {name: m0, url: http://127.0.0.1:" << upstream << "}\n"
                      << "limits: {max_body_kb: " << kMaxBodyKb
                      << ", max_header_kb: " << kMaxHeaderKb << ", max_headers: " << kMaxHeaders
                      << ", max_connections_per_client: " << per_client
                      << ", header_timeout_ms: " << kHeaderTimeout.count() << "}\n"
                      << "health: {interval_ms: 0}\n";
  return path;
}

// A raw client socket from `source` (any 127/8 address) with deadline-bounded
// reads, for byte-exact requests and for counting connections per address.
class Raw {
 public:
  Raw(uint16_t port, const char* source) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in from{};
    from.sin_family = AF_INET;
    inet_pton(AF_INET, source, &from.sin_addr);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&from), sizeof from);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0;
  }
  ~Raw() { ::close(fd_); }
  bool connected() const { return connected_; }
  bool send(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  // Reads for at most `limit`, until `needle` arrived or the peer closed.
  const std::string& read(std::chrono::milliseconds limit, std::string_view needle = {}) {
    const auto deadline = SteadyClock::now() + limit;
    while (!closed_ && (needle.empty() || received_.find(needle) == std::string::npos)) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
      if (left <= 0ms) break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        closed_ = true;
        break;
      }
      received_.append(buf, static_cast<size_t>(n));
    }
    return received_;
  }
  bool closed() const { return closed_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;
  std::string received_;
};

Result<protocol::HttpResponse> post(uint16_t port, const std::string& path, const json& body) {
  return protocol::http_request("127.0.0.1", port, "POST", path, body.dump(),
                                {{"Content-Type", "application/json"}},
                                protocol::deadline_in(kWait));
}

std::string error_message(const protocol::HttpResponse& r) {
  auto j = json::parse(r.body, nullptr, false);
  if (j.is_discarded() || !j.contains("error")) return "";
  return j["error"].value("message", "");
}

class Limits : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    instance_ = new Process(start(serve_argv({}), "Baton is serving on"));
    ASSERT_NE(instance_->port, 0) << "instance did not start";
    config_ = write_gateway_config("baton-limits-gateway", instance_->port);
    gateway_ = new Process(
        start({kBaton, "gateway", "--config", config_, "--log-level", "warn"}, "Baton gateway on"));
    ASSERT_NE(gateway_->port, 0) << "gateway did not start";
  }
  static void TearDownTestSuite() {
    delete gateway_;
    delete instance_;
    fs::remove(config_);
  }

  // The instance and the gateway in front of it: each check runs on both.
  static std::vector<std::pair<std::string, uint16_t>> targets() {
    return {{"instance", instance_->port}, {"gateway", gateway_->port}};
  }

  static Process* instance_;
  static Process* gateway_;
  static std::string config_;
};

Process* Limits::instance_ = nullptr;
Process* Limits::gateway_ = nullptr;
std::string Limits::config_;

TEST_F(Limits, RequestsOverTheModelsLimitsGet400NamingTheField) {
  std::string long_prompt;
  for (int i = 0; i < 200; ++i) long_prompt += "word" + std::to_string(i) + " ";
  for (const auto& [name, port] : targets()) {
    SCOPED_TRACE(name);
    auto ok = post(port, "/v1/completions",
                   {{"model", "baton-tiny"}, {"prompt", "Hello"}, {"max_tokens", 4}});
    ASSERT_TRUE(ok.is_ok());
    EXPECT_EQ(ok->status, 200) << ok->body;

    auto too_long = post(port, "/v1/completions",
                         {{"model", "baton-tiny"}, {"prompt", long_prompt}, {"max_tokens", 4}});
    ASSERT_TRUE(too_long.is_ok());
    EXPECT_EQ(too_long->status, 400);
    EXPECT_NE(error_message(*too_long).find("maximum context length is 128 tokens"),
              std::string::npos)
        << too_long->body;

    auto max_tokens =
        post(port, "/v1/completions",
             {{"model", "baton-tiny"}, {"prompt", "Hello"}, {"max_tokens", kMaxTokensLimit + 1}});
    ASSERT_TRUE(max_tokens.is_ok());
    EXPECT_EQ(max_tokens->status, 400);
    EXPECT_NE(error_message(*max_tokens).find("max_tokens: at most 64"), std::string::npos)
        << max_tokens->body;

    auto n = post(port, "/v1/completions",
                  {{"model", "baton-tiny"}, {"prompt", "Hello"}, {"max_tokens", 4}, {"n", 17}});
    ASSERT_TRUE(n.is_ok());
    EXPECT_EQ(n->status, 400);
    EXPECT_TRUE(error_message(*n).starts_with("n:")) << n->body;
  }
}

TEST_F(Limits, TheModelFieldNamesAServedModelNeverAPath) {
  for (const auto& [name, port] : targets()) {
    SCOPED_TRACE(name);
    for (const std::string model : {"../../etc/passwd", "/etc/passwd", "baton-tiny/../../etc"}) {
      auto r =
          post(port, "/v1/completions", {{"model", model}, {"prompt", "Hello"}, {"max_tokens", 4}});
      ASSERT_TRUE(r.is_ok());
      EXPECT_EQ(r->status, 404) << model << ": " << r->body;
      EXPECT_NE(error_message(*r).find("does not exist"), std::string::npos) << r->body;
      EXPECT_EQ(r->body.find("root:"), std::string::npos);  // no file content, ever
    }
  }
}

TEST_F(Limits, OversizedBodiesGet413AndOversizedHeadersGet431) {
  const std::string big(static_cast<size_t>(kMaxBodyKb) * 1024 + 1, 'a');
  for (const auto& [name, port] : targets()) {
    SCOPED_TRACE(name);
    auto body = post(port, "/v1/completions",
                     {{"model", "baton-tiny"}, {"prompt", big}, {"max_tokens", 4}});
    ASSERT_TRUE(body.is_ok());
    EXPECT_EQ(body->status, 413) << body->body;

    std::string many = "GET /health HTTP/1.1\r\nHost: x\r\n";
    for (int i = 0; i <= kMaxHeaders; ++i) many += "X-H" + std::to_string(i) + ": v\r\n";
    Raw count(port, "127.0.0.3");
    ASSERT_TRUE(count.send(many + "\r\n"));
    EXPECT_TRUE(count.read(kWait, "\r\n\r\n").starts_with("HTTP/1.1 431 ")) << count.read(0ms);

    Raw size(port, "127.0.0.3");
    ASSERT_TRUE(size.send("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " +
                          std::string(static_cast<size_t>(kMaxHeaderKb) * 1024, 'b') + "\r\n\r\n"));
    EXPECT_TRUE(size.read(kWait, "\r\n\r\n").starts_with("HTTP/1.1 431 ")) << size.read(0ms);
  }
}

// Per-client limits get processes of their own: every other request of the
// suite comes from 127.0.0.1, and a connection a client just closed may still
// count until the server reads its end.
TEST(LimitsPerClient, ConnectionsOverTheLimitGet429WithRetryAfter) {
  Process inst = start(serve_argv({"--max-connections-per-client", std::to_string(kPerClient)}),
                       "Baton is serving on");
  ASSERT_NE(inst.port, 0);
  const std::string config = write_gateway_config("baton-limits-per-client", inst.port, kPerClient);
  Process gw =
      start({kBaton, "gateway", "--config", config, "--log-level", "warn"}, "Baton gateway on");
  ASSERT_NE(gw.port, 0);
  for (const auto& [name, port] : {std::pair{"instance", inst.port}, {"gateway", gw.port}}) {
    SCOPED_TRACE(name);
    // From an address of its own, so that nobody else's connections count.
    std::vector<std::unique_ptr<Raw>> held;
    for (int i = 0; i < kPerClient; ++i) {
      held.push_back(std::make_unique<Raw>(port, "127.0.0.2"));
      ASSERT_TRUE(held.back()->send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"));
      ASSERT_TRUE(held.back()->read(kWait, "\r\n\r\n").starts_with("HTTP/1.1 200 "));
    }
    Raw over(port, "127.0.0.2");
    ASSERT_TRUE(over.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"));
    const std::string& reply = over.read(kWait);
    EXPECT_TRUE(reply.starts_with("HTTP/1.1 429 ")) << reply;
    EXPECT_NE(reply.find("Retry-After: "), std::string::npos) << reply;
    EXPECT_NE(reply.find("too many connections from this client"), std::string::npos) << reply;
    EXPECT_TRUE(over.closed());
    // Another address is not affected.
    Raw other(port, "127.0.0.4");
    ASSERT_TRUE(other.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"));
    EXPECT_TRUE(other.read(kWait, "\r\n\r\n").starts_with("HTTP/1.1 200 ")) << other.read(0ms);
  }
  fs::remove(config);
}

TEST_F(Limits, HeadersDribbledByteByByteAreCutAtTheHeaderTimeout) {
  const std::string request =
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "X-Padding: " +
      std::string(2000, 'p') + "\r\n\r\n";
  for (const auto& [name, port] : targets()) {
    SCOPED_TRACE(name);
    Raw slow(port, "127.0.0.5");
    ASSERT_TRUE(slow.connected());
    const auto began = SteadyClock::now();
    // One byte every 50 ms: the whole request would take ~100 s.
    for (size_t i = 0; i < request.size() && !slow.closed(); ++i) {
      if (!slow.send(request.substr(i, 1))) break;
      slow.read(50ms);
      if (SteadyClock::now() - began > 10s) break;
    }
    slow.read(kWait);  // whatever the server said before closing
    const auto held = SteadyClock::now() - began;
    EXPECT_TRUE(slow.closed()) << "the connection was still open";
    // Closed at the timeout; the margin is for a busy machine.
    EXPECT_LT(held, kHeaderTimeout + 4s);
    EXPECT_TRUE(slow.read(0ms).empty() || slow.read(0ms).starts_with("HTTP/1.1 408 "))
        << slow.read(0ms);
  }
}

TEST(LimitsModelRoot, ModelPathsOutsideTheRootAreRefusedAtStart) {
  char tmpl[] = "/tmp/baton_model_root_XXXXXX";
  const fs::path root = mkdtemp(tmpl);
  fs::create_directory_symlink(fs::path(kModels) / "baton-tiny", root / "linked-out");
  for (const std::string& model : std::vector<std::string>{
           "../../etc", "../" + root.filename().string() + "/..", "/etc", "linked-out"}) {
    SCOPED_TRACE(model);
    ChildProcess serve(with_stderr({kBaton, "serve", "--model-root", root.string(), "--model",
                                    model, "--port", "0", "--log-level", "warn"}));
    auto line = serve.wait_for_line("outside the model root", kStartup);
    ASSERT_TRUE(line) << "no refusal";
    EXPECT_NE(line->find("baton serve: model '" + model + "'"), std::string::npos) << *line;
  }
  // The same model through the root that holds it starts (the suite's
  // instance does: --model-root models --model baton-tiny).
  fs::remove_all(root);
}

TEST(LimitsOverload, AnInstanceWithRoomForOneShedsTheRestAtOnceWithRetryAfter) {
  Process inst =
      start(serve_argv({"--max-num-seqs", "1", "--max-waiting", "1"}), "Baton is serving on");
  ASSERT_NE(inst.port, 0);
  const std::string config = write_gateway_config("baton-limits-overload", inst.port);
  Process gw =
      start({kBaton, "gateway", "--config", config, "--log-level", "warn"}, "Baton gateway on");
  ASSERT_NE(gw.port, 0);

  constexpr int kClients = 12;
  std::mutex mu;
  int ok = 0, shed = 0, other = 0, shed_without_retry_after = 0;
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      auto r = protocol::http_request("127.0.0.1", gw.port, "POST", "/v1/completions",
                                      json{{"model", "baton-tiny"},
                                           {"prompt", "Overload " + std::to_string(i)},
                                           {"max_tokens", 48},
                                           {"ignore_eos", true}}
                                          .dump(),
                                      {{"Content-Type", "application/json"}},
                                      protocol::deadline_in(kWait));
      std::lock_guard lock(mu);
      if (!r.is_ok()) {
        ++other;
      } else if (r->status == 200) {
        ++ok;
      } else if (r->status == 503 || r->status == 429) {
        ++shed;
        if (!r->header("retry-after")) ++shed_without_retry_after;
      } else {
        ++other;
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(other, 0);
  EXPECT_GE(ok, 1);
  EXPECT_GE(shed, 1) << "12 requests at once on room for 2 shed none";
  EXPECT_EQ(shed_without_retry_after, 0);
  EXPECT_EQ(ok + shed, kClients);
  // Served normally afterwards.
  auto after = post(gw.port, "/v1/completions",
                    {{"model", "baton-tiny"}, {"prompt", "After"}, {"max_tokens", 4}});
  ASSERT_TRUE(after.is_ok());
  EXPECT_EQ(after->status, 200) << after->body;
  fs::remove(config);
}

}  // namespace
}  // namespace baton
