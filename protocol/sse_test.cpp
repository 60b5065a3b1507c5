#include "protocol/sse.h"

#include <gtest/gtest.h>

namespace baton::protocol {
namespace {

TEST(SseTest, EventAndDoneFraming) {
  EXPECT_EQ(sse_event(R"({"a":1})"), "data: {\"a\":1}\n\n");
  EXPECT_EQ(kSseDone, "data: [DONE]\n\n");
  EXPECT_EQ(sse_event("x", "y"), "event: x\ndata: y\n\n");
  EXPECT_EQ(sse_comment("ping"), ": ping\n\n");
}

TEST(SseTest, MultiLineDataRoundTrips) {
  std::string framed = sse_event("one\ntwo\r\nthree");
  EXPECT_EQ(framed, "data: one\ndata: two\ndata: three\n\n");
  SseParser parser;
  auto events = parser.feed(framed);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, "one\ntwo\nthree");
}

TEST(SseTest, ParsesByteByByteWithCrlfAndComments) {
  std::string stream =
      ": keep-alive\r\n\r\n"
      "event: delta\r\nid: 7\r\ndata: {\"i\":1}\r\n\r\n"
      "data:no-space\r\r"
      "data: [DONE]\n\n";
  SseParser parser;
  std::vector<SseEvent> events;
  for (char c : stream) parser.feed(std::string_view(&c, 1), events);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].event, "delta");
  EXPECT_EQ(events[0].id, "7");
  EXPECT_EQ(events[0].data, "{\"i\":1}");
  EXPECT_EQ(events[1].data, "no-space");
  EXPECT_EQ(events[1].event, "");
  EXPECT_TRUE(events[2].is_done());
  EXPECT_EQ(parser.pending_bytes(), 0u);
}

TEST(SseTest, CrLfSplitAcrossFeedsIsOneLineEnd) {
  SseParser parser;
  EXPECT_TRUE(parser.feed("data: a\r").empty());
  // The '\n' completing "\r\n" must not count as the blank line ending the event.
  EXPECT_TRUE(parser.feed("\n").empty());
  auto events = parser.feed("\r\n");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, "a");
}

TEST(SseTest, IncompleteEventIsHeldAndBlankEventsAreSkipped) {
  SseParser parser;
  EXPECT_TRUE(parser.feed("\n\nevent: x\n\n").empty());  // no data: nothing dispatched
  EXPECT_TRUE(parser.feed("data: par").empty());
  EXPECT_EQ(parser.pending_bytes(), 9u);
  auto events = parser.feed("tial\n\n");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, "partial");
  EXPECT_EQ(events[0].event, "");  // the data-less event's name did not leak
}

}  // namespace
}  // namespace baton::protocol
