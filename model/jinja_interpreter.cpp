#include "model/jinja_interpreter.h"

#include <ctime>
#include <exception>
#include <unordered_map>

#include "model/jinja_builtins.h"
#include "model/jinja_parser.h"

namespace baton::model::jinja {

namespace {

struct Scope;
using ScopePtr = std::shared_ptr<Scope>;

struct Scope {
  std::unordered_map<std::string, Value> vars;
  ScopePtr parent;
};

enum class Flow { kNormal, kBreak, kContinue };

// Filters and tests are resolved when the template is parsed, as jinja2's
// compiler does, so a typo fails at load time rather than on some request.
Status check_names(const Expr* e);
Status check_names(const NodeList& nodes);

Status check_names(const Expr* e) {
  if (e == nullptr) return Status::ok();
  if (e->kind == ExprKind::kFilter && !has_filter(e->name)) {
    return data_error("template error at line " + std::to_string(e->line) + ": No filter named '" +
                      e->name + "'.");
  }
  if (e->kind == ExprKind::kTest && !has_test(e->name)) {
    return data_error("template error at line " + std::to_string(e->line) + ": No test named '" +
                      e->name + "'.");
  }
  BATON_RETURN_IF_ERROR(check_names(e->operand.get()));
  BATON_RETURN_IF_ERROR(check_names(e->rhs.get()));
  BATON_RETURN_IF_ERROR(check_names(e->otherwise.get()));
  for (const auto& c : e->items) BATON_RETURN_IF_ERROR(check_names(c.get()));
  for (const auto& a : e->args) BATON_RETURN_IF_ERROR(check_names(a.value.get()));
  return Status::ok();
}

Status check_names(const NodeList& nodes) {
  for (const auto& n : nodes) {
    BATON_RETURN_IF_ERROR(check_names(n->expr.get()));
    BATON_RETURN_IF_ERROR(check_names(n->filter.get()));
    for (const auto& c : n->conditions) BATON_RETURN_IF_ERROR(check_names(c.get()));
    for (const auto& b : n->bodies) BATON_RETURN_IF_ERROR(check_names(b));
    BATON_RETURN_IF_ERROR(check_names(n->body));
    BATON_RETURN_IF_ERROR(check_names(n->else_body));
    for (const auto& p : n->params) BATON_RETURN_IF_ERROR(check_names(p.default_value.get()));
    for (const auto& f : n->filters) BATON_RETURN_IF_ERROR(check_names(f.get()));
  }
  return Status::ok();
}

class Interpreter {
 public:
  explicit Interpreter(const RenderOptions& options) : options_(options) {
    limits_.max_string_bytes = options.limits.max_output_bytes;
  }

  ~Interpreter() {
    // Namespaces are the only mutable values, so only they can form cycles
    // (ns.self = ns); emptying them frees everything.
    for (auto& ns : namespaces_) ns->items.clear();
  }

  Result<std::string> run(const NodeList& root, const Value& context) {
    root_ = std::make_shared<Scope>();
    install_globals();
    if (context.is_dict()) {
      for (const auto& [k, v] : context.as_dict()->items) root_->vars[k] = v;
    }
    std::string out;
    Flow flow = Flow::kNormal;
    Status st = exec_list(root, root_, out, flow);
    if (!st.is_ok()) {
      return Status(st.code(), "line " + std::to_string(line_) + ": " + st.message());
    }
    return out;
  }

 private:
  Status step(int line) {
    line_ = line;
    if (++steps_ > options_.limits.max_steps) {
      return resource_exhausted("template evaluation exceeded " +
                                std::to_string(options_.limits.max_steps) + " steps");
    }
    return Status::ok();
  }

  Status append(std::string& out, std::string_view s) {
    if (out.size() + s.size() > options_.limits.max_output_bytes) {
      return resource_exhausted("template output exceeded " +
                                std::to_string(options_.limits.max_output_bytes) + " bytes");
    }
    out.append(s);
    return Status::ok();
  }

  Value lookup(const std::string& name, const ScopePtr& scope) const {
    for (const Scope* s = scope.get(); s != nullptr; s = s->parent.get()) {
      auto it = s->vars.find(name);
      if (it != s->vars.end()) return it->second;
    }
    return Value::undefined("'" + name + "' is undefined");
  }

