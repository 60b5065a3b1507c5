#include "controller/membership.h"

#include <charconv>
#include <nlohmann/json.hpp>

#include "common/logging.h"

namespace baton::controller {

using Json = nlohmann::json;

std::string member_to_json(const Member& m) {
  Json j = {{"id", m.id},
            {"host", m.host},
            {"port", m.port},
            {"role", std::string(role_name(m.role))},
            {"group", m.group}};
  return j.dump();
}

Result<Member> parse_member_json(std::string_view json) {
  Json j = Json::parse(json, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return invalid_argument("member: not a JSON object");
  Member m;
  auto str = [&](const char* name, std::string& out, bool required) -> Status {
    auto it = j.find(name);
    if (it == j.end()) {
      return required ? invalid_argument(std::string("member.") + name + ": missing")
                      : Status::ok();
    }
    if (!it->is_string()) return invalid_argument(std::string("member.") + name + ": not a string");
    out = it->get<std::string>();
    return Status::ok();
  };
  BATON_RETURN_IF_ERROR(str("id", m.id, true));
  BATON_RETURN_IF_ERROR(str("host", m.host, true));
  BATON_RETURN_IF_ERROR(str("group", m.group, false));
  std::string role = "mixed";
  BATON_RETURN_IF_ERROR(str("role", role, false));
  BATON_ASSIGN_OR_RETURN(m.role, parse_role(role));
  auto port = j.find("port");
  if (port == j.end() || !port->is_number_integer() || port->get<int64_t>() < 1 ||
      port->get<int64_t>() > 65535) {
    return invalid_argument("member.port: expected an integer from 1 to 65535");
  }
  m.port = static_cast<uint16_t>(port->get<int64_t>());
  if (m.id.empty()) return invalid_argument("member.id: empty");
  return m;
}

Result<Member> parse_member_spec(std::string_view spec) {
  Member m;
  bool have_address = false;
  while (!spec.empty()) {
    size_t comma = spec.find(',');
    std::string_view part = spec.substr(0, comma);
    spec = comma == std::string_view::npos ? std::string_view() : spec.substr(comma + 1);
    size_t eq = part.find('=');
    if (eq == std::string_view::npos) {
      return invalid_argument("member '" + std::string(part) + "': expected key=value");
    }
    std::string_view key = part.substr(0, eq), value = part.substr(eq + 1);
    if (key == "id") {
      m.id = std::string(value);
    } else if (key == "group") {
      m.group = std::string(value);
    } else if (key == "role") {
      BATON_ASSIGN_OR_RETURN(m.role, parse_role(value));
    } else if (key == "address") {
      size_t colon = value.rfind(':');
      unsigned port = 0;
      if (colon == std::string_view::npos) return invalid_argument("member address: no port");
      auto [ptr, ec] = std::from_chars(value.data() + colon + 1, value.data() + value.size(), port);
      if (ec != std::errc() || ptr != value.data() + value.size() || port == 0 || port > 65535) {
        return invalid_argument("member address " + std::string(value) + ": bad port");
      }
      m.host = std::string(value.substr(0, colon));
      m.port = static_cast<uint16_t>(port);
      have_address = true;
    } else {
      return invalid_argument("member: unknown key '" + std::string(key) + "'");
    }
  }
  if (!have_address) return invalid_argument("member: address=host:port is required");
  if (m.id.empty()) m.id = m.address();
  if (m.group.empty()) return invalid_argument("member: empty group");
  return m;
}

std::vector<Member> Membership::members() const {
  std::lock_guard lock(mu_);
  std::vector<Member> out;
  out.reserve(members_.size());
  for (const auto& [id, m] : members_) out.push_back(m);
  return out;
}

uint64_t Membership::version() const {
  std::lock_guard lock(mu_);
  return version_;
}

uint64_t Membership::wait_for_change(uint64_t seen, Clock::TimePoint deadline) const {
  std::unique_lock lock(mu_);
  cv_.wait_until(lock, deadline, [&] { return version_ > seen; });
  return version_;
}

void Membership::changed() {
  ++version_;
  cv_.notify_all();
}

void Membership::replace(std::vector<Member> members) {
  std::map<std::string, Member> next;
  for (Member& m : members) {
    std::string id = m.id;
    next[id] = std::move(m);
  }
  std::lock_guard lock(mu_);
  if (next == members_) return;
  members_ = std::move(next);
  changed();
}

void Membership::upsert(const Member& m) {
  std::lock_guard lock(mu_);
  auto it = members_.find(m.id);
  if (it != members_.end() && it->second == m) return;
  members_[m.id] = m;
  changed();
}

void Membership::remove(const std::string& id) {
  std::lock_guard lock(mu_);
  if (members_.erase(id) > 0) changed();
}

Status StaticMembership::set_role(const std::string& id, Role role) {
  std::vector<Member> now = members();
  for (Member& m : now) {
    if (m.id == id) {
      m.role = role;
      upsert(m);
      return Status::ok();
    }
  }
  return not_found("member " + id + ": not in the static list");
}

std::string member_key(std::string_view prefix, const Member& m) {
  return std::string(prefix) + m.group + "/" + m.id;
}

// ---------------------------------------------------------------------------
// EtcdMembership

EtcdMembership::EtcdMembership(EtcdEndpoint endpoint, std::string prefix, EtcdWatchOptions options)
    : endpoint_(std::move(endpoint)), prefix_(std::move(prefix)), options_(options) {}

Result<std::unique_ptr<EtcdMembership>> EtcdMembership::start(EtcdEndpoint endpoint,
                                                              std::string prefix,
                                                              EtcdWatchOptions options) {
  std::unique_ptr<EtcdMembership> m(
      new EtcdMembership(std::move(endpoint), std::move(prefix), options));
  EtcdClient client(m->endpoint_, m->options_.request_timeout);
  BATON_ASSIGN_OR_RETURN(int64_t next, m->list(client));
  m->thread_ = std::thread([raw = m.get(), next] { raw->run(next); });
  return m;
}

EtcdMembership::~EtcdMembership() { stop(); }

void EtcdMembership::stop() {
  {
    std::lock_guard lock(stop_mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Result<int64_t> EtcdMembership::list(EtcdClient& client) {
  BATON_ASSIGN_OR_RETURN(EtcdRange range, client.range_prefix(prefix_));
  std::vector<Member> members;
  for (const EtcdKeyValue& kv : range.kvs) {
    auto m = parse_member_json(kv.value);
    if (!m.is_ok()) {
      BATON_LOG_WARN("membership: skipping etcd key {}: {}", kv.key, m.status().message());
      continue;
    }
    members.push_back(std::move(*m));
  }
  replace(std::move(members));
  return range.revision + 1;
}

void EtcdMembership::run(int64_t next_revision) {
  EtcdClient client(endpoint_, options_.request_timeout);
  // Keys map to ids through the value; a delete carries only the key.
  std::map<std::string, std::string> id_of_key;
  for (const Member& m : members()) id_of_key[member_key(prefix_, m)] = m.id;
  bool need_list = false;
  while (!stop_.load()) {
    if (need_list) {
      auto next = list(client);
      if (next.is_ok()) {
        next_revision = *next;
        id_of_key.clear();
        for (const Member& m : members()) id_of_key[member_key(prefix_, m)] = m.id;
        need_list = false;
      }
    }
    Status failure;
    if (!need_list) {
      auto resumed =
          client.watch_prefix(prefix_, next_revision, protocol::deadline_in(options_.watch_cycle),
                              [&](const std::vector<EtcdWatchEvent>& events) {
                                for (const EtcdWatchEvent& e : events) {
                                  if (e.deleted) {
                                    auto it = id_of_key.find(e.kv.key);
                                    if (it != id_of_key.end()) {
                                      remove(it->second);
                                      id_of_key.erase(it);
                                    }
                                    continue;
                                  }
                                  auto m = parse_member_json(e.kv.value);
                                  if (!m.is_ok()) {
                                    BATON_LOG_WARN("membership: skipping etcd key {}: {}", e.kv.key,
                                                   m.status().message());
                                    continue;
                                  }
                                  auto old = id_of_key.find(e.kv.key);
                                  if (old != id_of_key.end() && old->second != m->id)
                                    remove(old->second);
                                  id_of_key[e.kv.key] = m->id;
                                  upsert(*m);
                                }
                                return !stop_.load();
                              });
      if (resumed.is_ok()) {
        next_revision = *resumed;
        continue;
      }
      failure = resumed.status();
      // A compacted start revision, or any failure that may have lost
      // events: list again before watching.
      need_list = true;
    }
    if (!failure.is_ok()) BATON_LOG_WARN("membership: etcd watch: {}", failure.to_string());
    std::unique_lock lock(stop_mu_);
    stop_cv_.wait_for(lock, options_.retry_after, [&] { return stop_.load(); });
  }
}

// ---------------------------------------------------------------------------
// EtcdRegistration

EtcdRegistration::EtcdRegistration(EtcdEndpoint endpoint, std::string prefix, Member member,
                                   int64_t ttl_s)
    : endpoint_(std::move(endpoint)),
      prefix_(std::move(prefix)),
      ttl_s_(ttl_s),
      member_(std::move(member)) {}

Result<std::unique_ptr<EtcdRegistration>> EtcdRegistration::start(EtcdEndpoint endpoint,
                                                                  std::string prefix, Member member,
                                                                  int64_t ttl_s) {
  if (ttl_s < 1) return invalid_argument("registration: lease TTL must be at least 1 s");
  std::unique_ptr<EtcdRegistration> r(
      new EtcdRegistration(std::move(endpoint), std::move(prefix), std::move(member), ttl_s));
  EtcdClient client(r->endpoint_);
  BATON_RETURN_IF_ERROR(r->register_now(client));
  r->thread_ = std::thread([raw = r.get()] { raw->run(); });
  return r;
}

EtcdRegistration::~EtcdRegistration() { stop(); }

Status EtcdRegistration::register_now(EtcdClient& client) {
  BATON_ASSIGN_OR_RETURN(EtcdLease lease, client.grant_lease(ttl_s_));
  Member m;
  {
    std::lock_guard lock(mu_);
    m = member_;
  }
  auto put = client.put(member_key(prefix_, m), member_to_json(m), lease.id);
  if (!put.is_ok()) {
    (void)client.revoke_lease(lease.id);
    return put.status();
  }
  std::lock_guard lock(mu_);
  lease_id_ = lease.id;
  ttl_s_ = lease.ttl_s > 0 ? lease.ttl_s : ttl_s_;
  last_renewed_ = SteadyClock::instance().now();
  return Status::ok();
}

Status EtcdRegistration::update(Member member) {
  int64_t lease;
  std::string old_key;
  {
    std::lock_guard lock(mu_);
    if (stop_) return unavailable("registration: stopped");
    old_key = member_key(prefix_, member_);
    member_ = member;
    lease = lease_id_;
  }
  EtcdClient client(endpoint_);
  std::string key = member_key(prefix_, member);
  if (key != old_key) BATON_RETURN_IF_ERROR(client.delete_key(old_key));
  return client.put(key, member_to_json(member), lease).status();
}

void EtcdRegistration::run() {
  EtcdClient client(endpoint_);
  std::unique_lock lock(mu_);
  while (!stop_) {
    // Three renewals per TTL: one lost keep-alive never costs the lease.
    auto period = std::chrono::milliseconds(ttl_s_ * 1000 / 3);
    if (cv_.wait_for(lock, period, [&] { return stop_; })) break;
    int64_t lease = lease_id_;
    lock.unlock();
    auto ttl = client.keep_alive(lease);
    Status s = ttl.status();
    if (ttl.status().code() == StatusCode::kNotFound) {
      BATON_LOG_WARN("registration: lease {} lost; registering again", lease);
      s = register_now(client);
    }
    lock.lock();
    if (s.is_ok() && ttl.is_ok()) last_renewed_ = SteadyClock::instance().now();
    if (!s.is_ok()) BATON_LOG_WARN("registration: keep-alive: {}", s.to_string());
  }
}

void EtcdRegistration::end(bool revoke) {
  int64_t lease;
  {
    std::lock_guard lock(mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
    lease = lease_id_;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (revoke && lease != 0) {
    EtcdClient client(endpoint_);
    Status s = client.revoke_lease(lease);
    if (!s.is_ok()) BATON_LOG_WARN("registration: revoking lease {}: {}", lease, s.to_string());
  }
}

void EtcdRegistration::stop() { end(true); }
void EtcdRegistration::abandon() { end(false); }

int64_t EtcdRegistration::lease_id() const {
  std::lock_guard lock(mu_);
  return lease_id_;
}

Clock::TimePoint EtcdRegistration::last_renewed() const {
  std::lock_guard lock(mu_);
  return last_renewed_;
}

}  // namespace baton::controller
