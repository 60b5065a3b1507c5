#pragma once

// Membership: which instances make up the cluster, from a static list or from
// etcd, as a versioned set that watchers can wait on.
//
//   StaticMembership static_members({member_a, member_b});
//   auto etcd = EtcdMembership::start(endpoint, "/baton/instances/");
//   uint64_t v = m.version();
//   std::vector<Member> now = m.members();
//   v = m.wait_for_change(v, deadline);   // returns at a change or the deadline
//
// In etcd each instance is one key, <prefix><group>/<id>, whose value is the
// member's JSON, attached to a lease the instance keeps alive
// (EtcdRegistration). An instance that dies stops its keep-alives, etcd
// expires the lease and deletes the key, and every watcher sees it leave
// within the lease TTL. Graceful stops revoke the lease at once.
//
// Thread-safety: every method of every class here is thread-safe.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "controller/etcd_client.h"
#include "controller/ratio_policy.h"

namespace baton::controller {

// One instance of the cluster.
struct Member {
  std::string id;  // unique in the cluster
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  Role role = Role::kMixed;
  std::string group = "default";  // scenario group

  std::string address() const { return host + ":" + std::to_string(port); }
  bool operator==(const Member&) const = default;
};

// {"id": "p0", "host": "127.0.0.1", "port": 8001, "role": "prefill",
//  "group": "default"}
std::string member_to_json(const Member& m);
// Errors: kInvalidArgument naming the missing or bad field.
Result<Member> parse_member_json(std::string_view json);
// "id=p0,address=127.0.0.1:8001,role=prefill,group=chat" (group and role
// optional; id defaults to the address): the form of a --member flag.
Result<Member> parse_member_spec(std::string_view spec);

class Membership {
 public:
  virtual ~Membership() = default;
  // The members now, sorted by id.
  std::vector<Member> members() const;
  // Increases at every change of the set.
  uint64_t version() const;
  // Blocks until version() > seen or the deadline; returns version().
  uint64_t wait_for_change(uint64_t seen, Clock::TimePoint deadline) const;

 protected:
  // Replaces the set; bumps the version and wakes waiters when it differs.
  void replace(std::vector<Member> members);
  void upsert(const Member& m);
  void remove(const std::string& id);

 private:
  void changed();  // mu_ held

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::map<std::string, Member> members_;
  uint64_t version_ = 0;
};

// A fixed list, changed only through set() and set_role() (e.g. by `baton up`
// when it restarts a child on a new port, or after a role change).
class StaticMembership final : public Membership {
 public:
  explicit StaticMembership(std::vector<Member> members) { replace(std::move(members)); }
  void set(std::vector<Member> members) { replace(std::move(members)); }
  // Records a member's new role; kNotFound for an unknown id.
  Status set_role(const std::string& id, Role role);
};

struct EtcdWatchOptions {
  // A watch is re-opened (from the next revision, so no event is lost) after
  // this long; it bounds how long stop() waits.
  std::chrono::milliseconds watch_cycle{1000};
  std::chrono::milliseconds request_timeout{2000};
  // Wait before retrying after etcd could not be reached.
  std::chrono::milliseconds retry_after{500};
};

// The members registered under `prefix` in etcd, kept current by a watch on
// a thread of its own. Values that are not member JSON are skipped (logged).
class EtcdMembership final : public Membership {
 public:
  // Lists the prefix once (so members() is complete when this returns) and
  // starts the watch. Errors: etcd unreachable or answering nonsense.
  static Result<std::unique_ptr<EtcdMembership>> start(EtcdEndpoint endpoint, std::string prefix,
                                                       EtcdWatchOptions options = {});
  ~EtcdMembership() override;  // stop()
  // Ends the watch thread within about one watch_cycle. Idempotent.
  void stop();

 private:
  EtcdMembership(EtcdEndpoint endpoint, std::string prefix, EtcdWatchOptions options);
  Result<int64_t> list(EtcdClient& client);  // returns the next revision to watch
  void run(int64_t next_revision);

  EtcdEndpoint endpoint_;
  std::string prefix_;
  EtcdWatchOptions options_;
  std::atomic<bool> stop_{false};
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  std::thread thread_;
};

// The etcd key of a member: <prefix><group>/<id>.
std::string member_key(std::string_view prefix, const Member& m);

// An instance's own registration: its key under a lease, kept alive every
// ttl/3 from a thread. If the lease is lost (etcd restarted, a long pause),
// a new one is granted and the key put again.
class EtcdRegistration {
 public:
  // Grants the lease and puts the key before returning. ttl_s >= 1.
  static Result<std::unique_ptr<EtcdRegistration>> start(EtcdEndpoint endpoint, std::string prefix,
                                                         Member member, int64_t ttl_s);
  ~EtcdRegistration();  // stop()

  // Puts the member again with new fields (e.g. its role after a change).
  Status update(Member member);
  // Stops the keep-alives and revokes the lease: the key goes at once.
  void stop();
  // Stops the keep-alives and leaves the lease to expire, as a crashed
  // process would (tests, and a process that wants etcd to decide).
  void abandon();

  int64_t lease_id() const;
  int64_t ttl_s() const { return ttl_s_; }
  // When etcd last confirmed the lease (grant or keep-alive).
  Clock::TimePoint last_renewed() const;

 private:
  EtcdRegistration(EtcdEndpoint endpoint, std::string prefix, Member member, int64_t ttl_s);
  Status register_now(EtcdClient& client);  // grant + put; mu_ not held
  void run();
  void end(bool revoke);

  EtcdEndpoint endpoint_;
  std::string prefix_;
  int64_t ttl_s_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  Member member_;
  int64_t lease_id_ = 0;
  Clock::TimePoint last_renewed_{};
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace baton::controller
