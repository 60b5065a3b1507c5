// Disaggregated serving over GPU memory: `baton serve --device cuda
// --kv-transport cuda-ipc` as a prefill and a decode process (GPU 0 to GPU 1
// when there are two GPUs, GPU 0 to GPU 0 across processes otherwise), and a
// mixed instance of the same model. A coordinator written here drives
// protocol/pd.h as the gateway does; every answer must equal the mixed
// instance's, the KV must have moved through the device staging areas, and
// nothing may stay held afterwards. Skipped without a GPU.

#include <dlfcn.h>
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "gateway/test_process.h"
#include "protocol/http_client.h"
#include "protocol/pd.h"
#include "protocol/pd_client.h"
#include "protocol/sse.h"

namespace baton {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace pd = protocol::pd;

constexpr char kToken[] = "test-cluster-token";
constexpr auto kTimeout = std::chrono::seconds(120);

// GPUs this process can use, asked of the driver directly (the test links no
// CUDA library); 0 without a driver.
int cuda_devices() {
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) return 0;
  using Init = int (*)(unsigned);
  using Count = int (*)(int*);
  auto init = reinterpret_cast<Init>(dlsym(lib, "cuInit"));
  auto count = reinterpret_cast<Count>(dlsym(lib, "cuDeviceGetCount"));
  int n = 0;
  if (init == nullptr || count == nullptr || init(0) != 0 || count(&n) != 0) n = 0;
  return n;
}

// A `baton serve --device cuda:N` child process; its port is read from its
// stdout. Several share a GPU, so each takes a small share of its memory.
class Instance {
 public:
  Instance(const std::string& role, int gpu, double memory_share,
           std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {std::string(BATON_BINARY_DIR) + "/cli/baton",
                                     "serve",
                                     "--model",
                                     std::string(BATON_SOURCE_DIR) + "/tests/fixtures/tiny-llama3",
                                     "--port",
                                     "0",
                                     "--device",
                                     "cuda:" + std::to_string(gpu),
                                     "--gpu-memory-utilization",
                                     std::to_string(memory_share),
                                     "--role",
                                     role,
                                     "--log-level",
                                     "warn"};
    if (role != "mixed") {
      for (const char* a : {"--cluster-token", kToken, "--kv-transport", "cuda-ipc"}) {
        args.emplace_back(a);
      }
    }
    args.insert(args.end(), extra.begin(), extra.end());
    process_ = std::make_unique<gateway::testing::ChildProcess>(args);
    auto line = process_->wait_for_line("serving on http://", kTimeout);
    if (line) port_ = gateway::testing::port_of_line(line->substr(0, line->rfind("/v1")));
    EXPECT_NE(port_, 0) << role << " instance on GPU " << gpu << " did not start";
  }
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;

  uint16_t port() const { return port_; }

  std::optional<double> metric(const std::string& name) const {
    auto r = protocol::http_request("127.0.0.1", port_, "GET", "/metrics", "", {},
                                    protocol::deadline_in(kTimeout));
    if (!r.is_ok()) return std::nullopt;
    size_t at = r->body.find("\n" + name + " ");
    if (at == std::string::npos) return std::nullopt;
    size_t end = r->body.find('\n', at + 1);
    return std::stod(r->body.substr(at + name.size() + 2, end - at - name.size() - 2));
  }

  // Polls (up to a deadline) until `name` reads `want` / more than `floor`;
  // returns the last value read.
  double wait_metric(const std::string& name, double want) const {
    return poll(name, [&](double v) { return v == want; });
  }
  double wait_metric_above(const std::string& name, double floor) const {
    return poll(name, [&](double v) { return v > floor; });
  }

