// Time to first token of one request served disaggregated (a prefill and a
// decode instance on loopback, driven by the P/D protocol) next to the same
// request on one mixed instance, in the same process and run, with the P/D
// TTFT broken into its phases as the decode instance's metrics record them:
// queue and prefill (on the prefill instance), transfer (first tokens
// received to KV landed) and first_decode (KV landed to the next token).
//
//   pd_bench [--model M] [--prompt-lens 128,512,2048] [--requests N] [--max-tokens N]
//
// Requests run one at a time (closed loop, concurrency 1), streamed, with
// fresh token-id prompts (no prefix-cache hits), after one warm-up each.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <numeric>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "protocol/http_client.h"
#include "protocol/pd_client.h"
#include "server/instance_server.h"

namespace {

using namespace baton;
using Clock = std::chrono::steady_clock;
namespace pd = protocol::pd;

constexpr char kToken[] = "pd-bench";

struct Options {
  std::string model = "dummy:llama-100m";
  std::vector<int> prompt_lens = {128, 512, 2048};
  int requests = 5;
  int max_tokens = 8;
  int threads = 1;
};

Result<std::unique_ptr<server::InstanceServer>> start_instance(const Options& o,
                                                               server::Role role) {
  server::ServerOptions so;
  so.http.host = "127.0.0.1";
  so.http.port = 0;
  so.served_model_name = "bench";
  so.pd.role = role;
  so.pd.cluster_token = kToken;
  BATON_ASSIGN_OR_RETURN(auto s, server::InstanceServer::start(so));
  engine::EngineConfig ec;
  ec.model = o.model;
  ec.threads = o.threads;
  ec.kv_cache_bytes = int64_t{1} << 30;
  ec.max_model_len = 4096;
  ec.max_num_batched_tokens = 4096;
  BATON_ASSIGN_OR_RETURN(auto e, engine::Engine::create(ec));
  BATON_RETURN_IF_ERROR(s->attach_engine(std::move(e)));
  return s;
}

nlohmann::ordered_json request_body(int len, int salt, int max_tokens) {
  std::vector<int> ids;
  for (int i = 0; i < len; ++i) ids.push_back(3 + (i * 131 + salt * 7919) % 30000);
  return {{"model", "bench"}, {"prompt", ids},      {"max_tokens", max_tokens},
          {"temperature", 0}, {"ignore_eos", true}, {"stream", true}};
}

// Client-observed TTFT of one streamed request to a mixed instance.
Result<double> mixed_ttft(uint16_t port, const nlohmann::ordered_json& body) {
  const auto t0 = Clock::now();
  double ttft = -1;
  auto r =
      protocol::http_stream("127.0.0.1", port, "POST", "/v1/completions", body.dump(),
                            {{"Content-Type", "application/json"}},
                            protocol::deadline_in(std::chrono::minutes(5)), [&](std::string_view) {
                              if (ttft < 0)
                                ttft = std::chrono::duration<double>(Clock::now() - t0).count();
                              return true;
                            });
  if (!r.is_ok()) return r.status();
  if (r->status != 200) return Status(StatusCode::kBadGateway, "HTTP " + std::to_string(r->status));
  return ttft;
}

// sum and count of each phase of the decode instance's breakdown histogram.
std::map<std::string, std::pair<double, double>> breakdown(uint16_t port) {
  std::map<std::string, std::pair<double, double>> out;
  auto r = protocol::http_request("127.0.0.1", port, "GET", "/metrics", "", {},
                                  protocol::deadline_in(std::chrono::seconds(30)));
  if (!r.is_ok()) return out;
  std::istringstream in(r->body);
  for (std::string line; std::getline(in, line);) {
    const std::string prefix = "baton:pd_ttft_breakdown_seconds_";
    if (line.rfind(prefix, 0) != 0) continue;
    const bool sum = line.compare(prefix.size(), 3, "sum") == 0;
    const bool count = line.compare(prefix.size(), 5, "count") == 0;
    if (!sum && !count) continue;
    auto q = line.find("phase=\"");
    if (q == std::string::npos) continue;
    auto e = line.find('"', q + 7);
    const std::string phase = line.substr(q + 7, e - q - 7);
    const double v = std::strtod(line.c_str() + line.rfind(' ') + 1, nullptr);
    (sum ? out[phase].first : out[phase].second) = v;
  }
  return out;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(std::atoi(item.c_str()));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--model") {
      o.model = next();
    } else if (a == "--prompt-lens") {
      o.prompt_lens = parse_list(next());
    } else if (a == "--requests") {
      o.requests = std::max(1, std::atoi(next().c_str()));
    } else if (a == "--max-tokens") {
      o.max_tokens = std::max(2, std::atoi(next().c_str()));
    } else if (a == "--threads") {
      o.threads = std::max(1, std::atoi(next().c_str()));
    } else {
      std::fprintf(stderr,
                   "usage: pd_bench [--model M] [--prompt-lens 128,512,2048] [--requests N] "
                   "[--max-tokens N] [--threads N]\n");
      return 2;
    }
  }
  auto mixed = start_instance(o, server::Role::kMixed);
  auto prefill = start_instance(o, server::Role::kPrefill);
  auto decode = start_instance(o, server::Role::kDecode);
  for (auto* s : {&mixed, &prefill, &decode}) {
    if (!s->is_ok()) {
      std::fprintf(stderr, "pd_bench: %s\n", s->status().to_string().c_str());
      return 1;
    }
  }
  const pd::PdEndpoint p{"127.0.0.1", (*prefill)->port()};
  const pd::PdEndpoint d{"127.0.0.1", (*decode)->port()};
  pd::PdRequestOptions po;
  po.cluster_token = kToken;
  po.timeout = std::chrono::minutes(5);

  std::printf(
      "model %s, %d requests per length after one warm-up, %d output tokens, "
      "engine threads %d per instance, %u hardware threads\n\n",
      o.model.c_str(), o.requests, o.max_tokens, o.threads, std::thread::hardware_concurrency());
  std::printf(
      "| prompt | mixed TTFT | P/D TTFT | P/D / mixed | queue | prefill | transfer | "
      "first decode | KV bytes |\n");
  std::printf("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  int salt = 1;
  for (int len : o.prompt_lens) {
    // Warm-up of both paths at this length.
    (void)mixed_ttft((*mixed)->port(), request_body(len, salt++, o.max_tokens));
    (void)pd::run_pd_request(p, d, pd::Api::kCompletions, request_body(len, salt++, o.max_tokens),
                             po);
    std::vector<double> mixed_t, pd_t;
    uint64_t kv_bytes = 0;
    auto before = breakdown(d.port);
    for (int i = 0; i < o.requests; ++i) {
      auto m = mixed_ttft((*mixed)->port(), request_body(len, salt++, o.max_tokens));
      auto r = pd::run_pd_request(p, d, pd::Api::kCompletions,
                                  request_body(len, salt++, o.max_tokens), po);
      if (!m.is_ok() || !r.is_ok() || r->error || r->ttft_s < 0) {
        std::fprintf(stderr, "pd_bench: a request failed at prompt length %d\n", len);
        return 1;
      }
      mixed_t.push_back(*m);
      pd_t.push_back(r->ttft_s);
      if (r->ticket) {
        const auto& k = r->ticket->kv_shape;
        const auto& e = r->ticket->entries.at(0);
        kv_bytes = static_cast<uint64_t>(e.prompt_token_ids.size() - e.cached_tokens) * 2 *
                   static_cast<uint64_t>(k.num_layers * k.num_kv_heads * k.head_dim * k.dtype_size);
      }
    }
    auto after = breakdown(d.port);
    auto mean_ms = [&](const std::string& phase) {
      const double n = after[phase].second - before[phase].second;
      return n > 0 ? 1000 * (after[phase].first - before[phase].first) / n : 0.0;
    };
    std::printf(
        "| %d | %.2f ms | %.2f ms | %.2f | %.2f ms | %.2f ms | %.2f ms | %.2f ms | %.1f MiB |\n",
        len, 1000 * median(mixed_t), 1000 * median(pd_t),
        median(pd_t) / std::max(1e-9, median(mixed_t)), mean_ms("queue"), mean_ms("prefill"),
        mean_ms("transfer"), mean_ms("first_decode"), static_cast<double>(kv_bytes) / (1 << 20));
  }
  return 0;
}
