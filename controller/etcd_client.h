#pragma once

// EtcdClient: the few etcd v3 calls membership needs, over etcd's HTTP/JSON
// gateway (POST /v3/<service>/<call> with JSON bodies; keys and values are
// base64 in JSON, 64-bit integers are decimal strings).
//
//   EtcdClient etcd(endpoint);
//   auto lease = etcd.grant_lease(10);                  // seconds
//   etcd.put("/baton/instances/default/p0", json, lease->id);
//   etcd.keep_alive(lease->id);                         // every few seconds
//   etcd.watch_prefix("/baton/instances/", rev + 1, deadline, on_events);
//
// Every call takes or derives a deadline (the constructor's request timeout,
// or the explicit deadline of watch_prefix) and never blocks past it.
// Not thread-safe: one object per thread (each keeps one connection).
//
// Errors: kUnavailable/kDeadlineExceeded when etcd cannot be reached in time,
// kBadGateway for an answer that is not what the API promises, kNotFound for
// a lease that expired or never existed, kConflict "compacted" when a watch
// starts at a revision etcd no longer keeps (re-list, then watch again).

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "protocol/http_client.h"

namespace baton::controller {

// RFC 4648 base64 with padding, as etcd's JSON gateway uses it.
std::string base64_encode(std::string_view bytes);
// Errors: kInvalidArgument for characters outside the alphabet or bad padding.
Result<std::string> base64_decode(std::string_view text);

// The end of the key range that holds every key starting with `prefix`
// (etcd's range_end convention: the prefix with its last byte incremented).
std::string prefix_range_end(std::string_view prefix);

struct EtcdEndpoint {
  std::string host = "127.0.0.1";
  uint16_t port = 2379;
};
// "http://host:port", "host:port" or "host" (port 2379). Errors: bad port,
// https (the gateway client speaks plain HTTP only).
Result<EtcdEndpoint> parse_etcd_endpoint(std::string_view url);

struct EtcdLease {
  int64_t id = 0;
  int64_t ttl_s = 0;  // as granted (etcd may raise a TTL below its minimum)
};

struct EtcdKeyValue {
  std::string key;
  std::string value;
  int64_t mod_revision = 0;
  int64_t lease = 0;
};

struct EtcdRange {
  std::vector<EtcdKeyValue> kvs;
  int64_t revision = 0;  // the store revision the range was read at
};

struct EtcdWatchEvent {
  bool deleted = false;  // DELETE (or lease expiry); otherwise PUT
  EtcdKeyValue kv;       // for a delete, only key and mod_revision
};

// Receives each batch of events of a watch; return false to end the watch.
using EtcdWatchCallback = std::function<bool(const std::vector<EtcdWatchEvent>&)>;

class EtcdClient {
 public:
  explicit EtcdClient(EtcdEndpoint endpoint,
                      std::chrono::milliseconds request_timeout = std::chrono::seconds(2));
  ~EtcdClient();
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  Result<EtcdLease> grant_lease(int64_t ttl_s);
  // Refreshes the lease; returns its TTL again. kNotFound once it expired.
  Result<int64_t> keep_alive(int64_t lease_id);
  // Ends the lease now, deleting its keys. Revoking an unknown lease is ok.
  Status revoke_lease(int64_t lease_id);

  // Puts key=value, attached to lease_id when non-zero. Returns the revision.
  Result<int64_t> put(std::string_view key, std::string_view value, int64_t lease_id = 0);
  Status delete_key(std::string_view key);
  // Every key starting with prefix, in key order.
  Result<EtcdRange> range_prefix(std::string_view prefix);

  // Watches every key starting with prefix from start_revision on, calling
  // on_events for each batch, until `deadline` passes (then returns ok), the
  // callback returns false (ok), or an error. Returns the revision to resume
  // from: one past the last revision delivered, or start_revision when none.
  Result<int64_t> watch_prefix(std::string_view prefix, int64_t start_revision,
                               protocol::HttpDeadline deadline, const EtcdWatchCallback& on_events);

  const EtcdEndpoint& endpoint() const { return endpoint_; }

 private:
  Result<std::string> call(std::string_view path, const std::string& body);

  EtcdEndpoint endpoint_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<protocol::HttpClient> http_;
};

}  // namespace baton::controller
