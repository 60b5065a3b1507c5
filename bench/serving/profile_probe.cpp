#include "bench/serving/profile_probe.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <vector>

#include "bench/serving/client.h"
#include "bench/serving/workload.h"
#include "controller/load_report.h"
#include "protocol/http_client.h"

namespace baton::bench {

namespace {

using namespace std::chrono_literals;

// Probe prompts are token ids drawn from [kFirstId, kFirstId + kIdRange):
// clear of the low ids special tokens take, inside any vocabulary.
constexpr int32_t kFirstId = 100;
constexpr int32_t kIdRange = 800;

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// The samples of one GET /metrics.
Result<std::vector<controller::MetricSample>> scrape(protocol::HttpClient& client,
                                                     const Endpoint& ep) {
  BATON_ASSIGN_OR_RETURN(auto r,
                         client.request("GET", ep.path, "", {}, protocol::deadline_in(10s)));
  if (r.status != 200) {
    return unavailable(fmt::format("GET {}:{}{} answered {}", ep.host, ep.port, ep.path, r.status));
  }
  return controller::parse_prometheus_text(r.body);
}

// The sum of every series named `name`; nullopt when there is none.
std::optional<double> metric(const std::vector<controller::MetricSample>& samples,
                             const std::string& name) {
  std::optional<double> sum;
  for (const auto& s : samples) {
    if (s.name == name) sum = sum.value_or(0) + s.value;
  }
  return sum;
}

class Prober {
 public:
  Prober(const ProbeOptions& o, std::ostream& log) : o_(o), log_(log) {}