  void install_globals() {
    root_->vars["range"] = make_callable("range", [](const CallArgs& args) -> Result<Value> {
      std::vector<int64_t> p;
      for (const auto& v : args.positional) {
        if (!v.is_int() && !v.is_bool()) {
          return invalid_argument("'" + type_name(v) +
                                  "' object cannot be interpreted as an integer");
        }
        p.push_back(v.is_bool() ? int64_t{v.as_bool()} : v.as_int());
      }
      if (p.empty() || p.size() > 3 || !args.keyword.empty()) {
        return invalid_argument("range expected 1 to 3 integer arguments");
      }
      int64_t start = p.size() == 1 ? 0 : p[0];
      int64_t stop = p.size() == 1 ? p[0] : p[1];
      int64_t stepv = p.size() == 3 ? p[2] : 1;
      if (stepv == 0) return invalid_argument("range() arg 3 must not be zero");
      long double count = stepv > 0 ? (static_cast<long double>(stop) - start + stepv - 1) / stepv
                                    : (static_cast<long double>(start) - stop - stepv - 1) / -stepv;
      if (count > kMaxRange) {
        return invalid_argument(
            "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
      }
      std::vector<Value> out;
      for (int64_t i = start; stepv > 0 ? i < stop : i > stop; i += stepv) out.emplace_back(i);
      return make_list(std::move(out));
    });
    auto make_mapping = [this](bool is_namespace) {
      return [this, is_namespace](const CallArgs& args) -> Result<Value> {
        auto d = std::make_shared<Dict>();
        d->is_namespace = is_namespace;
        if (args.positional.size() > 1) return invalid_argument("expected at most 1 argument");
        if (!args.positional.empty()) {
          const Value& init = args.positional[0];
          if (!init.is_dict()) return invalid_argument("cannot convert to a dict");
          d->items = init.as_dict()->items;
        }
        for (const auto& [k, v] : args.keyword) d->set(k, v);
        if (is_namespace) namespaces_.push_back(d);
        return Value(d);
      };
    };
    root_->vars["namespace"] = make_callable("namespace", make_mapping(true));
    root_->vars["dict"] = make_callable("dict", make_mapping(false));
    root_->vars["raise_exception"] =
        make_callable("raise_exception", [](const CallArgs& args) -> Result<Value> {
          std::string msg = args.positional.empty() ? "" : py_str(args.positional[0]);
          return invalid_argument(msg);
        });
    root_->vars["strftime_now"] =
        make_callable("strftime_now", [this](const CallArgs& args) -> Result<Value> {
          if (args.positional.empty() || !args.positional[0].is_string()) {
            return invalid_argument("strftime_now() needs a format string");
          }
          auto now = options_.now.value_or(std::chrono::system_clock::now());
          std::time_t t = std::chrono::system_clock::to_time_t(now);
          std::tm tm{};
          localtime_r(&t, &tm);
          const std::string& fmt = args.positional[0].as_string();
          if (fmt.empty()) return Value("");
          std::string buf(fmt.size() * 8 + 64, '\0');
          size_t n = std::strftime(buf.data(), buf.size(), fmt.c_str(), &tm);
          buf.resize(n);
          return Value(std::move(buf));
        });
  }

  // ---- statements ----

  Status exec_list(const NodeList& nodes, const ScopePtr& scope, std::string& out, Flow& flow) {
    for (const auto& n : nodes) {
      BATON_RETURN_IF_ERROR(exec(*n, scope, out, flow));
      if (flow != Flow::kNormal) return Status::ok();
    }
    return Status::ok();
  }

  Status assign(const std::vector<std::string>& targets, const Value& v, Scope& scope) {
    if (targets.size() == 1) {
      scope.vars[targets[0]] = v;
      return Status::ok();
    }
    BATON_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(v));
    if (items.size() != targets.size()) {
      return invalid_argument(
          items.size() > targets.size()
              ? "too many values to unpack (expected " + std::to_string(targets.size()) + ")"
              : "not enough values to unpack (expected " + std::to_string(targets.size()) +
                    ", got " + std::to_string(items.size()) + ")");
    }
    for (size_t i = 0; i < targets.size(); ++i) scope.vars[targets[i]] = items[i];
    return Status::ok();
  }

