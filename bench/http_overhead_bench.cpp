// What the HTTP layer of the instance server adds to a request, measured
// against the same requests submitted to the engine in-process.
//
//   http_overhead_bench [--model DIR] [--requests-c1 N] [--requests-c64 N] [--warmup N]
//
// Every request is an 8-token prompt of token ids with max_tokens=1 (greedy,
// ignore_eos), so the model's work is one tiny prefill and what remains is
// per-request overhead. Two paths, one after the other in this process, each
// with its own engine of the same configuration:
//  - engine: C client threads loop Engine::submit + RequestStream::next;
//  - http: an InstanceServer on 127.0.0.1, C client threads each with one
//    keep-alive HttpClient POSTing /v1/completions.
// C is 1 and 64. "added p50" = p50(http) - p50(engine) at the same C; the
// issue's aim is under 100 µs.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <latch>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "protocol/http_client.h"
#include "server/instance_server.h"

namespace {

using namespace baton;
using Clock = std::chrono::steady_clock;

#ifdef BATON_SOURCE_DIR
const char* const kSourceDir = BATON_SOURCE_DIR;
#else
const char* const kSourceDir = ".";
#endif

// Ordinary (non-special except the leading BOS) ids of the tiny-llama3
// fixture: a tokenized English sentence, cut to 8 tokens.
const std::vector<int32_t> kPrompt = {900, 783, 419, 82, 412, 263, 257, 812};
// Generous: a request on a loaded 2-core machine still finishes in
// milliseconds, so hitting this means something is stuck.
constexpr std::chrono::seconds kRequestTimeout{30};

engine::EngineConfig engine_config(const std::string& model) {
  engine::EngineConfig c;
  c.model = model;
  c.threads = 1;
  c.block_size = 16;
  // One block per running sequence (8 + 1 tokens) with room to spare; a small
  // pool keeps both engines' setup cheap and identical.
  c.num_blocks = 256;
  c.max_model_len = 256;
  c.max_num_seqs = 64;
  return c;
}

std::string machine_description() {
  std::string model_name = "unknown CPU";
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) model_name = line.substr(colon + 2);
      break;
    }
  }
  return std::to_string(std::thread::hardware_concurrency()) + " cores (nproc), " + model_name;
}

// One request on a client thread's own connection or engine handle; returns
// ok only when the request completed as expected.
using RequestFn = std::function<Status()>;
// Called on each client thread to set up that thread's private state.
using ClientFactory = std::function<RequestFn()>;

struct LoadResult {
  int clients = 0;
  size_t requests = 0;
  double seconds = 0;
  std::vector<double> latencies_us;  // sorted
  double percentile(double p) const {
    if (latencies_us.empty()) return 0;
    auto i = static_cast<size_t>(p * static_cast<double>(latencies_us.size() - 1) + 0.5);
    return latencies_us[i];
  }
  double rps() const { return static_cast<double>(requests) / seconds; }
};

// Each of `clients` threads sends its warm-up requests, then all start the
// timed part together (so connection setup and first-touch costs stay out of
// it) and send `requests` in all, closed-loop.
Result<LoadResult> run_load(int clients, int requests, int warmup, const ClientFactory& factory) {
  std::latch ready(clients + 1);
  std::vector<std::vector<double>> per_thread(static_cast<size_t>(clients));
  std::mutex error_mu;
  Status first_error;
  std::atomic<bool> failed{false};
  auto fail = [&](Status s) {
    std::lock_guard lock(error_mu);
    if (first_error.is_ok()) first_error = std::move(s);
    failed.store(true);
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&, t] {
      RequestFn one = factory();
      int warm = warmup / clients + (t < warmup % clients ? 1 : 0);
      for (int i = 0; i < warm && !failed.load(); ++i) {
        if (Status s = one(); !s.is_ok()) fail(std::move(s));
      }
      int mine = requests / clients + (t < requests % clients ? 1 : 0);
      auto& lat = per_thread[static_cast<size_t>(t)];
      lat.reserve(static_cast<size_t>(mine));
      ready.arrive_and_wait();
      for (int i = 0; i < mine && !failed.load(); ++i) {
        auto t0 = Clock::now();
        Status s = one();
        auto t1 = Clock::now();
        if (!s.is_ok()) {
          fail(std::move(s));
          break;
        }
        lat.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      }
    });
  }
  ready.arrive_and_wait();
  auto start = Clock::now();
  for (auto& th : threads) th.join();
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (failed.load()) return first_error;

  LoadResult r;
  r.clients = clients;
  r.seconds = seconds;
  for (auto& lat : per_thread) r.latencies_us.insert(r.latencies_us.end(), lat.begin(), lat.end());
  std::sort(r.latencies_us.begin(), r.latencies_us.end());
  r.requests = r.latencies_us.size();
  return r;
}

engine::EngineRequest bench_request() {
  engine::EngineRequest req;
  req.prompt = kPrompt;
  req.params.max_tokens = 1;
  req.params.temperature = 0.0f;
  req.params.ignore_eos = true;
  return req;
}