 private:
  template <typename Pred>
  double poll(const std::string& name, Pred done) const {
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    for (;;) {
      const double v = metric(name).value_or(-1);
      if (done(v) || Clock::now() >= deadline) return v;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  std::unique_ptr<gateway::testing::ChildProcess> process_;
  uint16_t port_ = 0;
};

json completion(const std::string& prompt, int max_tokens) {
  return json{{"model", "tiny-llama3"},
              {"prompt", prompt},
              {"max_tokens", max_tokens},
              {"temperature", 0},
              {"ignore_eos", true}};
}

std::string long_prompt(int words, int salt = 0) {
  std::string s;
  for (int i = 0; i < words; ++i) s += "word" + std::to_string((i * 7 + salt) % 31) + " ";
  return s;
}

json ask_mixed(const Instance& m, const json& body) {
  auto r = protocol::http_request("127.0.0.1", m.port(), "POST", "/v1/completions", body.dump(),
                                  {{"Content-Type", "application/json"}},
                                  protocol::deadline_in(kTimeout));
  EXPECT_TRUE(r.is_ok());
  if (!r.is_ok()) return nullptr;
  EXPECT_EQ(r->status, 200) << r->body;
  return json::parse(r->body);
}

pd::PdOutcome ask_pd(const Instance& p, const Instance& d, const json& body) {
  pd::PdRequestOptions o;
  o.cluster_token = kToken;
  o.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(kTimeout);
  auto r = pd::run_pd_request({"127.0.0.1", p.port()}, {"127.0.0.1", d.port()},
                              pd::Api::kCompletions, body, o);
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return r.is_ok() ? *r : pd::PdOutcome{};
}

void expect_same_as_mixed(const pd::PdOutcome& got, const json& mixed) {
  ASSERT_EQ(got.decode_status, 200) << got.body;
  ASSERT_FALSE(got.error) << got.error->to_string();
  EXPECT_EQ(got.prefill_events, (std::vector<std::string>{"accepted", "first_token", "done"}));
  const json body = json::parse(got.body);
  ASSERT_TRUE(body.contains("choices")) << got.body;
  ASSERT_EQ(body["choices"].size(), mixed["choices"].size());
  for (size_t i = 0; i < mixed["choices"].size(); ++i) {
    EXPECT_EQ(body["choices"][i]["text"], mixed["choices"][i]["text"]) << "choice " << i;
    EXPECT_EQ(body["choices"][i]["finish_reason"], mixed["choices"][i]["finish_reason"]);
  }
  EXPECT_EQ(body["usage"]["completion_tokens"], mixed["usage"]["completion_tokens"]);
}

class PdOverGpuMemory : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    gpus_ = cuda_devices();
    if (gpus_ == 0) return;
    decode_gpu_ = gpus_ > 1 ? 1 : 0;
    // Shares of each GPU's memory counted from what is in use already, so
    // the processes sharing GPU 0 each get room.
    mixed_ = new Instance("mixed", 0, 0.1);
    prefill_ = new Instance("prefill", 0, 0.2);
    decode_ = new Instance("decode", decode_gpu_, decode_gpu_ == 0 ? 0.3 : 0.1);
  }
  static void TearDownTestSuite() {
    delete decode_;
    delete prefill_;
    delete mixed_;
    decode_ = prefill_ = mixed_ = nullptr;
  }
  void SetUp() override {
    if (gpus_ == 0) GTEST_SKIP() << "no CUDA device usable: the GPU P/D test needs one";
    ASSERT_NE(prefill_->port(), 0);
    ASSERT_NE(decode_->port(), 0);
  }
  void TearDown() override {
    if (gpus_ == 0 || HasFatalFailure()) return;
    // Every request has ended: no KV block, no reservation and no staging
    // slice stays held on either side.
    for (Instance* i : {prefill_, decode_}) {
      EXPECT_EQ(i->wait_metric("baton:num_requests_running", 0), 0);
      EXPECT_EQ(i->wait_metric("baton:kv_cache_usage_perc", 0), 0);
      EXPECT_EQ(i->wait_metric("baton:kv_staging_used_bytes", 0), 0);
    }
  }
  static int gpus_;
  static int decode_gpu_;
  static Instance* mixed_;
  static Instance* prefill_;
  static Instance* decode_;
};
int PdOverGpuMemory::gpus_ = 0;
int PdOverGpuMemory::decode_gpu_ = 0;
Instance* PdOverGpuMemory::mixed_ = nullptr;
Instance* PdOverGpuMemory::prefill_ = nullptr;
Instance* PdOverGpuMemory::decode_ = nullptr;

