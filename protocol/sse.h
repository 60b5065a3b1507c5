#pragma once

// Server-Sent Events (text/event-stream) framing, as the OpenAI streaming API
// uses it: each event is "data: <json>\n\n" and the stream ends with
// "data: [DONE]\n\n".
//
// Encoding helpers are pure functions. SseParser is a value type that is not
// thread-safe (one reader feeds it).

#include <string>
#include <string_view>
#include <vector>

namespace baton::protocol {

// The terminal event of an OpenAI stream.
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";
// The content type of an SSE response.
inline constexpr std::string_view kSseContentType = "text/event-stream";

// One event "data: <data>\n\n". A `data` holding newlines becomes several
// data lines (a parser joins them back with '\n'); "\r\n" and '\r' count as
// newlines too.
std::string sse_event(std::string_view data);
// An event with an event name: "event: <name>\ndata: <data>\n\n".
std::string sse_event(std::string_view name, std::string_view data);
// A comment line ": <text>\n\n", ignored by parsers; used as a keep-alive.
std::string sse_comment(std::string_view text);

struct SseEvent {
  std::string event;  // the "event:" field; "" when absent ("message")
  std::string data;   // data lines joined with '\n'
  std::string id;     // the "id:" field; "" when absent

  bool is_done() const { return data == "[DONE]"; }
};

// Incremental parser of an event stream per the WHATWG rules: lines end with
// LF, CRLF or CR (also when split across feeds); lines starting with ':' are
// comments; "field: value" drops one space after the colon; a blank line ends
// an event, which is emitted only if it had a data field. Unknown fields and
// "retry" are ignored.
class SseParser {
 public:
  // Appends every event completed by `bytes` to `out`.
  void feed(std::string_view bytes, std::vector<SseEvent>& out);
  // Convenience: the events completed by `bytes`.
  std::vector<SseEvent> feed(std::string_view bytes);

  // Bytes held for an incomplete line (bounded by the longest line seen).
  size_t pending_bytes() const { return line_.size(); }

 private:
  void on_line(std::string_view line, std::vector<SseEvent>& out);

  std::string line_;      // the current, incomplete line
  bool skip_lf_ = false;  // the previous feed ended with '\r'
  SseEvent current_;
  bool has_data_ = false;
};

}  // namespace baton::protocol
