#pragma once

// Parser of Baton's Jinja interpreter: template source to syntax tree.
//
// Accepts the jinja2 subset chat templates use: text, {{ }}, comments, if /
// elif / else, for (targets, inline if, else), set (names, tuples, namespace
// attributes, block form), macro, call blocks, filter blocks, with, break and
// continue (loopcontrols), raw, and transformers' generation blocks.
// Expression grammar and operator precedence follow jinja2. Errors are
// kUnprocessable Statuses naming the line. Nesting is bounded (kMaxNesting) so
// hostile input cannot exhaust the stack.

#include <string>

#include "common/status.h"
#include "model/jinja_ast.h"

namespace baton::model::jinja {

inline constexpr int kMaxNesting = 200;

Result<NodeList> parse_template(const std::string& source);

}  // namespace baton::model::jinja