TEST_F(PdOverGpuMemory, GreedyOutputEqualsMixedAndTheKvMovesBetweenGpus) {
  const double moved_before = decode_->metric("baton:kv_transfer_bytes_total").value_or(0);
  for (const json& body : {completion("The quick brown fox", 24), completion(long_prompt(300), 16),
                           completion(long_prompt(900, 3), 8)}) {
    expect_same_as_mixed(ask_pd(*prefill_, *decode_, body), ask_mixed(*mixed_, body));
  }
  // The KV went through the cuda-ipc transport into the decode GPU's staging
  // area (the counter counts verified bytes).
  EXPECT_GT(decode_->metric("baton:kv_transfer_bytes_total").value_or(0), moved_before);
}

TEST_F(PdOverGpuMemory, APrefixCacheHitOnTheDecodeSideImportsOnlyTheRest) {
  const std::string shared = long_prompt(200, 5);
  const json first = completion(shared + "first ending", 12);
  expect_same_as_mixed(ask_pd(*prefill_, *decode_, first), ask_mixed(*mixed_, first));
  // The decode side now caches the shared prefix: the ticket asks for the
  // KV of the rest only, and the output is still the mixed instance's.
  const json second = completion(shared + "another ending here", 12);
  auto got = ask_pd(*prefill_, *decode_, second);
  ASSERT_TRUE(got.ticket.has_value());
  EXPECT_GT(got.ticket->entries[0].cached_tokens, 0);
  expect_same_as_mixed(got, ask_mixed(*mixed_, second));
}

TEST_F(PdOverGpuMemory, ConcurrentRequestsShareTheStagingAreasAndMatchMixed) {
  std::vector<json> bodies;
  for (int i = 0; i < 12; ++i) bodies.push_back(completion(long_prompt(40 + 25 * i, i), 10));
  std::vector<std::future<pd::PdOutcome>> pending;
  for (const json& b : bodies) {
    pending.push_back(
        std::async(std::launch::async, [&, b] { return ask_pd(*prefill_, *decode_, b); }));
  }
  for (size_t i = 0; i < bodies.size(); ++i) {
    expect_same_as_mixed(pending[i].get(), ask_mixed(*mixed_, bodies[i]));
  }
}

TEST_F(PdOverGpuMemory, AFullStagingAreaIsA503WithItsReasonAndFreesAtTheLease) {
  // A decode instance whose staging area holds one long request (1 MiB:
  // 4,096 tokens of 256 bytes in bf16).
  Instance small("decode", decode_gpu_, decode_gpu_ == 0 ? 0.4 : 0.2, {"--kv-staging-mb", "1"});
  ASSERT_NE(small.port(), 0);
  auto reserve = [&](int salt, int64_t lease_ms) {
    pd::PdRequestOptions o;
    o.cluster_token = kToken;
    o.lease_ms = lease_ms;
    o.send_prefill = false;  // hold the reservation until its lease
    o.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(kTimeout);
    return pd::run_pd_request({"127.0.0.1", prefill_->port()}, {"127.0.0.1", small.port()},
                              pd::Api::kCompletions, completion(long_prompt(1400, salt), 4), o);
  };
  auto held = std::async(std::launch::async, [&] { return reserve(1, 3000); });
  // Once the first reservation holds its slice, a second one finds no room.
  EXPECT_GT(small.wait_metric_above("baton:kv_staging_used_bytes", 0), 0);
  auto refused = reserve(2, 3000);
  ASSERT_TRUE(refused.is_ok());
  EXPECT_EQ(refused->decode_status, 503) << refused->body;
  EXPECT_NE(refused->body.find("kv_staging_full"), std::string::npos) << refused->body;
  auto first = held.get();
  ASSERT_TRUE(first.is_ok());
  ASSERT_TRUE(first->error.has_value());  // its lease ran out: no prefill came
  EXPECT_EQ(first->error->code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(small.wait_metric("baton:kv_staging_used_bytes", 0), 0);
  // The area is free again: a full request through it equals mixed.
  const json body = completion(long_prompt(1400, 2), 6);
  expect_same_as_mixed(ask_pd(*prefill_, small, body), ask_mixed(*mixed_, body));
  EXPECT_EQ(small.wait_metric("baton:kv_cache_usage_perc", 0), 0);
}

}  // namespace
}  // namespace baton
