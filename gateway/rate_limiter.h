#pragma once

// RateLimiter: per-API-key limits on requests per minute and tokens per
// minute, as token buckets that refill continuously (a full minute's worth
// at most, so a quiet key may burst one minute of budget at once).
//
// Tokens are the gateway's estimate at admission (prompt characters / 4 plus
// max_tokens), charged up front: the gateway does not parse every streamed
// reply to count exactly. Time comes in as an argument. Thread-safe.

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace baton::gateway {

struct RateDecision {
  bool allowed = true;
  const char* reason = "";              // "requests_per_minute" or "tokens_per_minute"
  std::chrono::seconds retry_after{0};  // when refused: until enough budget refills
};

class RateLimiter {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // Checks and, when allowed, charges one request of `tokens` to `key`
  // limited to `rpm` requests and `tpm` tokens per minute (0: unlimited).
  RateDecision admit(const std::string& key, int64_t rpm, int64_t tpm, int64_t tokens,
                     TimePoint now);

 private:
  struct Bucket {
    double requests = 0;
    double tokens = 0;
    TimePoint last{};
    bool init = false;
  };
  std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace baton::gateway