// One in-process request: submit, then block on the stream until done.
Status engine_round_trip(engine::Engine& engine) {
  auto stream = engine.submit(bench_request());
  if (!stream.is_ok()) return stream.status();
  auto deadline = Clock::now() + kRequestTimeout;
  size_t tokens = 0;
  for (;;) {
    auto ev = (*stream)->next(deadline);
    if (!ev.is_ok()) return ev.status();
    for (const auto& d : ev->deltas) tokens += d.token_ids.size();
    if (ev->done) break;
  }
  // Checked so that a request ending early (an abort) is not timed as a success.
  if (tokens != 1) return internal_error("engine: expected 1 token, got " + std::to_string(tokens));
  return Status::ok();
}

std::string completion_body() {
  std::string ids;
  for (size_t i = 0; i < kPrompt.size(); ++i) {
    if (i > 0) ids += ",";
    ids += std::to_string(kPrompt[i]);
  }
  return R"({"model":"tiny-llama3","prompt":[)" + ids +
         R"(],"max_tokens":1,"temperature":0,"ignore_eos":true})";
}

Status http_round_trip(protocol::HttpClient& client, const std::string& body) {
  static const protocol::Headers kHeaders = {{"Content-Type", "application/json"}};
  auto resp = client.request("POST", "/v1/completions", body, kHeaders,
                             protocol::deadline_in(kRequestTimeout));
  if (!resp.is_ok()) return resp.status();
  if (resp->status != 200) {
    return internal_error("http: status " + std::to_string(resp->status) + ": " + resp->body);
  }
  return Status::ok();
}

int fail_with(const std::string& what, const Status& s) {
  std::fprintf(stderr, "http_overhead_bench: %s: %s\n", what.c_str(), s.to_string().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = std::string(kSourceDir) + "/tests/fixtures/tiny-llama3";
  int requests_c1 = 2000;
  int requests_c64 = 6400;
  int warmup = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--model") model = argv[i + 1];
    if (a == "--requests-c1") requests_c1 = std::stoi(argv[i + 1]);
    if (a == "--requests-c64") requests_c64 = std::stoi(argv[i + 1]);
    if (a == "--warmup") warmup = std::stoi(argv[i + 1]);
  }
  const engine::EngineConfig config = engine_config(model);
  struct Level {
    int clients;
    int requests;
  };
  const std::vector<Level> levels = {{1, requests_c1}, {64, requests_c64}};
  // Warm-up at 64 clients must give each at least one request, so each
  // connection is open before timing starts.
  auto warmup_for = [&](int clients) { return std::max(warmup, clients); };

  std::vector<LoadResult> in_process;
  {
    auto engine = engine::Engine::create(config);
    if (!engine.is_ok()) return fail_with("loading " + model, engine.status());
    if (Status s = (*engine)->start(); !s.is_ok()) return fail_with("engine start", s);
    engine::Engine& e = **engine;
    for (const Level& l : levels) {
      auto r = run_load(l.clients, l.requests, warmup_for(l.clients),
                        [&] { return RequestFn([&e] { return engine_round_trip(e); }); });
      if (!r.is_ok()) return fail_with("engine path", r.status());
      in_process.push_back(std::move(*r));
    }
    (*engine)->stop();
  }

  std::vector<LoadResult> over_http;
  {
    server::ServerOptions so;
    so.http.host = "127.0.0.1";
    so.http.port = 0;
    so.served_model_name = "tiny-llama3";
    auto srv = server::InstanceServer::start(so);
    if (!srv.is_ok()) return fail_with("server start", srv.status());
    auto engine = engine::Engine::create(config);
    if (!engine.is_ok()) return fail_with("loading " + model, engine.status());
    if (Status s = (*srv)->attach_engine(std::move(*engine)); !s.is_ok()) {
      return fail_with("attach_engine", s);
    }
    const uint16_t port = (*srv)->port();
    const std::string body = completion_body();
    for (const Level& l : levels) {
      auto r = run_load(l.clients, l.requests, warmup_for(l.clients), [&] {
        // Shared ownership: the returned callable outlives this factory call.
        auto client = std::make_shared<protocol::HttpClient>("127.0.0.1", port);
        return RequestFn([client, &body] { return http_round_trip(*client, body); });
      });
      if (!r.is_ok()) return fail_with("http path", r.status());
      over_http.push_back(std::move(*r));
    }
    (*srv)->stop();
  }

  std::printf("machine: %s\n", machine_description().c_str());
  std::printf(
      "model %s; engine: CPU backend, 1 thread, max_num_seqs %d, %d KV blocks of %d; "
      "server: %d I/O threads\n",
      model.c_str(), config.max_num_seqs, config.num_blocks, config.block_size,
      protocol::HttpServerOptions{}.io_threads);
  std::printf("requests: 8-token prompt of ids, max_tokens=1, greedy, ignore_eos; closed loop\n\n");
  std::printf(
      "| connections | path | requests | requests/s | p50 µs | p90 µs | p99 µs | added p50 µs |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (size_t i = 0; i < levels.size(); ++i) {
    const LoadResult& a = in_process[i];
    const LoadResult& b = over_http[i];
    std::printf("| %d | engine in-process | %zu | %.0f | %.0f | %.0f | %.0f | — |\n", a.clients,
                a.requests, a.rps(), a.percentile(0.5), a.percentile(0.9), a.percentile(0.99));
    std::printf("| %d | HTTP /v1/completions | %zu | %.0f | %.0f | %.0f | %.0f | %.0f |\n",
                b.clients, b.requests, b.rps(), b.percentile(0.5), b.percentile(0.9),
                b.percentile(0.99), b.percentile(0.5) - a.percentile(0.5));
  }
  return 0;
}