  Result<std::string> render_body(const NodeList& body, const ScopePtr& scope) {
    std::string buf;
    Flow flow = Flow::kNormal;
    BATON_RETURN_IF_ERROR(exec_list(body, scope, buf, flow));
    return buf;
  }

  Result<Value> apply_filters(const std::vector<ExprPtr>& filters, Value v, const ScopePtr& scope) {
    for (const auto& f : filters) {
      BATON_ASSIGN_OR_RETURN(CallArgs args, eval_args(f->args, scope));
      line_ = f->line;
      BATON_ASSIGN_OR_RETURN(v, apply_filter(f->name, v, args, limits_));
    }
    return v;
  }

  Status exec(const Node& n, const ScopePtr& scope, std::string& out, Flow& flow) {
    BATON_RETURN_IF_ERROR(step(n.line));
    switch (n.kind) {
      case NodeKind::kText:
        return append(out, n.text);
      case NodeKind::kOutput: {
        BATON_ASSIGN_OR_RETURN(Value v, eval(*n.expr, scope));
        if (v.is_string()) return append(out, v.as_string());
        return append(out, py_str(v));
      }
      case NodeKind::kIf:
        for (size_t i = 0; i < n.conditions.size(); ++i) {
          BATON_ASSIGN_OR_RETURN(Value c, eval(*n.conditions[i], scope));
          if (truthy(c)) return exec_list(n.bodies[i], scope, out, flow);
        }
        return exec_list(n.else_body, scope, out, flow);
      case NodeKind::kFor:
        return exec_for(n, scope, out);
      case NodeKind::kSet: {
        BATON_ASSIGN_OR_RETURN(Value v, eval(*n.expr, scope));
        if (!n.text.empty()) {
          Value target = lookup(n.targets[0], scope);
          if (!target.is_dict() || !target.as_dict()->is_namespace) {
            return invalid_argument("Can't assign attribute on non-namespace object");
          }
          target.as_dict()->set(n.text, std::move(v));
          return Status::ok();
        }
        return assign(n.targets, v, *scope);
      }
      case NodeKind::kSetBlock: {
        BATON_ASSIGN_OR_RETURN(std::string body, render_body(n.body, scope));
        BATON_ASSIGN_OR_RETURN(Value v, apply_filters(n.filters, Value(std::move(body)), scope));
        scope->vars[n.targets[0]] = std::move(v);
        return Status::ok();
      }
      case NodeKind::kMacro:
        scope->vars[n.text] = make_macro(n, scope);
        return Status::ok();
      case NodeKind::kCallBlock: {
        Value caller = make_macro(n, scope);
        const Expr& call = *n.expr;
        BATON_ASSIGN_OR_RETURN(Value callee, eval(*call.operand, scope));
        BATON_ASSIGN_OR_RETURN(CallArgs args, eval_args(call.args, scope));
        args.keyword.emplace_back("caller", caller);
        BATON_ASSIGN_OR_RETURN(Value v, call_value(callee, args, call.line));
        return append(out, py_str(v));
      }
      case NodeKind::kFilterBlock: {
        BATON_ASSIGN_OR_RETURN(std::string body, render_body(n.body, scope));
        BATON_ASSIGN_OR_RETURN(Value v, apply_filters(n.filters, Value(std::move(body)), scope));
        return append(out, py_str(v));
      }
      case NodeKind::kWith: {
        auto inner = std::make_shared<Scope>();
        inner->parent = scope;
        for (const auto& p : n.params) {
          BATON_ASSIGN_OR_RETURN(Value v, eval(*p.default_value, scope));
          inner->vars[p.name] = std::move(v);
        }
        return exec_list(n.body, inner, out, flow);
      }
      case NodeKind::kBreak:
        flow = Flow::kBreak;
        return Status::ok();
      case NodeKind::kContinue:
        flow = Flow::kContinue;
        return Status::ok();
      case NodeKind::kScopeless: {
        // transformers renders generation blocks through a call block, which
        // gives the body a scope of its own.
        auto inner = std::make_shared<Scope>();
        inner->parent = scope;
        return exec_list(n.body, inner, out, flow);
      }
    }
    return internal_error("unknown node");
  }

