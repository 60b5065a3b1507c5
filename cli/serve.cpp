// `baton serve`: one engine behind the OpenAI-compatible API. With --etcd the
// instance registers itself (controller::EtcdRegistration) once it is ready,
// re-puts its registration when its role changes, and revokes it on a
// graceful stop.

#include <unistd.h>

#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "cli/commands.h"
#include "cli/controller_settings.h"
#include "common/logging.h"
#include "controller/membership.h"
#include "engine/engine.h"
#include "model/model_path.h"
#include "server/instance_server.h"

#ifndef BATON_DEFAULT_MODEL
#define BATON_DEFAULT_MODEL "models/baton-tiny"
#endif

namespace baton::cli {

namespace {

struct ServeFlags {
  std::string model = BATON_DEFAULT_MODEL;
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string served_model_name;
  std::string role = "mixed";
  std::string cluster_token;
  std::string kv_host = "127.0.0.1";
  int kv_port = 0;
  std::string kv_transport = "tcp";
  int64_t kv_staging_mb = 0;
  int threads = 0;
  std::string device = "cpu";
  double gpu_memory_utilization = 0.9;
  int io_threads = 2;
  int max_num_seqs = 64;
  int max_num_batched_tokens = 2048;
  int max_model_len = 0;
  int block_size = 16;
  int64_t kv_cache_mb = 1024;
  bool no_prefix_caching = false;
  bool no_chunked_prefill = false;
  uint64_t seed = 0;
  double ttft_budget_ms = 0;
  int max_waiting = 256;
  int max_in_flight = 1024;
  int max_tokens_limit = 0;
  int64_t max_body_kb = 8192;
  std::string model_root;
  int max_connections = 1024;
  int max_connections_per_client = 0;
  int64_t header_timeout_ms = 10000;
  int64_t max_header_kb = 16;
  int max_headers = 100;
  std::string log_level = "info";
  bool log_json = false;
  EtcdFlags etcd;
  std::string group = "default";
  std::string advertise_host;
  std::string instance_id;
  int64_t etcd_ttl_s = 10;
};

// The instance's etcd registration, kept in step with its role. The server's
// role-change callback only records the new role (it must not block); a
// thread of this object puts it to etcd, retrying every second until etcd
// takes it. Thread-safe.
class EtcdPresence {
 public:
  EtcdPresence(EtcdTarget target, controller::Member member, int64_t ttl_s)
      : target_(std::move(target)), ttl_s_(ttl_s), member_(std::move(member)) {}
  ~EtcdPresence() { stop(); }

  // Fails fast, before a long model load, when etcd cannot be reached.
  Status check_reachable() {
    controller::EtcdClient client(target_.endpoint);
    return client.range_prefix(key()).status();
  }

  // Grants the lease and puts the key (with the latest role) for the instance
  // serving on `port`, then follows role changes.
  Status start(uint16_t port) {
    controller::Member m;
    {
      std::lock_guard lock(mu_);
      member_.port = port;
      if (member_.id.empty()) member_.id = member_.address();
      m = member_;
      pending_ = false;
    }
    auto reg = controller::EtcdRegistration::start(target_.endpoint, target_.prefix, m, ttl_s_);
    if (!reg.is_ok()) return reg.status();
    std::lock_guard lock(mu_);
    registration_ = std::move(*reg);
    thread_ = std::thread([this] { run(); });
    return Status::ok();
  }

  // Never blocks: the put happens on this object's thread.
  void role_changed(server::Role role) {
    {
      std::lock_guard lock(mu_);
      member_.role = role;
      pending_ = true;
    }
    cv_.notify_all();
  }

  // Revokes the lease: the key disappears at once. Idempotent.
  void stop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    if (registration_) registration_->stop();
  }

  std::string key() const {
    std::lock_guard lock(mu_);
    controller::Member m = member_;
    if (m.id.empty()) m.id = m.address();
    return controller::member_key(target_.prefix, m);
  }

