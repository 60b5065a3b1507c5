#pragma once

// Tokenizer of Baton's Jinja interpreter.
//
// Splits a template into text and tag tokens exactly as jinja2's lexer does
// for an environment with trim_blocks=True and lstrip_blocks=True (the
// transformers configuration): line endings are normalised to "\n", one
// trailing newline of the template is dropped, `{%-`/`-%}` strip whitespace,
// `{%+`/`+%}` disable lstrip/trim, `{% raw %}` bodies are kept verbatim and
// comments vanish. Errors carry the 1-based line number.

#include <string>
#include <vector>

#include "common/status.h"

namespace baton::model::jinja {

enum class TokenKind {
  kText,        // literal template text (text holds it, whitespace rules applied)
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,        // identifier or keyword
  kString,      // string literal; text holds the unescaped value
  kInt,         // integer literal; text holds the digits (underscores removed)
  kFloat,       // float literal; text holds it (underscores removed)
  kOp,          // operator or punctuation; text holds it ("==", "(", ...)
  kEnd,         // end of template
};

struct Token {
  TokenKind kind;
  std::string text;
  int line;
};

// The whole template as tokens, ending with one kEnd token.
Result<std::vector<Token>> tokenize(const std::string& source);

}  // namespace baton::model::jinja