  Status exec_for(const Node& n, const ScopePtr& scope, std::string& out) {
    BATON_ASSIGN_OR_RETURN(Value seq, eval(*n.expr, scope));
    BATON_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(seq));
    auto loop_scope = std::make_shared<Scope>();
    loop_scope->parent = scope;
    if (n.filter) {
      std::vector<Value> kept;
      for (auto& item : items) {
        BATON_RETURN_IF_ERROR(step(n.line));
        BATON_RETURN_IF_ERROR(assign(n.targets, item, *loop_scope));
        BATON_ASSIGN_OR_RETURN(Value c, eval(*n.filter, loop_scope));
        if (truthy(c)) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    const int64_t count = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < count; ++i) {
      BATON_RETURN_IF_ERROR(step(n.line));
      const Value& item = items[static_cast<size_t>(i)];
      BATON_RETURN_IF_ERROR(assign(n.targets, item, *loop_scope));
      auto loop = std::make_shared<Dict>();
      loop->set("index", Value(i + 1));
      loop->set("index0", Value(i));
      loop->set("revindex", Value(count - i));
      loop->set("revindex0", Value(count - i - 1));
      loop->set("first", Value(i == 0));
      loop->set("last", Value(i == count - 1));
      loop->set("length", Value(count));
      loop->set("depth", Value(int64_t{1}));
      loop->set("depth0", Value(int64_t{0}));
      loop->set("previtem", i > 0 ? items[static_cast<size_t>(i - 1)]
                                  : Value::undefined("there is no previous item"));
      loop->set("nextitem", i + 1 < count ? items[static_cast<size_t>(i + 1)]
                                          : Value::undefined("there is no next item"));
      loop->set("cycle", make_callable("loop.cycle", [i](const CallArgs& args) -> Result<Value> {
                  if (args.positional.empty())
                    return invalid_argument("no items for cycling given");
                  return args.positional[static_cast<size_t>(i) % args.positional.size()];
                }));
      loop_scope->vars["loop"] = Value(loop);
      Flow flow = Flow::kNormal;
      BATON_RETURN_IF_ERROR(exec_list(n.body, loop_scope, out, flow));
      if (flow == Flow::kBreak) break;
    }
    if (count == 0) {
      Flow flow = Flow::kNormal;
      return exec_list(n.else_body, scope, out, flow);
    }
    return Status::ok();
  }

  // Macros (and call-block callers) capture their defining scope weakly:
  // a strong reference from a value stored in that scope would be a cycle.
  Value make_macro(const Node& n, const ScopePtr& scope) {
    std::weak_ptr<Scope> defining = scope;
    const Node* node = &n;
    std::string name = n.kind == NodeKind::kMacro ? n.text : "caller";
    return make_callable(name, [this, node, defining, name](const CallArgs& args) {
      return call_macro(*node, name, defining, args);
    });
  }

  Result<Value> call_macro(const Node& n, const std::string& name,
                           const std::weak_ptr<Scope>& defining, const CallArgs& args) {
    if (depth_ >= options_.limits.max_call_depth) {
      return resource_exhausted("macro calls nested deeper than " +
                                std::to_string(options_.limits.max_call_depth));
    }
    ++depth_;
    struct Unwind {
      int* d;
      ~Unwind() { --*d; }
    } unwind{&depth_};
    auto scope = std::make_shared<Scope>();
    scope->parent = defining.lock();
    if (!scope->parent) scope->parent = root_;
    std::vector<Value> varargs;
    std::vector<std::optional<Value>> bound(n.params.size());
    for (size_t i = 0; i < args.positional.size(); ++i) {
      if (i < n.params.size()) {
        bound[i] = args.positional[i];
      } else {
        varargs.push_back(args.positional[i]);
      }
    }
    auto kwargs = std::make_shared<Dict>();
    for (const auto& [k, v] : args.keyword) {
      if (k == "caller" && n.kind == NodeKind::kMacro) {
        scope->vars["caller"] = v;
        continue;
      }
      bool found = false;
      for (size_t i = 0; i < n.params.size(); ++i) {
        if (n.params[i].name == k) {
          bound[i] = v;
          found = true;
        }
      }
      if (!found) kwargs->set(k, v);
    }
    for (size_t i = 0; i < n.params.size(); ++i) {
      const Param& p = n.params[i];
      if (bound[i]) {
        scope->vars[p.name] = *bound[i];
      } else if (p.default_value) {
        BATON_ASSIGN_OR_RETURN(Value v, eval(*p.default_value, scope));
        scope->vars[p.name] = std::move(v);
      } else {
        scope->vars[p.name] = Value::undefined("parameter '" + p.name + "' was not provided");
      }
    }
    scope->vars["varargs"] = make_list(std::move(varargs));
    scope->vars["kwargs"] = Value(kwargs);
    (void)name;
    BATON_ASSIGN_OR_RETURN(std::string body, render_body(n.body, scope));
    return Value(std::move(body));
  }