 private:
  void run() {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      if (!pending_) {
        cv_.wait(lock, [&] { return stopping_ || pending_; });
        continue;
      }
      controller::Member m = member_;
      pending_ = false;
      lock.unlock();
      Status s = registration_->update(m);
      lock.lock();
      if (s.is_ok()) {
        BATON_LOG_INFO("etcd: registration updated to role {}", controller::role_name(m.role));
        continue;
      }
      BATON_LOG_WARN("etcd: putting role {}: {}; retrying", controller::role_name(m.role),
                     s.to_string());
      pending_ = true;
      cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_; });
    }
  }

  const EtcdTarget target_;
  const int64_t ttl_s_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  controller::Member member_;  // guarded by mu_
  bool pending_ = false;       // member_ not yet put
  bool stopping_ = false;
  std::unique_ptr<controller::EtcdRegistration> registration_;
  std::thread thread_;
};

// The address others reach this instance at: --advertise-host, else the bound
// host unless it is a wildcard, else this machine's name.
std::string advertise_host(const ServeFlags& f) {
  if (!f.advertise_host.empty()) return f.advertise_host;
  if (f.host != "0.0.0.0" && f.host != "::" && f.host != "[::]" && !f.host.empty()) return f.host;
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) == 0 && name[0] != '\0') return name;
  return "127.0.0.1";
}

int run_serve(const ServeFlags& f) {
  LogOptions log;
  log.level = f.log_level;
  log.json = f.log_json;
  if (Status s = init_logging(log); !s.is_ok()) {
    std::cerr << "baton serve: " << s.message() << "\n";
    return kExitUsage;
  }
  sigset_t signals = block_stop_signals();

  std::unique_ptr<EtcdPresence> etcd;
  if (!f.etcd.url.empty()) {
    auto target = etcd_target(f.etcd);
    if (!target.is_ok()) {
      std::cerr << "baton serve: " << target.status().message() << "\n";
      return kExitUsage;
    }
    if (f.group.empty() || f.group.find('/') != std::string::npos) {
      std::cerr << "baton serve: --group: a non-empty name without '/'\n";
      return kExitUsage;
    }
    controller::Member m;
    m.host = advertise_host(f);
    m.port = static_cast<uint16_t>(f.port);  // the bound one once known
    m.role = *server::parse_role(f.role);
    m.group = f.group;
    m.id = f.instance_id;  // empty: host:port once bound
    etcd = std::make_unique<EtcdPresence>(std::move(*target), m, f.etcd_ttl_s);
    if (Status s = etcd->check_reachable(); !s.is_ok()) {
      std::cerr << "baton serve: etcd at " << f.etcd.url << " is not reachable: " << s.message()
                << "\n";
      return kExitFailure;
    }
  }

  server::ServerOptions so;
  so.http.host = f.host;
  so.http.port = static_cast<uint16_t>(f.port);
  so.http.io_threads = f.io_threads;
  so.http.max_body_bytes = static_cast<size_t>(f.max_body_kb) * 1024;
  so.http.max_connections = f.max_connections;
  so.http.max_connections_per_client = f.max_connections_per_client;
  so.http.header_timeout = std::chrono::milliseconds(f.header_timeout_ms);
  so.http.max_header_bytes = static_cast<size_t>(f.max_header_kb) * 1024;
  so.http.max_header_count = static_cast<size_t>(f.max_headers);
  so.served_model_name = f.served_model_name;
  so.admission.max_waiting = f.max_waiting;
  so.admission.max_in_flight = f.max_in_flight;
  so.admission.ttft_budget_s = f.ttft_budget_ms / 1000.0;
  so.max_tokens_limit = f.max_tokens_limit;
  so.pd.role = *server::parse_role(f.role);  // CLI11 checked the name
  so.pd.cluster_token = cluster_token_or_env(f.cluster_token);
  so.pd.kv_host = f.kv_host;
  so.pd.kv_port = static_cast<uint16_t>(f.kv_port);
  so.pd.kv_transport = f.kv_transport;
  so.pd.kv_staging_bytes = static_cast<uint64_t>(f.kv_staging_mb) << 20;
  if (f.kv_transport == "cuda-ipc") {
    // The KV moves between GPU memories: the engine's GPU is the transport's.
    auto gpu = engine::cuda_device_index(f.device);
    if (!gpu.is_ok()) {
      std::cerr << "baton serve: --kv-transport cuda-ipc needs --device cuda or cuda:N\n";
      return kExitFailure;
    }
    so.pd.kv_device = *gpu;
  }
  if (etcd) {
    so.on_role_changed = [presence = etcd.get()](server::Role r) { presence->role_changed(r); };
  }
  auto server = server::InstanceServer::start(so);
  if (!server.is_ok()) {
    std::cerr << "baton serve: " << server.status().message() << "\n";
    return kExitFailure;
  }
  BATON_LOG_INFO("listening on http://{}:{} as {} (loading {})", f.host, (*server)->port(), f.role,
                 f.model);
  if (!(*server)->kv_endpoint().empty()) {
    BATON_LOG_INFO("KV transport on {}", (*server)->kv_endpoint());
  }

  auto model_dir = model::resolve_model_path(f.model_root, f.model);
  if (!model_dir.is_ok()) {
    std::cerr << "baton serve: " << model_dir.status().message() << "\n";
    return kExitFailure;
  }
  engine::EngineConfig ec;
  ec.model = model_dir->string();
  ec.threads = f.threads;
  ec.device = f.device;
  ec.gpu_memory_utilization = f.gpu_memory_utilization;
  ec.block_size = f.block_size;
  ec.kv_cache_bytes = f.kv_cache_mb << 20;
  ec.max_num_seqs = f.max_num_seqs;
  ec.max_num_batched_tokens = f.max_num_batched_tokens;
  ec.max_model_len = f.max_model_len;
  ec.enable_prefix_caching = !f.no_prefix_caching;
  ec.enable_chunked_prefill = !f.no_chunked_prefill;
  ec.seed = f.seed;
  auto engine = engine::Engine::create(ec);
  if (!engine.is_ok()) {
    std::cerr << "baton serve: loading " << f.model << ": " << engine.status().message() << "\n";
    return kExitFailure;
  }
  if (Status s = (*server)->attach_engine(std::move(*engine)); !s.is_ok()) {
    std::cerr << "baton serve: " << s.message() << "\n";
    return kExitFailure;
  }
  if (etcd) {
    // Only now: a registered instance is one the gateway may route to.
    if (Status s = etcd->start((*server)->port()); !s.is_ok()) {
      std::cerr << "baton serve: registering in etcd at " << f.etcd.url << ": " << s.message()
                << "\n";
      (*server)->stop();
      return kExitFailure;
    }
    BATON_LOG_INFO("etcd: registered as {} (lease TTL {} s)", etcd->key(), f.etcd_ttl_s);
  }
  BATON_LOG_INFO("ready: http://{}:{}/v1 (model {})", f.host, (*server)->port(), f.model);
  std::cout
      << "Baton is serving on http://" << f.host << ":" << (*server)->port() << "/v1\n"
      << "Try: curl http://" << f.host << ":" << (*server)->port()
      << "/v1/completions -H 'Content-Type: application/json' "
         "-d '{\"model\": \"<name from /v1/models>\", \"prompt\": \"Hello\", \"max_tokens\": 16}'\n"
      << std::flush;
  int sig = 0;
  sigwait(&signals, &sig);
  BATON_LOG_INFO("signal {}: shutting down", sig);
  // Out of the membership first, so that routers stop sending work at once.
  if (etcd) etcd->stop();
  (*server)->stop();
  return kExitOk;
}

}  // namespace

