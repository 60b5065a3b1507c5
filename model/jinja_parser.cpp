#include "model/jinja_parser.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <initializer_list>

#include "model/jinja_lexer.h"

namespace baton::model::jinja {

namespace {

// Expression trees deeper than this are refused: evaluating and destroying
// them recurses once per level.
constexpr int kMaxExprDepth = 400;

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  Result<NodeList> run() {
    std::string end;
    BATON_ASSIGN_OR_RETURN(NodeList body, parse_body({}, &end));
    return body;
  }

 private:
  const Token& cur() const { return tokens_[pos_]; }
  const Token& peek(size_t k = 1) const { return tokens_[std::min(pos_ + k, tokens_.size() - 1)]; }
  void advance() {
    if (pos_ + 1 < tokens_.size()) ++pos_;
  }
  bool is_op(const char* op) const { return cur().kind == TokenKind::kOp && cur().text == op; }
  bool is_name(const char* name) const {
    return cur().kind == TokenKind::kName && cur().text == name;
  }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    advance();
    return true;
  }
  bool skip_name(const char* name) {
    if (!is_name(name)) return false;
    advance();
    return true;
  }

  Status error(const std::string& msg) const {
    return data_error("template syntax error at line " + std::to_string(cur().line) + ": " + msg);
  }
  std::string describe(const Token& t) const {
    switch (t.kind) {
      case TokenKind::kEnd:
        return "end of template";
      case TokenKind::kBlockEnd:
        return "'%}'";
      case TokenKind::kVarEnd:
        return "'}}'";
      case TokenKind::kString:
        return "string";
      default:
        return "'" + t.text + "'";
    }
  }
  Status expect_op(const char* op) {
    if (skip_op(op)) return Status::ok();
    return error(std::string("expected '") + op + "', got " + describe(cur()));
  }
  Status expect_block_end() {
    if (cur().kind == TokenKind::kBlockEnd) {
      advance();
      return Status::ok();
    }
    return error("expected end of statement block, got " + describe(cur()));
  }
  Result<std::string> expect_name() {
    if (cur().kind != TokenKind::kName) return error("expected a name, got " + describe(cur()));
    std::string n = cur().text;
    advance();
    return n;
  }

  ExprPtr make(ExprKind kind, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = line;
    return e;
  }

  // Computes the subtree height from the children and refuses runaway depth.
  Result<ExprPtr> finish(ExprPtr e) {
    int d = 0;
    auto see = [&d](const ExprPtr& c) {
      if (c) d = std::max(d, c->depth);
    };
    see(e->operand);
    see(e->rhs);
    see(e->otherwise);
    for (const auto& c : e->items) see(c);
    for (const auto& a : e->args) see(a.value);
    e->depth = d + 1;
    if (e->depth > kMaxExprDepth) return error("expression nested too deeply");
    return e;
  }

  struct DepthGuard {
    int* depth;
    explicit DepthGuard(int* d) : depth(d) { ++*depth; }
    ~DepthGuard() { --*depth; }
  };

  // ---- statements ----

  Result<NodeList> parse_body(std::initializer_list<const char*> ends, std::string* found) {
    NodeList out;
    while (true) {
      const Token& t = cur();
      switch (t.kind) {
        case TokenKind::kText: {
          auto n = std::make_unique<Node>();
          n->kind = NodeKind::kText;
          n->line = t.line;
          n->text = t.text;
          out.push_back(std::move(n));
          advance();
          break;
        }
        case TokenKind::kVarBegin: {
          int line = t.line;
          advance();
          BATON_ASSIGN_OR_RETURN(ExprPtr e, parse_tuple(true, false));
          if (cur().kind != TokenKind::kVarEnd) {
            return error("expected end of print statement, got " + describe(cur()));
          }
          advance();
          auto n = std::make_unique<Node>();
          n->kind = NodeKind::kOutput;
          n->line = line;
          n->expr = std::move(e);
          out.push_back(std::move(n));
          break;
        }
        case TokenKind::kBlockBegin: {
          const Token& name = peek();
          if (name.kind == TokenKind::kName) {
            for (const char* e : ends) {
              if (name.text == e) {
                *found = e;
                advance();
                advance();
                return out;
              }
            }
          }
          BATON_ASSIGN_OR_RETURN(NodePtr n, parse_statement());
          out.push_back(std::move(n));
          break;
        }
        case TokenKind::kEnd:
          if (ends.size() > 0) {
            std::string names;
            for (const char* e : ends)
              names += std::string(names.empty() ? "'" : " or '") + e + "'";
            return error("unexpected end of template, expected " + names);
          }
          return out;
        default:
          return error("unexpected " + describe(t));
      }
    }
  }

