#pragma once

// Baton's Jinja interpreter: a parsed template and its renderer.
//
// Renders the way jinja2's ImmutableSandboxedEnvironment(trim_blocks=True,
// lstrip_blocks=True, extensions=[loopcontrols]) does with transformers'
// additions (a json.dumps-based tojson filter, raise_exception(msg),
// strftime_now(fmt), generation blocks). HTML autoescape is off.
//
// Hostile templates cannot crash or hang a render: evaluation steps, output
// size and macro recursion are bounded by RenderLimits, and every failure is
// a Status whose message names the template line ("line 3: ..."). A Template
// is immutable after parse() and may be rendered from several threads at
// once; each render has its own state.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/status.h"
#include "model/jinja_ast.h"
#include "model/jinja_value.h"

namespace baton::model::jinja {

struct RenderLimits {
  size_t max_output_bytes = 32u << 20;  // also caps every string built
  int64_t max_steps = 20'000'000;       // expression and statement evaluations
  int max_call_depth = 100;             // nested macro calls
};

struct RenderOptions {
  // The clock read by strftime_now(); the system clock when unset. Times are
  // formatted in the process's local time zone, as Python's datetime.now().
  std::optional<std::chrono::system_clock::time_point> now;
  RenderLimits limits;
};

class Template {
 public:
  // Parses the source; syntax errors and unknown filters or tests are
  // kUnprocessable Statuses naming the line.
  static Result<Template> parse(const std::string& source);

  // Renders with `context` (a dict) as the template's variables. Errors from
  // raise_exception() are kInvalidArgument and carry its message verbatim
  // after the line prefix; limit breaches are kResourceExhausted.
  Result<std::string> render(const Value& context, const RenderOptions& options = {}) const;

 private:
  std::shared_ptr<const NodeList> root_;
};

}  // namespace baton::model::jinja
