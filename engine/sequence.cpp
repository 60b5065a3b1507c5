#include "engine/sequence.h"

#include "common/status.h"

namespace baton::engine {
namespace {

uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

}  // namespace

std::string_view seq_status_name(SeqStatus s) {
  switch (s) {
    case SeqStatus::kWaiting:
      return "waiting";
    case SeqStatus::kRunning:
      return "running";
    case SeqStatus::kPreempted:
      return "preempted";
    case SeqStatus::kPendingFork:
      return "pending_fork";
    case SeqStatus::kAwaitingKv:
      return "awaiting_kv";
    case SeqStatus::kFinished:
      return "finished";
  }
  return "unknown";
}

std::string_view finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kNone:
      return "none";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAbort:
      return "abort";
    case FinishReason::kPrefillDone:
      return "prefill_done";
  }
  return "unknown";
}

// Mixing the index in before the seed keeps sibling streams unrelated even for
// adjacent request seeds.
SeqRng::SeqRng(uint64_t request_seed, int32_t seq_index)
    : state_(mix64(request_seed ^ mix64(static_cast<uint64_t>(seq_index) + kGolden))) {}

uint64_t SeqRng::next_u64() {
  state_ += kGolden;
  return mix64(state_);
}

double SeqRng::next_unit() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

int32_t Sequence::token_at(int32_t pos) const {
  const auto np = static_cast<int32_t>(prompt.size());
  BATON_CHECK(pos >= 0 && pos < num_tokens());
  return pos < np ? prompt[static_cast<size_t>(pos)] : output[static_cast<size_t>(pos - np)];
}

std::vector<int32_t> Sequence::tokens(int32_t begin, int32_t count) const {
  std::vector<int32_t> out;
  out.reserve(static_cast<size_t>(count));
  for (int32_t p = begin; p < begin + count; ++p) out.push_back(token_at(p));
  return out;
}

}  // namespace baton::engine