  // ---- expressions ----

  Result<CallArgs> eval_args(const std::vector<Arg>& in, const ScopePtr& scope) {
    CallArgs args;
    for (const auto& a : in) {
      BATON_ASSIGN_OR_RETURN(Value v, eval(*a.value, scope));
      if (a.name.empty()) {
        args.positional.push_back(std::move(v));
      } else {
        args.keyword.emplace_back(a.name, std::move(v));
      }
    }
    return args;
  }

  Result<Value> call_value(const Value& callee, const CallArgs& args, int line) {
    line_ = line;
    if (callee.is_undefined()) return undefined_error(callee);
    if (!callee.is_callable()) {
      return invalid_argument("'" + type_name(callee) + "' object is not callable");
    }
    auto r = callee.as_callable()->fn(args);
    if (r.is_ok()) line_ = line;  // errors keep the innermost line
    return r;
  }

  Result<Value> eval(const Expr& e, const ScopePtr& scope) {
    BATON_RETURN_IF_ERROR(step(e.line));
    switch (e.kind) {
      case ExprKind::kLiteral:
        return e.value;
      case ExprKind::kName:
        return lookup(e.name, scope);
      case ExprKind::kList:
      case ExprKind::kTuple: {
        std::vector<Value> items;
        for (const auto& c : e.items) {
          BATON_ASSIGN_OR_RETURN(Value v, eval(*c, scope));
          items.push_back(std::move(v));
        }
        return make_list(std::move(items), e.kind == ExprKind::kTuple);
      }
      case ExprKind::kDict: {
        auto d = std::make_shared<Dict>();
        for (size_t i = 0; i + 1 < e.items.size(); i += 2) {
          BATON_ASSIGN_OR_RETURN(Value k, eval(*e.items[i], scope));
          BATON_ASSIGN_OR_RETURN(Value v, eval(*e.items[i + 1], scope));
          if (!k.is_string())
            return invalid_argument("dict keys must be strings in chat templates");
          d->set(k.as_string(), std::move(v));
        }
        return Value(d);
      }
      case ExprKind::kGetAttr: {
        BATON_ASSIGN_OR_RETURN(Value obj, eval(*e.operand, scope));
        line_ = e.line;
        return get_attr(obj, e.name, limits_);
      }
      case ExprKind::kGetItem: {
        BATON_ASSIGN_OR_RETURN(Value obj, eval(*e.operand, scope));
        BATON_ASSIGN_OR_RETURN(Value key, eval(*e.items[0], scope));
        line_ = e.line;
        return get_item(obj, key, limits_);
      }
      case ExprKind::kSlice: {
        BATON_ASSIGN_OR_RETURN(Value obj, eval(*e.operand, scope));
        std::optional<Value> parts[3];
        for (size_t i = 0; i < 3; ++i) {
          if (e.items[i]) {
            BATON_ASSIGN_OR_RETURN(Value v, eval(*e.items[i], scope));
            parts[i] = std::move(v);
          }
        }
        line_ = e.line;
        return slice(obj, parts[0], parts[1], parts[2]);
      }
      case ExprKind::kCall: {
        BATON_ASSIGN_OR_RETURN(Value callee, eval(*e.operand, scope));
        BATON_ASSIGN_OR_RETURN(CallArgs args, eval_args(e.args, scope));
        return call_value(callee, args, e.line);
      }
      case ExprKind::kFilter: {
        BATON_ASSIGN_OR_RETURN(Value v, eval(*e.operand, scope));
        BATON_ASSIGN_OR_RETURN(CallArgs args, eval_args(e.args, scope));
        line_ = e.line;
        return apply_filter(e.name, v, args, limits_);
      }
      case ExprKind::kTest: {
        BATON_ASSIGN_OR_RETURN(Value v, eval(*e.operand, scope));
        BATON_ASSIGN_OR_RETURN(CallArgs args, eval_args(e.args, scope));
        line_ = e.line;
        BATON_ASSIGN_OR_RETURN(bool r, apply_test(e.name, v, args));
        return Value(r != e.negated);
      }
      case ExprKind::kNeg: {
        BATON_ASSIGN_OR_RETURN(Value v, eval(*e.operand, scope));
        line_ = e.line;
        return negate(v);
      }
      case ExprKind::kPos: {
        BATON_ASSIGN_OR_RETURN(Value v, eval(*e.operand, scope));
        if (v.is_undefined()) return undefined_error(v);
        if (!v.is_number()) {
          return invalid_argument("bad operand type for unary +: '" + type_name(v) + "'");
        }
        return v.is_bool() ? Value(int64_t{v.as_bool()}) : v;
      }
      case ExprKind::kNot: {
        BATON_ASSIGN_OR_RETURN(Value v, eval(*e.operand, scope));
        return Value(!truthy(v));
      }
      case ExprKind::kBinary: {
        BATON_ASSIGN_OR_RETURN(Value a, eval(*e.operand, scope));
        BATON_ASSIGN_OR_RETURN(Value b, eval(*e.rhs, scope));
        line_ = e.line;
        return binary_op(e.name, a, b, limits_);
      }
      case ExprKind::kAnd: {
        BATON_ASSIGN_OR_RETURN(Value a, eval(*e.operand, scope));
        if (!truthy(a)) return a;
        return eval(*e.rhs, scope);
      }
      case ExprKind::kOr: {
        BATON_ASSIGN_OR_RETURN(Value a, eval(*e.operand, scope));
        if (truthy(a)) return a;
        return eval(*e.rhs, scope);
      }
      case ExprKind::kCompare: {
        BATON_ASSIGN_OR_RETURN(Value left, eval(*e.operand, scope));
        for (size_t i = 0; i < e.ops.size(); ++i) {
          BATON_ASSIGN_OR_RETURN(Value right, eval(*e.items[i], scope));
          line_ = e.line;
          BATON_ASSIGN_OR_RETURN(bool r, compare(e.ops[i], left, right));
          if (!r) return Value(false);
          left = std::move(right);
        }
        return Value(true);
      }
      case ExprKind::kCondition: {
        BATON_ASSIGN_OR_RETURN(Value c, eval(*e.rhs, scope));
        if (truthy(c)) return eval(*e.operand, scope);
        if (e.otherwise) return eval(*e.otherwise, scope);
        return Value::undefined("the inline if-expression on line " + std::to_string(e.line) +
                                " evaluated to false and no else section was defined.");
      }
    }
    return internal_error("unknown expression");
  }

  const RenderOptions& options_;
  BuiltinLimits limits_;
  ScopePtr root_;
  std::vector<DictPtr> namespaces_;
  int line_ = 0;
  int depth_ = 0;
  int64_t steps_ = 0;
};

}  // namespace

Result<Template> Template::parse(const std::string& source) {
  BATON_ASSIGN_OR_RETURN(NodeList root, parse_template(source));
  BATON_RETURN_IF_ERROR(check_names(root));
  Template t;
  t.root_ = std::make_shared<const NodeList>(std::move(root));
  return t;
}

Result<std::string> Template::render(const Value& context, const RenderOptions& options) const {
  if (!root_) return internal_error("render of an unparsed template");
  // Builtins do not throw, but a stray std::bad_alloc or out_of_range must
  // still end as a Status rather than cross the module boundary.
  try {
    Interpreter interp(options);
    return interp.run(*root_, context);
  } catch (const std::exception& e) {
    return internal_error(std::string("template render failed: ") + e.what());
  }
}

}  // namespace baton::model::jinja