  Result<MeasuredProfile> run() {
    BATON_ASSIGN_OR_RETURN(run_.endpoint, parse_endpoint(o_.base_url, "/v1/completions"));
    BATON_ASSIGN_OR_RETURN(Endpoint health, parse_endpoint(o_.base_url, "/health"));
    BATON_ASSIGN_OR_RETURN(Endpoint models, parse_endpoint(o_.base_url, "/v1/models"));
    run_.seed =
        o_.seed != 0 ? o_.seed : (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
    BATON_RETURN_IF_ERROR(read_model(models));
    if (!o_.metrics_url.empty() || o_.prefill_url.empty()) {
      BATON_ASSIGN_OR_RETURN(
          usage_ep_,
          parse_endpoint(o_.metrics_url.empty() ? o_.base_url : o_.metrics_url, "/metrics"));
    }
    MeasuredProfile p;
    p.step_tokens = o_.step_tokens;
    p.max_batch = o_.max_batch;
    p.block_tokens = o_.block_tokens;
    p.messages_per_block = o_.messages_per_block;
    BATON_ASSIGN_OR_RETURN(p.network_rtt_s, network_rtt(health));
    // The simulator adds one round trip to a mixed request's TTFT (gateway
    // to instance and back) and two to a P/D one (the decode reservation,
    // then the prefill): those come out of the samples so base_s is the
    // engine's own fixed cost.
    hops_ = o_.prefill_url.empty() ? 1 : 2;
    log_ << fmt::format("network round trip {:.3f} ms; model {} (context {}), prompts up to {}\n",
                        p.network_rtt_s * 1e3, run_.model, context_, max_prompt_)
         << std::flush;
    rtt_ = p.network_rtt_s;
    // Warm-up: the first requests of a fresh server pay one-time costs.
    BATON_RETURN_IF_ERROR(
        run_specs({spec(max_prompt_ / 4, 4), spec(max_prompt_ / 4, 4)}, 1).status());
    std::vector<PrefillSample> prefill;
    BATON_RETURN_IF_ERROR(probe_prefill(prefill));
    for (const auto& x : prefill) {
      log_ << fmt::format("  prefill sample: {} new + {} cached tokens, batch {}: {:.2f} ms\n",
                          x.new_tokens, x.cached_tokens, x.batch, x.seconds * 1e3);
    }
    BATON_ASSIGN_OR_RETURN(p.prefill, fit_prefill(prefill));
    log_ << fmt::format(
        "prefill: {:.2f} ms + {:.0f} tokens/s + {:.3g} ms/cached token + {:.2f} "
        "ms/request (R^2 {:.4f})\n",
        p.prefill.base_s * 1e3, p.prefill.tokens_per_s, p.prefill.cached_token_s * 1e3,
        p.prefill.per_request_s * 1e3, p.prefill.fit.r2);
    std::vector<DecodeSample> decode;
    BATON_RETURN_IF_ERROR(probe_decode(decode));
    for (const auto& x : decode) {
      log_ << fmt::format("  decode sample: batch {}, {} context tokens: {:.2f} ms/step\n", x.batch,
                          x.total_context, x.seconds * 1e3);
    }
    BATON_ASSIGN_OR_RETURN(p.decode, fit_decode(decode));
    log_ << fmt::format(
        "decode step: {:.2f} ms + {:.3f} ms/seq + {:.3g} us/context token (R^2 {:.4f})\n",
        p.decode.base_s * 1e3, p.decode.per_seq_s * 1e3, p.decode.per_context_token_s * 1e6,
        p.decode.fit.r2);
    if (capacity_) {
      p.kv_capacity_tokens = *capacity_;
      log_ << fmt::format("KV room: about {} tokens\n", *capacity_);
    }
    if (!o_.prefill_url.empty()) {
      std::vector<TransferSample> transfers;
      BATON_RETURN_IF_ERROR(probe_transfer(transfers));
      for (const auto& x : transfers) {
        log_ << fmt::format("  transfer sample: {} tokens, {:.0f} bytes: {:.2f} ms\n", x.tokens,
                            x.bytes, x.seconds * 1e3);
      }
      auto link = fit_link(transfers);
      if (!link.is_ok()) {
        // Transfers too short to tell bandwidth from noise: no link section,
        // said plainly, rather than a made-up one.
        log_ << "KV link not fitted (" << link.status().message()
             << "); the profile keeps the simulator's default link\n";
        return p;
      }
      log_ << fmt::format("KV link: {:.3f} GB/s + {:.1f} us/message, {:.0f} bytes/token\n",
                          link->bytes_per_s / 1e9, link->message_s * 1e6, link->bytes_per_token);
      p.link = *link;
    }
    return p;
  }

 private:
  Status read_model(const Endpoint& models) {
    BATON_ASSIGN_OR_RETURN(
        auto r, protocol::http_request(models.host, models.port, "GET", models.path, "", {},
                                       protocol::deadline_in(30s)));
    if (r.status != 200) return unavailable("GET /v1/models answered " + std::to_string(r.status));
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (j.is_discarded() || !j.contains("data") || !j["data"].is_array() || j["data"].empty()) {
      return data_error("GET /v1/models: no model in " + r.body);
    }
    const auto& card = j["data"][0];
    run_.model = o_.model.empty() ? card.value("id", std::string()) : o_.model;
    context_ = card.value("max_model_len", int64_t{0});
    if (context_ <= 0) context_ = o_.step_tokens + 128;
    // Room for the longest output a probe asks for.
    max_prompt_ = o_.max_prompt > 0 ? o_.max_prompt : std::min(o_.step_tokens, context_ - 64);
    if (max_prompt_ < 64) return invalid_argument("profile: prompts up to at least 64 tokens");
    return Status();
  }

  Result<double> network_rtt(const Endpoint& health) {
    protocol::HttpClient client(health.host, health.port);
    std::vector<double> took;
    for (int i = 0; i < 21; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      BATON_ASSIGN_OR_RETURN(
          auto r, client.request("GET", health.path, "", {}, protocol::deadline_in(10s)));
      if (r.status != 200) return unavailable("GET /health answered " + std::to_string(r.status));
      if (i > 0) {  // the first one opens the connection
        took.push_back(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
    }
    return median(took);
  }

  RequestSpec spec(int64_t input, int output, int prefix_group = -1, int64_t prefix_len = 0) {
    RequestSpec s;
    s.id = next_id_++;
    s.input_len = static_cast<int>(std::max<int64_t>(1, input));
    s.output_len = output;
    s.prefix_group = prefix_group;
    s.prefix_len = static_cast<int>(prefix_len);
    return s;
  }

  // The prompt of a probe request, as token ids (models without a
  // tokenizer take only those, and the count is then exact): its shared
  // prefix drawn from the group, the rest from the id, both under the
  // run's seed.
  std::vector<int32_t> prompt_ids(const RequestSpec& s) const {
    std::vector<int32_t> ids;
    ids.reserve(static_cast<size_t>(s.input_len));
    auto draw = [&](uint64_t key, int n) {
      std::mt19937_64 rng(run_.seed ^ (key * 0x9e3779b97f4a7c15ULL));
      std::uniform_int_distribution<int32_t> id(kFirstId, kFirstId + kIdRange - 1);
      for (int i = 0; i < n; ++i) ids.push_back(id(rng));
    };
    const int prefix = s.prefix_group >= 0 ? std::min(s.prefix_len, s.input_len) : 0;
    if (prefix > 0) draw(static_cast<uint64_t>(s.prefix_group) | (1ULL << 62), prefix);
    draw(static_cast<uint64_t>(s.id), s.input_len - prefix);
    return ids;
  }

  // Sends `specs` (all due at once, at most `concurrency` in flight) with
  // bench's streaming client; every one must succeed.
  Result<std::vector<RequestRecord>> run_specs(std::vector<RequestSpec> specs, int concurrency) {
    boost::asio::io_context ioc;
    BATON_ASSIGN_OR_RETURN(
        auto client, StreamingClient::create(ioc, run_.endpoint, Api::kCompletions, o_.timeout,
                                             SteadyClock::instance()));
    std::vector<RequestRecord> out(specs.size());
    size_t next = 0;
    int in_flight = 0;
    const auto t0 = SteadyClock::instance().now();
    std::function<void()> pump = [&] {
      while (next < specs.size() && in_flight < concurrency) {
        const size_t i = next++;
        const RequestSpec& s = specs[i];
        nlohmann::json body = {{"model", run_.model},
                               {"prompt", prompt_ids(s)},
                               {"max_tokens", s.output_len},
                               {"stream", true},
                               {"stream_options", {{"include_usage", true}}},
                               {"ignore_eos", true}};
        RequestRecord rec;
        rec.id = s.id;
        rec.input_len = s.input_len;
        rec.output_len = s.output_len;
        ++in_flight;
        client->send(body.dump(), {}, t0, std::move(rec), [&, i](RequestRecord r) {
          out[i] = std::move(r);
          --in_flight;
          pump();
        });
      }
    };
    pump();
    ioc.run();
    for (const auto& rec : out) {
      if (!rec.success) {
        return unavailable(
            fmt::format("probe request failed (HTTP {}): {}", rec.http_status, rec.error));
      }
    }
    return out;
  }

  Status probe_prefill(std::vector<PrefillSample>& out) {
    const int reps = 3;
    std::vector<int64_t> lengths;
    for (int64_t div :
         o_.quick ? std::vector<int64_t>{8, 4, 2, 1} : std::vector<int64_t>{16, 8, 4, 2, 1}) {
      lengths.push_back(max_prompt_ / div);
    }
    if (!o_.quick) lengths.push_back(max_prompt_ * 3 / 4);
    // One request at a time: the step holds that prompt alone.
    std::vector<RequestSpec> specs;
    for (int r = 0; r < reps; ++r) {
      for (int64_t len : lengths) specs.push_back(spec(len, 1));
    }
    BATON_ASSIGN_OR_RETURN(auto recs, run_specs(specs, 1));
    std::map<int, std::vector<double>> ttft;
    std::map<int, std::vector<double>> tokens;
    for (const auto& r : recs) {
      ttft[r.input_len].push_back(r.ttft_s);
      tokens[r.input_len].push_back(r.prompt_tokens);
    }
    for (const auto& [len, t] : ttft) {
      out.push_back({static_cast<int64_t>(median(tokens[len])), 0, 1, sample_s(median(t))});
    }
    // Several at once: the time until the last has its first token is the
    // prefill of all of them (in one step when they fit its token budget).
    for (int b : o_.quick ? std::vector<int>{4} : std::vector<int>{2, 4, 8}) {
      const int64_t len = std::min<int64_t>(max_prompt_ / 4, o_.step_tokens / b);
      std::vector<double> last;
      int64_t total = 0;
      for (int r = 0; r < reps; ++r) {
        std::vector<RequestSpec> batch;
        for (int i = 0; i < b; ++i) batch.push_back(spec(len, 1));
        BATON_ASSIGN_OR_RETURN(auto rs, run_specs(batch, b));
        double worst = 0;
        total = 0;
        for (const auto& rec : rs) {
          worst = std::max(worst, rec.ttft_s);
          total += rec.prompt_tokens;
        }
        last.push_back(worst);
      }
      out.push_back({total, 0, b, sample_s(median(last))});
    }
    // Cached tokens: a prompt whose first half was sent just before. The
    // prefix cache keeps whole blocks, so that many tokens are cached.
    for (int64_t div : o_.quick ? std::vector<int64_t>{2} : std::vector<int64_t>{4, 2}) {
      const int64_t prefix = max_prompt_ / div;
      const int64_t own = max_prompt_ / 8;
      const int group = next_group_++;
      std::vector<RequestSpec> warm_then_hits{spec(prefix + own, 1, group, prefix)};
      for (int r = 0; r < reps; ++r) warm_then_hits.push_back(spec(prefix + own, 1, group, prefix));
      BATON_ASSIGN_OR_RETURN(auto rs, run_specs(warm_then_hits, 1));
      std::vector<double> t;
      int64_t tokens_in = 0;
      for (size_t i = 1; i < rs.size(); ++i) {
        t.push_back(rs[i].ttft_s);
        tokens_in = rs[i].prompt_tokens;
      }
      const int64_t cached = prefix / o_.block_tokens * o_.block_tokens;
      out.push_back({tokens_in - cached, cached, 1, sample_s(median(t))});
    }
    log_ << fmt::format("prefill: {} probes\n", out.size()) << std::flush;
    return Status();
  }

  Status probe_decode(std::vector<DecodeSample>& out) {
    const int n_out = o_.quick ? 16 : 32;
    std::vector<int> batches;
    for (int b : o_.quick ? std::vector<int>{1, 8} : std::vector<int>{1, 2, 4, 8, 16, 32, 64}) {
      if (b <= o_.max_batch) batches.push_back(b);
    }
    if (batches.size() < 2) batches = {1, std::max(1, o_.max_batch)};
    std::vector<int64_t> contexts = {max_prompt_ / 16, max_prompt_ / 2};
    if (!o_.quick) contexts = {max_prompt_ / 16, max_prompt_ / 4, max_prompt_ / 2};
    for (int b : batches) {
      for (int64_t len : contexts) {
        std::vector<RequestSpec> specs;
        for (int i = 0; i < b; ++i) specs.push_back(spec(len, n_out));
        UsageWatch watch(usage_ep_);
        BATON_ASSIGN_OR_RETURN(auto rs, run_specs(specs, b));
        const double peak = watch.stop();
        std::vector<double> itl;
        double context = 0;
        for (const auto& r : rs) {
          itl.insert(itl.end(), r.itl_s.begin(), r.itl_s.end());
          context += r.prompt_tokens + n_out / 2.0;
        }
        if (itl.empty()) return unavailable("decode probe: no inter-token latencies came back");
        out.push_back({b, static_cast<int64_t>(context), median(itl)});
        // KV room: the held tokens over the share of the cache they fill, from
        // the probe that filled it most (the most digits).
        if (peak > peak_usage_) {
          peak_usage_ = peak;
          double held = 0;
          for (const auto& r : rs) held += r.prompt_tokens + n_out;
          capacity_ = static_cast<int64_t>(held / peak);
        }
      }
    }
    log_ << fmt::format("decode: {} probes\n", out.size()) << std::flush;
    return Status();
  }

  Status probe_transfer(std::vector<TransferSample>& out) {
    BATON_ASSIGN_OR_RETURN(Endpoint ep, parse_endpoint(o_.prefill_url, "/metrics"));
    protocol::HttpClient client(ep.host, ep.port);
    const int reps = 3;
    for (int64_t div : std::vector<int64_t>{8, 2, 1}) {
      std::vector<TransferSample> same;
      for (int r = 0; r < reps; ++r) {
        BATON_ASSIGN_OR_RETURN(auto before, scrape(client, ep));
        const double c0 = metric(before, "baton:kv_transfer_seconds_count").value_or(0);
        const double s0 = metric(before, "baton:kv_transfer_seconds_sum").value_or(0);
        const double b0 = metric(before, "baton:kv_transfer_bytes_total").value_or(0);
        BATON_ASSIGN_OR_RETURN(auto rs, run_specs({spec(max_prompt_ / div, 2)}, 1));
        // The send is recorded when the decode side confirms it, which can
        // come a little after the client's last token: wait for it, bounded.
        const auto deadline = std::chrono::steady_clock::now() + 5s;
        while (true) {
          BATON_ASSIGN_OR_RETURN(auto after, scrape(client, ep));
          const double c1 = metric(after, "baton:kv_transfer_seconds_count").value_or(0);
          if (c1 >= c0 + 1) {
            if (c1 == c0 + 1) {
              same.push_back({metric(after, "baton:kv_transfer_bytes_total").value_or(0) - b0,
                              rs.front().prompt_tokens,
                              metric(after, "baton:kv_transfer_seconds_sum").value_or(0) - s0});
            }
            break;
          }
          if (std::chrono::steady_clock::now() >= deadline) {
            return unavailable("KV transfer probe: " + o_.prefill_url +
                               " recorded no transfer (is it the prefill instance behind " +
                               o_.base_url + "?)");
          }
          std::this_thread::sleep_for(10ms);  // the next scrape, not a synchronisation
        }
      }
      // The median of the repeats: one slow send (a scheduling hiccup on the
      // host) must not tilt the line.
      if (same.empty()) continue;
      std::vector<double> t;
      for (const auto& x : same) t.push_back(x.seconds);
      out.push_back({same.front().bytes, same.front().tokens, median(t)});
    }
    log_ << fmt::format("KV transfer: {} probes\n", out.size()) << std::flush;
    return Status();
  }

  // A TTFT less the round trips the simulator adds itself.
  double sample_s(double ttft) const { return std::max(0.0, ttft - hops_ * rtt_); }

  // Scrapes kv_cache_usage_perc every 20 ms while a probe runs; stop()
  // returns the highest value seen (0 without an endpoint or the gauge).
  class UsageWatch {
   public:
    explicit UsageWatch(const std::optional<Endpoint>& endpoint) {
      if (!endpoint) return;
      thread_ = std::thread([this, ep = *endpoint] {
        protocol::HttpClient client(ep.host, ep.port);
        std::unique_lock lock(mu_);
        while (!stop_) {
          lock.unlock();
          auto s = scrape(client, ep);
          lock.lock();
          if (!s.is_ok()) break;
          peak_ = std::max(peak_, metric(*s, "baton:kv_cache_usage_perc").value_or(0));
          cv_.wait_for(lock, 20ms, [this] { return stop_; });
        }
      });
    }
    ~UsageWatch() { stop(); }
    double stop() {
      {
        std::lock_guard lock(mu_);
        stop_ = true;
      }
      cv_.notify_all();
      if (thread_.joinable()) thread_.join();
      std::lock_guard lock(mu_);
      return peak_;
    }

   private:
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    double peak_ = 0;
    std::thread thread_;
  };

  const ProbeOptions& o_;
  std::ostream& log_;
  struct {
    Endpoint endpoint;
    std::string model;
    uint64_t seed = 0;
  } run_;
  std::optional<Endpoint> usage_ep_;
  int64_t context_ = 0, max_prompt_ = 0;
  int hops_ = 1;
  double rtt_ = 0;
  // Ids and prefix groups of their own, so no probe prompt repeats another
  // (or a benchmark's with the default seed).
  int64_t next_id_ = 1'000'000'000;
  int next_group_ = 1'000'000;
  double peak_usage_ = 0;
  std::optional<int64_t> capacity_;
};

}  // namespace

Result<MeasuredProfile> measure_profile(const ProbeOptions& options, std::ostream& log) {
  Prober prober(options, log);
  return prober.run();
}

}  // namespace baton::bench
