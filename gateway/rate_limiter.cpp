#include "gateway/rate_limiter.h"

#include <algorithm>
#include <cmath>

namespace baton::gateway {

namespace {
std::chrono::seconds wait_for(double missing, double per_minute) {
  const double s = std::ceil(missing * 60.0 / per_minute);
  return std::chrono::seconds(std::max<int64_t>(1, static_cast<int64_t>(s)));
}
}  // namespace

RateDecision RateLimiter::admit(const std::string& key, int64_t rpm, int64_t tpm, int64_t tokens,
                                TimePoint now) {
  if (rpm <= 0 && tpm <= 0) return {};
  std::lock_guard lock(mu_);
  Bucket& b = buckets_[key];
  if (!b.init) {
    b.requests = static_cast<double>(rpm);
    b.tokens = static_cast<double>(tpm);
    b.last = now;
    b.init = true;
  }
  const double minutes = std::chrono::duration<double>(now - b.last).count() / 60.0;
  if (minutes > 0) {
    b.requests = std::min<double>(static_cast<double>(rpm), b.requests + minutes * rpm);
    b.tokens = std::min<double>(static_cast<double>(tpm), b.tokens + minutes * tpm);
    b.last = now;
  }
  if (rpm > 0 && b.requests < 1.0) {
    return {false, "requests_per_minute", wait_for(1.0 - b.requests, static_cast<double>(rpm))};
  }
  // A request larger than a whole minute's budget could never pass; it is let
  // through on a full bucket rather than refused forever.
  const double need = std::min<double>(static_cast<double>(tokens), static_cast<double>(tpm));
  if (tpm > 0 && b.tokens < need) {
    return {false, "tokens_per_minute", wait_for(need - b.tokens, static_cast<double>(tpm))};
  }
  if (rpm > 0) b.requests -= 1.0;
  if (tpm > 0) b.tokens -= static_cast<double>(tokens);
  return {};
}

}  // namespace baton::gateway
