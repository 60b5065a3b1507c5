#include "bench/serving/runner.h"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <ctime>
#include <deque>
#include <nlohmann/json.hpp>

#include "protocol/http_client.h"

namespace baton::bench {

namespace net = boost::asio;

std::string request_body(const RequestSpec& spec, const RunOptions& options) {
  nlohmann::json j;
  j["model"] = options.model;
  std::string text = prompt_text(spec, options.seed);
  if (options.api == Api::kChat) {
    j["messages"] = nlohmann::json::array({{{"role", "user"}, {"content", std::move(text)}}});
    j["max_completion_tokens"] = spec.output_len;
  } else {
    j["prompt"] = std::move(text);
    j["max_tokens"] = spec.output_len;
  }
  j["stream"] = true;
  j["stream_options"] = {{"include_usage", true}};
  if (options.ignore_eos) j["ignore_eos"] = true;
  if (options.temperature) j["temperature"] = *options.temperature;
  return j.dump();
}

namespace {

std::string iso_utc(Clock::SystemTime t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// One pass over a list of specs on the io_context's thread.
class Phase {
 public:
  Phase(net::io_context& ioc, StreamingClient& client, const RunOptions& options,
        const std::vector<RequestSpec>& specs, bool timed, const Clock& clock)
      : ioc_(ioc),
        client_(client),
        options_(options),
        specs_(specs),
        timed_(timed),
        clock_(clock),
        timer_(ioc),
        records_(specs.size()) {}

  void run() {
    if (specs_.empty()) return;
    t0_ = clock_.now();
    net::post(ioc_, [this] { release_due(); });
    ioc_.restart();
    ioc_.run();
    end_ = clock_.now();
  }

  std::vector<RequestRecord>& records() { return records_; }
  double duration_s() const { return std::chrono::duration<double>(end_ - t0_).count(); }
  int64_t peak_in_flight() const { return peak_; }

 private:
  double due_at(size_t i) const { return timed_ ? specs_[i].arrival_s : 0.0; }

  // Moves every due request to the queue, sends what the limit allows, and
  // sets the timer for the next arrival.
  void release_due() {
    double now = std::chrono::duration<double>(clock_.now() - t0_).count();
    while (next_ < specs_.size() && due_at(next_) <= now) waiting_.push_back(next_++);
    pump();
    if (next_ < specs_.size()) {
      auto at = t0_ + std::chrono::duration_cast<Clock::Duration>(
                          std::chrono::duration<double>(due_at(next_)));
      timer_.expires_at(at);
      timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) release_due();
      });
    }
  }

  void pump() {
    while (!waiting_.empty() &&
           (options_.max_concurrency <= 0 || in_flight_ < options_.max_concurrency)) {
      size_t i = waiting_.front();
      waiting_.pop_front();
      send(i);
    }
  }

  void send(size_t i) {
    const RequestSpec& spec = specs_[i];
    RequestRecord record;
    record.id = spec.id;
    record.scenario = spec.scenario;
    record.scheduled_s = due_at(i);
    record.input_len = spec.input_len;
    record.output_len = spec.output_len;
    protocol::Headers headers = options_.headers;
    if (!spec.scenario.empty()) headers.emplace_back(kScenarioHeader, spec.scenario);
    ++in_flight_;
    peak_ = std::max(peak_, in_flight_);
    client_.send(request_body(spec, options_), std::move(headers), t0_, std::move(record),
                 [this, i](RequestRecord r) {
                   records_[i] = std::move(r);
                   --in_flight_;
                   ++finished_;
                   pump();
                 });
  }

  net::io_context& ioc_;
  StreamingClient& client_;
  const RunOptions& options_;
  const std::vector<RequestSpec>& specs_;
  bool timed_;
  const Clock& clock_;
  net::steady_timer timer_;
  std::vector<RequestRecord> records_;
  Clock::TimePoint t0_, end_;
  size_t next_ = 0;
  std::deque<size_t> waiting_;
  int64_t in_flight_ = 0, peak_ = 0, finished_ = 0;
};

}  // namespace

Result<RunResult> run_benchmark(const std::vector<RequestSpec>& specs, const RunOptions& options,
                                const Clock& clock) {
  net::io_context ioc;
  BATON_ASSIGN_OR_RETURN(auto client, StreamingClient::create(ioc, options.endpoint, options.api,
                                                              options.timeout, clock));
  if (options.num_warmups > 0 && !specs.empty()) {
    std::vector<RequestSpec> warm;
    for (int i = 0; i < options.num_warmups; ++i) warm.push_back(specs[i % specs.size()]);
    Phase(ioc, *client, options, warm, /*timed=*/false, clock).run();
  }
  RunResult result;
  result.started_at = iso_utc(clock.wall_now());
  Phase phase(ioc, *client, options, specs, /*timed=*/true, clock);
  phase.run();
  result.records = std::move(phase.records());
  result.duration_s = phase.duration_s();
  result.peak_in_flight = phase.peak_in_flight();
  return result;
}

Result<std::string> discover_model(const Endpoint& endpoint, std::chrono::milliseconds timeout) {
  std::string prefix;
  if (size_t v1 = endpoint.path.find("/v1/"); v1 != std::string::npos) {
    prefix = endpoint.path.substr(0, v1);
  }
  auto r = protocol::http_request(endpoint.host, endpoint.port, "GET", prefix + "/v1/models", "",
                                  {}, protocol::deadline_in(timeout));
  if (!r.is_ok()) return r.status().with_context("GET /v1/models");
  if (r->status != 200) {
    return unavailable("GET /v1/models answered " + std::to_string(r->status) + ": " + r->body);
  }
  nlohmann::json j = nlohmann::json::parse(r->body, nullptr, false);
  if (j.is_discarded() || !j.contains("data") || !j["data"].is_array() || j["data"].empty() ||
      !j["data"][0].contains("id") || !j["data"][0]["id"].is_string()) {
    return data_error("GET /v1/models: no model id in " + r->body);
  }
  return j["data"][0]["id"].get<std::string>();
}

}  // namespace baton::bench