Run register_serve(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", "Serve one model over the OpenAI API (an instance)");
  auto f = std::make_shared<ServeFlags>();
  cmd->add_option("--model", f->model, "Model directory or dummy:<preset>")->capture_default_str();
  cmd->add_option("--host", f->host, "Address to bind")->capture_default_str();
  cmd->add_option("--port", f->port, "HTTP port (0: any free port)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--served-model-name", f->served_model_name,
                  "Name clients use in `model` (default: the model directory's name)");
  cmd->add_option("--role", f->role, "prefill, decode or mixed")
      ->check(CLI::IsMember({"prefill", "decode", "mixed"}))
      ->capture_default_str();
  cmd->add_option("--cluster-token", f->cluster_token,
                  "Secret for the internal P/D routes (default: $BATON_CLUSTER_TOKEN); required "
                  "for the prefill and decode roles");
  cmd->add_option("--kv-host", f->kv_host, "Address the KV transport binds (decode role)")
      ->capture_default_str();
  cmd->add_option("--kv-port", f->kv_port, "KV transport port (0: any free port)")
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--kv-transport", f->kv_transport,
                  "What moves KV between P/D instances: tcp (host memory), or cuda-ipc (GPU to "
                  "GPU within one host; needs --device cuda[:N] on both sides)")
      ->check(CLI::IsMember({"tcp", "cuda-ipc"}))
      ->capture_default_str();
  cmd->add_option("--kv-staging-mb", f->kv_staging_mb,
                  "cuda-ipc: device staging area for KV transfers in MiB (0: four requests of the "
                  "max model length, at most 2 GiB)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20))
      ->capture_default_str();
  cmd->add_option("--threads", f->threads, "CPU backend threads (0: all cores)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--device", f->device, "cpu, or cuda / cuda:N (GPU 0 / N, bf16)")
      ->check([](const std::string& d) {
        return d == "cpu" || engine::cuda_device_index(d).is_ok() ? std::string()
                                                                  : "must be cpu, cuda or cuda:N";
      })
      ->capture_default_str();
  cmd->add_option("--gpu-memory-utilization", f->gpu_memory_utilization,
                  "cuda: share of GPU memory for weights, workspace and KV cache")
      ->check(CLI::Range(0.05, 1.0))
      ->capture_default_str();
  cmd->add_option("--io-threads", f->io_threads, "HTTP I/O threads")->check(CLI::Range(1, 256));
  cmd->add_option("--max-num-seqs", f->max_num_seqs, "Most sequences in one step")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--max-num-batched-tokens", f->max_num_batched_tokens, "Token budget per step")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--max-model-len", f->max_model_len, "Context length (0: the model's)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--block-size", f->block_size, "Tokens per KV block")->check(CLI::Range(1, 1024));
  cmd->add_option("--kv-cache-mb", f->kv_cache_mb, "KV cache size in MiB")
      ->check(CLI::Range(1, 1 << 24));
  cmd->add_flag("--no-prefix-caching", f->no_prefix_caching, "Disable prefix caching");
  cmd->add_flag("--no-chunked-prefill", f->no_chunked_prefill, "Disable chunked prefill");
  cmd->add_option("--seed", f->seed, "Engine seed (requests without a seed draw from it)");
  cmd->add_option("--ttft-budget-ms", f->ttft_budget_ms,
                  "Reject at once what cannot start within this time (0: no budget)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-waiting", f->max_waiting, "Bound of the queue of requests not started")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--max-in-flight", f->max_in_flight, "Most requests admitted at once")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--max-tokens-limit", f->max_tokens_limit,
                  "Largest max_tokens accepted (0: the context length)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-body-kb", f->max_body_kb, "Largest request body in KiB")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--model-root", f->model_root,
                  "Load --model only from under this directory (\"..\" and links out of it are "
                  "refused; default: no root)");
  cmd->add_option("--max-connections", f->max_connections, "Open HTTP connections; more get 503")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--max-connections-per-client", f->max_connections_per_client,
                  "Open HTTP connections from one address; more get 429 (0: no limit)")
      ->check(CLI::Range(0, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--header-timeout-ms", f->header_timeout_ms,
                  "Time a client has to send its request headers; slower ones get 408")
      ->check(CLI::Range(1, 3600000))
      ->capture_default_str();
  cmd->add_option("--max-header-kb", f->max_header_kb,
                  "Largest request line plus headers in KiB; more get 431")
      ->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  cmd->add_option("--max-headers", f->max_headers, "Most header fields per request; more get 431")
      ->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  cmd->add_option("--log-level", f->log_level, "trace, debug, info, warn, error or off");
  cmd->add_flag("--log-json", f->log_json, "Log JSON lines");
  CLI::Option* etcd = add_etcd_flags(*cmd, f->etcd, "to register this instance with, once ready");
  cmd->add_option("--group", f->group, "Scenario group registered in etcd")
      ->capture_default_str()
      ->needs(etcd);
  cmd->add_option("--advertise-host", f->advertise_host,
                  "Host registered in etcd (default: --host, or this machine's name when --host "
                  "is a wildcard)")
      ->needs(etcd);
  cmd->add_option("--instance-id", f->instance_id,
                  "Id registered in etcd, unique in the cluster (default: host:port)")
      ->needs(etcd);
  cmd->add_option("--etcd-ttl", f->etcd_ttl_s,
                  "Lease TTL in seconds: a crashed instance leaves the membership within it")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str()
      ->needs(etcd);
  return [f] { return run_serve(*f); };
}

}  // namespace baton::cli