  Result<NodePtr> parse_statement() {
    DepthGuard guard(&nesting_);
    if (nesting_ > kMaxNesting) return error("blocks nested too deeply");
    advance();  // {%
    if (cur().kind != TokenKind::kName) return error("expected a statement name");
    auto n = std::make_unique<Node>();
    n->line = cur().line;
    std::string tag = cur().text;
    advance();
    std::string end;
    if (tag == "if") {
      n->kind = NodeKind::kIf;
      while (true) {
        BATON_ASSIGN_OR_RETURN(ExprPtr cond, parse_tuple(true, false));
        BATON_RETURN_IF_ERROR(expect_block_end());
        BATON_ASSIGN_OR_RETURN(NodeList body, parse_body({"elif", "else", "endif"}, &end));
        n->conditions.push_back(std::move(cond));
        n->bodies.push_back(std::move(body));
        if (end == "elif") continue;
        if (end == "else") {
          BATON_RETURN_IF_ERROR(expect_block_end());
          BATON_ASSIGN_OR_RETURN(n->else_body, parse_body({"endif"}, &end));
        }
        break;
      }
    } else if (tag == "for") {
      n->kind = NodeKind::kFor;
      BATON_ASSIGN_OR_RETURN(n->targets, parse_targets());
      if (!skip_name("in")) return error("expected 'in' in for loop");
      BATON_ASSIGN_OR_RETURN(n->expr, parse_tuple(false, false));
      if (skip_name("if")) {
        BATON_ASSIGN_OR_RETURN(n->filter, parse_expression(true));
      }
      if (is_name("recursive")) return error("recursive for loops are not supported");
      BATON_RETURN_IF_ERROR(expect_block_end());
      ++loop_depth_;
      auto body = parse_body({"else", "endfor"}, &end);
      --loop_depth_;
      if (!body.is_ok()) return body.status();
      n->body = std::move(body).value();
      if (end == "else") {
        BATON_RETURN_IF_ERROR(expect_block_end());
        BATON_ASSIGN_OR_RETURN(n->else_body, parse_body({"endfor"}, &end));
      }
    } else if (tag == "set") {
      BATON_ASSIGN_OR_RETURN(n->targets, parse_targets());
      if (n->targets.size() == 1 && skip_op(".")) {
        BATON_ASSIGN_OR_RETURN(n->text, expect_name());  // set ns.attr = ...
      }
      if (skip_op("=")) {
        n->kind = NodeKind::kSet;
        BATON_ASSIGN_OR_RETURN(n->expr, parse_tuple(true, false));
      } else {
        if (n->targets.size() != 1 || !n->text.empty()) return error("expected '='");
        n->kind = NodeKind::kSetBlock;
        while (skip_op("|")) {
          BATON_ASSIGN_OR_RETURN(ExprPtr f, parse_filter_call(nullptr));
          n->filters.push_back(std::move(f));
        }
        BATON_RETURN_IF_ERROR(expect_block_end());
        BATON_ASSIGN_OR_RETURN(n->body, parse_body({"endset"}, &end));
      }
    } else if (tag == "macro") {
      n->kind = NodeKind::kMacro;
      BATON_ASSIGN_OR_RETURN(n->text, expect_name());
      BATON_RETURN_IF_ERROR(parse_params(n->params));
      BATON_RETURN_IF_ERROR(expect_block_end());
      int saved = loop_depth_;
      loop_depth_ = 0;
      auto body = parse_body({"endmacro"}, &end);
      loop_depth_ = saved;
      if (!body.is_ok()) return body.status();
      n->body = std::move(body).value();
    } else if (tag == "call") {
      n->kind = NodeKind::kCallBlock;
      if (is_op("(")) BATON_RETURN_IF_ERROR(parse_params(n->params));
      BATON_ASSIGN_OR_RETURN(n->expr, parse_expression(true));
      if (n->expr->kind != ExprKind::kCall) return error("expected a call in call block");
      BATON_RETURN_IF_ERROR(expect_block_end());
      BATON_ASSIGN_OR_RETURN(n->body, parse_body({"endcall"}, &end));
    } else if (tag == "filter") {
      n->kind = NodeKind::kFilterBlock;
      do {
        BATON_ASSIGN_OR_RETURN(ExprPtr f, parse_filter_call(nullptr));
        n->filters.push_back(std::move(f));
      } while (skip_op("|"));
      BATON_RETURN_IF_ERROR(expect_block_end());
      BATON_ASSIGN_OR_RETURN(n->body, parse_body({"endfilter"}, &end));
    } else if (tag == "with") {
      n->kind = NodeKind::kWith;
      while (cur().kind != TokenKind::kBlockEnd) {
        if (!n->params.empty()) BATON_RETURN_IF_ERROR(expect_op(","));
        Param p;
        BATON_ASSIGN_OR_RETURN(p.name, expect_name());
        BATON_RETURN_IF_ERROR(expect_op("="));
        BATON_ASSIGN_OR_RETURN(p.default_value, parse_expression(true));
        n->params.push_back(std::move(p));
      }
      BATON_RETURN_IF_ERROR(expect_block_end());
      BATON_ASSIGN_OR_RETURN(n->body, parse_body({"endwith"}, &end));
    } else if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) return error("'" + tag + "' outside of a loop");
      n->kind = tag == "break" ? NodeKind::kBreak : NodeKind::kContinue;
    } else if (tag == "generation") {
      n->kind = NodeKind::kScopeless;
      BATON_RETURN_IF_ERROR(expect_block_end());
      BATON_ASSIGN_OR_RETURN(n->body, parse_body({"endgeneration"}, &end));
    } else {
      --pos_;
      return error("Encountered unknown tag '" + tag + "'");
    }
    BATON_RETURN_IF_ERROR(expect_block_end());
    return n;
  }

  // `a` or `a, b` or `(a, b)`: names assigned by for and set.
  Result<std::vector<std::string>> parse_targets() {
    std::vector<std::string> names;
    bool paren = skip_op("(");
    do {
      if (paren && is_op(")")) break;
      BATON_ASSIGN_OR_RETURN(std::string n, expect_name());
      names.push_back(std::move(n));
    } while (skip_op(","));
    if (paren) BATON_RETURN_IF_ERROR(expect_op(")"));
    return names;
  }

  Status parse_params(std::vector<Param>& params) {
    BATON_RETURN_IF_ERROR(expect_op("("));
    while (!is_op(")")) {
      if (!params.empty()) BATON_RETURN_IF_ERROR(expect_op(","));
      if (is_op(")")) break;
      Param p;
      BATON_ASSIGN_OR_RETURN(p.name, expect_name());
      if (skip_op("=")) {
        BATON_ASSIGN_OR_RETURN(p.default_value, parse_expression(true));
      } else if (!params.empty() && params.back().default_value) {
        return error("non-default argument follows default argument");
      }
      params.push_back(std::move(p));
    }
    advance();
    return Status::ok();
  }

  // ---- expressions ----

  Result<ExprPtr> parse_expression(bool with_condexpr) {
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  // Comma-separated expressions; a tuple when a comma appears or the
  // parentheses are explicit and empty.
  Result<ExprPtr> parse_tuple(bool with_condexpr, bool explicit_parens) {
    int line = cur().line;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty() && !skip_op(",")) break;
      if (!items.empty()) is_tuple = true;
      if (cur().kind == TokenKind::kVarEnd || cur().kind == TokenKind::kBlockEnd ||
          cur().kind == TokenKind::kEnd || is_op(")")) {
        break;
      }
      BATON_ASSIGN_OR_RETURN(ExprPtr e, parse_expression(with_condexpr));
      items.push_back(std::move(e));
    }
    if (items.empty() && !explicit_parens) return error("expected an expression");
    if (!is_tuple && items.size() == 1) return std::move(items[0]);
    ExprPtr t = make(ExprKind::kTuple, line);
    t->items = std::move(items);
    return finish(std::move(t));
  }

  Result<ExprPtr> parse_condexpr() {
    BATON_ASSIGN_OR_RETURN(ExprPtr e, parse_or());
    while (is_name("if")) {
      int line = cur().line;
      advance();
      ExprPtr c = make(ExprKind::kCondition, line);
      BATON_ASSIGN_OR_RETURN(c->rhs, parse_or());
      if (skip_name("else")) {
        BATON_ASSIGN_OR_RETURN(c->otherwise, parse_condexpr());
      }
      c->operand = std::move(e);
      BATON_ASSIGN_OR_RETURN(e, finish(std::move(c)));
    }
    return e;
  }

  Result<ExprPtr> parse_or() {
    BATON_ASSIGN_OR_RETURN(ExprPtr e, parse_and());
    while (is_name("or")) {
      ExprPtr n = make(ExprKind::kOr, cur().line);
      advance();
      n->operand = std::move(e);
      BATON_ASSIGN_OR_RETURN(n->rhs, parse_and());
      BATON_ASSIGN_OR_RETURN(e, finish(std::move(n)));
    }
    return e;
  }

  Result<ExprPtr> parse_and() {
    BATON_ASSIGN_OR_RETURN(ExprPtr e, parse_not());
    while (is_name("and")) {
      ExprPtr n = make(ExprKind::kAnd, cur().line);
      advance();
      n->operand = std::move(e);
      BATON_ASSIGN_OR_RETURN(n->rhs, parse_not());
      BATON_ASSIGN_OR_RETURN(e, finish(std::move(n)));
    }
    return e;
  }

  Result<ExprPtr> parse_not() {
    if (is_name("not")) {
      DepthGuard guard(&nesting_);
      if (nesting_ > kMaxNesting) return error("expression nested too deeply");
      ExprPtr n = make(ExprKind::kNot, cur().line);
      advance();
      BATON_ASSIGN_OR_RETURN(n->operand, parse_not());
      return finish(std::move(n));
    }
    return parse_compare();
  }

  Result<ExprPtr> parse_compare() {
    int line = cur().line;
    BATON_ASSIGN_OR_RETURN(ExprPtr first, parse_math1());
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (cur().kind == TokenKind::kOp &&
          (cur().text == "==" || cur().text == "!=" || cur().text == "<" || cur().text == ">" ||
           cur().text == "<=" || cur().text == ">=")) {
        op = cur().text;
        advance();
      } else if (is_name("in")) {
        op = "in";
        advance();
      } else if (is_name("not") && peek().kind == TokenKind::kName && peek().text == "in") {
        op = "notin";
        advance();
        advance();
      } else {
        break;
      }
      if (!cmp) {
        cmp = make(ExprKind::kCompare, line);
        cmp->operand = std::move(first);
      }
      BATON_ASSIGN_OR_RETURN(ExprPtr rhs, parse_math1());
      cmp->ops.push_back(op);
      cmp->items.push_back(std::move(rhs));
    }
    if (!cmp) return first;
    return finish(std::move(cmp));
  }

  Result<ExprPtr> binary(ExprPtr lhs, std::string op, ExprPtr rhs, int line) {
    ExprPtr n = make(ExprKind::kBinary, line);
    n->name = std::move(op);
    n->operand = std::move(lhs);
    n->rhs = std::move(rhs);
    return finish(std::move(n));
  }

  Result<ExprPtr> parse_math1() {
    BATON_ASSIGN_OR_RETURN(ExprPtr e, parse_concat());
    while (is_op("+") || is_op("-")) {
      std::string op = cur().text;
      int line = cur().line;
      advance();
      BATON_ASSIGN_OR_RETURN(ExprPtr r, parse_concat());
      BATON_ASSIGN_OR_RETURN(e, binary(std::move(e), op, std::move(r), line));
    }
    return e;
  }

  Result<ExprPtr> parse_concat() {
    BATON_ASSIGN_OR_RETURN(ExprPtr e, parse_math2());
    while (is_op("~")) {
      int line = cur().line;
      advance();
      BATON_ASSIGN_OR_RETURN(ExprPtr r, parse_math2());
      BATON_ASSIGN_OR_RETURN(e, binary(std::move(e), "~", std::move(r), line));
    }
    return e;
  }

  Result<ExprPtr> parse_math2() {
    BATON_ASSIGN_OR_RETURN(ExprPtr e, parse_pow());
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      std::string op = cur().text;
      int line = cur().line;
      advance();
      BATON_ASSIGN_OR_RETURN(ExprPtr r, parse_pow());
      BATON_ASSIGN_OR_RETURN(e, binary(std::move(e), op, std::move(r), line));
    }
    return e;
  }

  Result<ExprPtr> parse_pow() {
    BATON_ASSIGN_OR_RETURN(ExprPtr e, parse_unary(true));
    while (is_op("**")) {
      int line = cur().line;
      advance();
      BATON_ASSIGN_OR_RETURN(ExprPtr r, parse_unary(true));
      BATON_ASSIGN_OR_RETURN(e, binary(std::move(e), "**", std::move(r), line));
    }
    return e;
  }

  Result<ExprPtr> parse_unary(bool with_filter) {
    DepthGuard guard(&nesting_);
    if (nesting_ > kMaxNesting) return error("expression nested too deeply");
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      e = make(is_op("-") ? ExprKind::kNeg : ExprKind::kPos, cur().line);
      advance();
      BATON_ASSIGN_OR_RETURN(e->operand, parse_unary(false));
      BATON_ASSIGN_OR_RETURN(e, finish(std::move(e)));
    } else {
      BATON_ASSIGN_OR_RETURN(e, parse_primary());
    }
    BATON_ASSIGN_OR_RETURN(e, parse_postfix(std::move(e)));
    if (with_filter) {
      BATON_ASSIGN_OR_RETURN(e, parse_filter_expr(std::move(e)));
    }
    return e;
  }

  Result<ExprPtr> parse_primary() {
    const Token& t = cur();
    int line = t.line;
    if (t.kind == TokenKind::kName) {
      ExprPtr e = make(ExprKind::kLiteral, line);
      if (t.text == "true" || t.text == "True") {
        e->value = Value(true);
      } else if (t.text == "false" || t.text == "False") {
        e->value = Value(false);
      } else if (t.text == "none" || t.text == "None") {
        e->value = Value(None{});
      } else {
        e->kind = ExprKind::kName;
        e->name = t.text;
      }
      advance();
      return e;
    }
    if (t.kind == TokenKind::kString) {
      std::string s;
      while (cur().kind == TokenKind::kString) {
        s += cur().text;
        advance();
      }
      ExprPtr e = make(ExprKind::kLiteral, line);
      e->value = Value(std::move(s));
      return e;
    }
    if (t.kind == TokenKind::kInt || t.kind == TokenKind::kFloat) {
      ExprPtr e = make(ExprKind::kLiteral, line);
      errno = 0;
      if (t.kind == TokenKind::kInt) {
        long long v = std::strtoll(t.text.c_str(), nullptr, 10);
        if (errno == ERANGE) return error("integer literal too large");
        e->value = Value(static_cast<int64_t>(v));
      } else {
        e->value = Value(std::strtod(t.text.c_str(), nullptr));
      }
      advance();
      return e;
    }
    if (skip_op("(")) {
      BATON_ASSIGN_OR_RETURN(ExprPtr e, parse_tuple(true, true));
      BATON_RETURN_IF_ERROR(expect_op(")"));
      return e;
    }
    if (is_op("[") || is_op("{")) {
      bool is_dict = is_op("{");
      const char* close = is_dict ? "}" : "]";
      advance();
      ExprPtr e = make(is_dict ? ExprKind::kDict : ExprKind::kList, line);
      bool first = true;
      while (!is_op(close)) {
        if (!first) {
          BATON_RETURN_IF_ERROR(expect_op(","));
          if (is_op(close)) break;
        }
        first = false;
        BATON_ASSIGN_OR_RETURN(ExprPtr item, parse_expression(true));
        e->items.push_back(std::move(item));
        if (is_dict) {
          BATON_RETURN_IF_ERROR(expect_op(":"));
          BATON_ASSIGN_OR_RETURN(ExprPtr value, parse_expression(true));
          e->items.push_back(std::move(value));
        }
      }
      advance();
      return finish(std::move(e));
    }
    return error("unexpected " + describe(t));
  }

  Result<ExprPtr> parse_postfix(ExprPtr e) {
    while (true) {
      int line = cur().line;
      if (skip_op(".")) {
        if (cur().kind == TokenKind::kInt) {
          ExprPtr n = make(ExprKind::kGetItem, line);
          ExprPtr idx = make(ExprKind::kLiteral, line);
          idx->value = Value(static_cast<int64_t>(std::strtoll(cur().text.c_str(), nullptr, 10)));
          advance();
          n->operand = std::move(e);
          n->items.push_back(std::move(idx));
          BATON_ASSIGN_OR_RETURN(e, finish(std::move(n)));
          continue;
        }
        ExprPtr n = make(ExprKind::kGetAttr, line);
        BATON_ASSIGN_OR_RETURN(n->name, expect_name());
        n->operand = std::move(e);
        BATON_ASSIGN_OR_RETURN(e, finish(std::move(n)));
      } else if (skip_op("[")) {
        BATON_ASSIGN_OR_RETURN(e, parse_subscript(std::move(e), line));
      } else if (is_op("(")) {
        BATON_ASSIGN_OR_RETURN(e, parse_call(std::move(e)));
      } else {
        return e;
      }
    }
  }

  Result<ExprPtr> parse_subscript(ExprPtr obj, int line) {
    std::vector<ExprPtr> parts(3);
    bool is_slice = false;
    for (int i = 0; i < 3; ++i) {
      if (i > 0) {
        if (!skip_op(":")) break;
        is_slice = true;
      }
      if (!is_op(":") && !is_op("]")) {
        BATON_ASSIGN_OR_RETURN(parts[static_cast<size_t>(i)], parse_expression(true));
      }
    }
    BATON_RETURN_IF_ERROR(expect_op("]"));
    ExprPtr n = make(is_slice ? ExprKind::kSlice : ExprKind::kGetItem, line);
    if (!is_slice && !parts[0]) return error("expected a subscript");
    n->operand = std::move(obj);
    if (is_slice) {
      n->items = std::move(parts);
    } else {
      n->items.push_back(std::move(parts[0]));
    }
    return finish(std::move(n));
  }

  Status parse_args(std::vector<Arg>& args) {
    BATON_RETURN_IF_ERROR(expect_op("("));
    while (!is_op(")")) {
      if (!args.empty()) {
        BATON_RETURN_IF_ERROR(expect_op(","));
        if (is_op(")")) break;
      }
      if (is_op("*") || is_op("**")) return error("*args and **kwargs calls are not supported");
      Arg a;
      if (cur().kind == TokenKind::kName && peek().kind == TokenKind::kOp && peek().text == "=") {
        a.name = cur().text;
        advance();
        advance();
      } else if (!args.empty() && !args.back().name.empty()) {
        return error("positional argument follows keyword argument");
      }
      BATON_ASSIGN_OR_RETURN(a.value, parse_expression(true));
      args.push_back(std::move(a));
    }
    advance();
    return Status::ok();
  }

  Result<ExprPtr> parse_call(ExprPtr callee) {
    ExprPtr n = make(ExprKind::kCall, cur().line);
    BATON_RETURN_IF_ERROR(parse_args(n->args));
    n->operand = std::move(callee);
    return finish(std::move(n));
  }

  // name[(args)] after a '|'; operand may be nullptr (filter blocks).
  Result<ExprPtr> parse_filter_call(ExprPtr operand) {
    ExprPtr n = make(ExprKind::kFilter, cur().line);
    BATON_ASSIGN_OR_RETURN(n->name, expect_name());
    while (is_op(".") && peek().kind == TokenKind::kName) {
      advance();
      n->name += "." + cur().text;
      advance();
    }
    if (is_op("(")) BATON_RETURN_IF_ERROR(parse_args(n->args));
    n->operand = std::move(operand);
    return finish(std::move(n));
  }

  Result<ExprPtr> parse_filter_expr(ExprPtr e) {
    while (true) {
      if (skip_op("|")) {
        BATON_ASSIGN_OR_RETURN(e, parse_filter_call(std::move(e)));
      } else if (is_name("is")) {
        BATON_ASSIGN_OR_RETURN(e, parse_test(std::move(e)));
      } else if (is_op("(")) {
        BATON_ASSIGN_OR_RETURN(e, parse_call(std::move(e)));
      } else {
        return e;
      }
    }
  }

  Result<ExprPtr> parse_test(ExprPtr operand) {
    ExprPtr n = make(ExprKind::kTest, cur().line);
    advance();  // is
    n->negated = skip_name("not");
    BATON_ASSIGN_OR_RETURN(n->name, expect_name());
    while (is_op(".") && peek().kind == TokenKind::kName) {
      advance();
      n->name += "." + cur().text;
      advance();
    }
    if (is_op("(")) {
      BATON_RETURN_IF_ERROR(parse_args(n->args));
    } else {
      // jinja2 takes one bare argument: `x is divisibleby 3`.
      TokenKind k = cur().kind;
      bool starts_arg = k == TokenKind::kName || k == TokenKind::kString || k == TokenKind::kInt ||
                        k == TokenKind::kFloat || is_op("[") || is_op("{");
      if (starts_arg && !is_name("else") && !is_name("or") && !is_name("and")) {
        if (is_name("is")) return error("You cannot chain multiple tests with is");
        Arg a;
        BATON_ASSIGN_OR_RETURN(a.value, parse_primary());
        BATON_ASSIGN_OR_RETURN(a.value, parse_postfix(std::move(a.value)));
        n->args.push_back(std::move(a));
      }
    }
    n->operand = std::move(operand);
    return finish(std::move(n));
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int nesting_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

Result<NodeList> parse_template(const std::string& source) {
  BATON_ASSIGN_OR_RETURN(std::vector<Token> tokens, tokenize(source));
  return Parser(std::move(tokens)).run();
}

}  // namespace baton::model::jinja
