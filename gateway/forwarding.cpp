#include "gateway/forwarding.h"

namespace baton::gateway {

bool may_forward_prefill(const PdConfig& pd, int forwards_done, Clock::TimePoint now,
                         Clock::TimePoint forward_deadline, Clock::TimePoint lease_end) {
  if (forwards_done >= pd.max_prefill_tries) return false;
  return now < forward_deadline && now < lease_end;
}

}  // namespace baton::gateway
