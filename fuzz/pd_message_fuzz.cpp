// Fuzz target: the messages instances exchange on the P/D path
// (protocol/pd.h) and the KV transfer frame header (kvtransfer/wire.h).
// The first byte picks the parser, the rest is the message. Checked: no
// crash or UB, and round trips: a message that parses is written back by
// to_json() into JSON that parses to the same message; a frame header that
// decodes encodes to the same 32 bytes; numbers are never wrapped; the incremental checksum does
// not depend on how the bytes are split.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "kvtransfer/wire.h"
#include "protocol/openai_request.h"
#include "protocol/pd.h"

namespace {

using namespace baton::protocol;
namespace wire = baton::kvtransfer::wire;

void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "pd_message_fuzz: %s\n", what);
  std::abort();
}

template <typename Parse>
void round_trip(const pd::Json& j, Parse parse) {
  auto first = parse(j);
  if (!first.is_ok()) return;
  pd::Json written = pd::to_json(first.value());
  auto second = parse(written);
  require(second.is_ok(), "to_json() wrote a message its parser refuses");
  require(pd::to_json(second.value()) == written, "a message changed through to_json/parse");
}

// Numbers are taken as sent or refused, never wrapped into range.
void check_first_tokens(const pd::Json& j) {
  auto m = pd::parse_first_tokens(j);
  if (!m.is_ok() || !j.contains("tokens") || !j["tokens"].is_array()) return;
  const auto& sent = j["tokens"];
  require(sent.size() == m.value().tokens.size(), "first_tokens: token count");
  for (size_t i = 0; i < sent.size(); ++i) {
    const auto& t = m.value().tokens[i];
    if (sent[i].contains("token"))
      require(sent[i]["token"] == t.token, "first_tokens: token changed");
    if (!sent[i].contains("top_logprobs") || sent[i]["top_logprobs"].is_null()) continue;
    const auto& top = sent[i]["top_logprobs"];
    require(top.size() == t.top_logprobs.size(), "first_tokens: top_logprobs count");
    for (size_t k = 0; k < top.size(); ++k) {
      require(top[k][0] == t.top_logprobs[k].first, "first_tokens: top_logprobs id changed");
    }
  }
}

void fuzz_wire(const uint8_t* data, size_t size) {
  if (size >= wire::kHeaderBytes) {
    if (auto h = wire::decode_header(data)) {
      uint8_t out[wire::kHeaderBytes];
      wire::encode_header(*h, out);
      require(std::memcmp(out, data, wire::kHeaderBytes) == 0, "a frame header changed");
    }
  }
  size_t split = size == 0 ? 0 : data[0] % (size + 1);
  wire::Checksum64 sum;
  sum.update(data, split);
  sum.update(data + split, size - split);
  require(sum.finish() == wire::checksum64(data, size), "checksum depends on the split");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t selector = data[0];
  ++data;
  --size;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  switch (selector % 9) {
    case 0:
      fuzz_wire(data, size);
      return 0;
    case 1:
      (void)pd::parse_error_event(text);
      return 0;
    default:
      break;
  }
  auto parsed = parse_json_object(text);
  if (!parsed.is_ok()) return 0;
  const pd::Json& j = parsed.value();
  switch (selector % 9) {
    case 2:
      round_trip(j, [](const pd::Json& x) { return pd::parse_kv_shape(x); });
      break;
    case 3:
      round_trip(j, [](const pd::Json& x) { return pd::parse_decode_request(x); });
      break;
    case 4:
      round_trip(j, [](const pd::Json& x) { return pd::parse_ticket(x); });
      break;
    case 5:
      round_trip(j, [](const pd::Json& x) { return pd::parse_prefill_request(x); });
      break;
    case 6:
      round_trip(j, [](const pd::Json& x) { return pd::parse_first_tokens(x); });
      check_first_tokens(j);
      break;
    case 7:
      round_trip(j, [](const pd::Json& x) { return pd::parse_prefill_done(x); });
      break;
    case 8:
      round_trip(j, [](const pd::Json& x) { return pd::parse_abort_request(x); });
      break;
  }
  return 0;
}
