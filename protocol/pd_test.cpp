// The P/D messages: what one side writes the other reads back unchanged, and
// malformed messages are refused naming the field.

#include "protocol/pd.h"

#include <gtest/gtest.h>

namespace baton::protocol::pd {
namespace {

Ticket sample_ticket() {
  Ticket t;
  t.kv_endpoint = "127.0.0.1:4000";
  t.kv_shape = {32, 8, 128, 2};
  t.lease_ms = 15000;
  t.entries.push_back({0xFFFFFFFFFFFFFFF1ull, {1, 2, 3, 4}, 2, 77});
  return t;
}

TEST(PdMessages, EveryMessageRoundTrips) {
  const Json body = {{"model", "m"}, {"prompt", "hi"}};
  auto dr = parse_decode_request(to_json(DecodeRequest{Api::kChatCompletions, body, 1234}));
  ASSERT_TRUE(dr.is_ok()) << dr.status().to_string();
  EXPECT_EQ(dr->api, Api::kChatCompletions);
  EXPECT_EQ(dr->body, body);
  EXPECT_EQ(dr->lease_ms, 1234);

  auto pr = parse_prefill_request(
      to_json(PrefillRequest{Api::kCompletions, body, sample_ticket(), "10.0.0.2:8001"}));
  ASSERT_TRUE(pr.is_ok()) << pr.status().to_string();
  EXPECT_EQ(pr->decode_address, "10.0.0.2:8001");
  EXPECT_EQ(pr->ticket.kv_shape, (KvShape{32, 8, 128, 2}));
  ASSERT_EQ(pr->ticket.entries.size(), 1u);
  EXPECT_EQ(pr->ticket.entries[0].transfer_id, 0xFFFFFFFFFFFFFFF1ull);  // full 64 bits
  EXPECT_EQ(pr->ticket.entries[0].prompt_token_ids, (std::vector<int32_t>{1, 2, 3, 4}));
  EXPECT_EQ(pr->ticket.entries[0].cached_tokens, 2);
  EXPECT_EQ(pr->ticket.entries[0].seed, 77u);

  FirstTokens ft;
  ft.transfer_id = 9;
  ft.tokens.push_back({0, 1, 42, -0.5f, {{42, -0.5f}, {7, -1.25f}}, ""});
  ft.tokens.push_back({0, 0, 5, -2.0f, {}, "length"});
  ft.kv_follows = true;
  ft.queue_s = 0.25;
  ft.prefill_s = 1.5;
  auto back = parse_first_tokens(to_json(ft));
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  ASSERT_EQ(back->tokens.size(), 2u);
  EXPECT_EQ(back->tokens[0].seq_index, 1);
  EXPECT_EQ(back->tokens[0].top_logprobs.size(), 2u);
  EXPECT_FLOAT_EQ(back->tokens[0].top_logprobs[1].second, -1.25f);
  EXPECT_EQ(back->tokens[1].finish_reason, "length");
  EXPECT_DOUBLE_EQ(back->prefill_s, 1.5);

  auto done = parse_prefill_done(to_json(PrefillDone{1 << 20, 0.125}));
  ASSERT_TRUE(done.is_ok());
  EXPECT_EQ(done->kv_bytes, 1u << 20);
  auto ab = parse_abort_request(to_json(AbortRequest{3, "client left"}));
  ASSERT_TRUE(ab.is_ok());
  EXPECT_EQ(ab->reason, "client left");
}

TEST(PdMessages, MalformedMessagesNameTheField) {
  Json t = to_json(sample_ticket());
  t["entries"][0]["cached_tokens"] = 4;  // the whole prompt: nothing left to send
  auto r = parse_ticket(t);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("ticket.entries[0].cached_tokens"), std::string::npos)
      << r.status().message();

  Json d = to_json(DecodeRequest{Api::kCompletions, Json::object(), 10});
  d["api"] = "embeddings";
  EXPECT_NE(parse_decode_request(d).status().message().find("api"), std::string::npos);
  d["api"] = "completions";
  d["body"] = "text";
  EXPECT_NE(parse_decode_request(d).status().message().find("body"), std::string::npos);

  Json f = to_json(FirstTokens{});
  f["tokens"] =
      Json::array({{{"prompt_index", 0}, {"seq_index", 0}, {"token", -3}, {"logprob", 0}}});
  EXPECT_NE(parse_first_tokens(f).status().message().find("tokens[0].token"), std::string::npos);
  // Top-logprob ids are token ids too: out of range is refused, not wrapped.
  for (Json id : {Json(-1), Json(int64_t{1} << 32), Json(uint64_t{1} << 63)}) {
    f["tokens"] = Json::array({{{"prompt_index", 0},
                                {"seq_index", 0},
                                {"token", 1},
                                {"logprob", 0},
                                {"top_logprobs", Json::array({Json::array({id, -0.5})})}}});
    EXPECT_NE(parse_first_tokens(f).status().message().find("top_logprobs"), std::string::npos)
        << id;
  }
  EXPECT_EQ(parse_abort_request(Json::array()).status().code(), StatusCode::kInvalidArgument);
}

TEST(PdMessages, ErrorEventsCarryTheirStatus) {
  Status s = parse_error_event(error_event_data(Status(StatusCode::kDeadlineExceeded, "late")));
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(s.message(), "late");
  EXPECT_EQ(parse_error_event("not json").code(), StatusCode::kBadGateway);
}

}  // namespace
}  // namespace baton::protocol::pd
