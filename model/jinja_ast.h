#pragma once

// Syntax tree of a parsed Jinja template. Produced by parse_template(),
// immutable afterwards and safe to render from several threads at once.
// Every node records the template line it came from, for error messages.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/jinja_value.h"

namespace baton::model::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

enum class ExprKind {
  kLiteral,    // value
  kName,       // name
  kList,       // items
  kTuple,      // items
  kDict,       // items: key, value, key, value, ...
  kGetAttr,    // object.name
  kGetItem,    // object[index]
  kSlice,      // object[start:stop:step]; absent parts are nullptr in items
  kCall,       // callee(args)
  kFilter,     // operand | name(args)
  kTest,       // operand is [not] name(args)
  kNeg,        // -operand
  kPos,        // +operand
  kNot,        // not operand
  kBinary,     // lhs op rhs, op in + - * / // % ** ~
  kAnd,        // lhs and rhs
  kOr,         // lhs or rhs
  kCompare,    // operand (op operand)*: chained comparisons
  kCondition,  // then if cond else otherwise
};

struct Arg {
  std::string name;  // empty for positional
  ExprPtr value;
};

struct Expr {
  ExprKind kind;
  int line = 0;
  int depth = 1;                 // height of this subtree (bounded by the parser)
  Value value;                   // kLiteral
  std::string name;              // kName, kGetAttr, kFilter, kTest, kBinary op
  bool negated = false;          // kTest: `is not`
  ExprPtr operand;               // the subject of most kinds
  ExprPtr rhs;                   // kBinary, kAnd, kOr; kCondition: the test
  ExprPtr otherwise;             // kCondition else branch (may be nullptr)
  std::vector<ExprPtr> items;    // kList, kTuple, kDict, kSlice, kGetItem index
  std::vector<Arg> args;         // kCall, kFilter, kTest
  std::vector<std::string> ops;  // kCompare operators, one per items entry
};

struct Node;
using NodePtr = std::unique_ptr<Node>;
using NodeList = std::vector<NodePtr>;

enum class NodeKind {
  kText,         // text
  kOutput,       // {{ expr }}
  kIf,           // conditions[i] -> bodies[i]; else_body
  kFor,          // for targets in expr [if filter] body [else else_body]
  kSet,          // set targets = expr, or set target.attr = expr
  kSetBlock,     // set target %}body{% endset, with optional filters
  kMacro,        // macro name(params) body
  kCallBlock,    // call(params) expr: body is the caller
  kFilterBlock,  // filter f|g: body
  kWith,         // with assignments: body
  kBreak,
  kContinue,
  kScopeless,  // a body rendered in place (generation blocks)
};

struct Param {
  std::string name;
  ExprPtr default_value;  // nullptr when required
};

struct Node {
  NodeKind kind;
  int line = 0;
  std::string text;                  // kText; kSet attribute name; kMacro name
  ExprPtr expr;                      // kOutput, kFor iterable, kSet value, kCallBlock call
  ExprPtr filter;                    // kFor inline condition
  std::vector<std::string> targets;  // kFor/kSet/kSetBlock names
  std::vector<ExprPtr> conditions;   // kIf
  std::vector<NodeList> bodies;      // kIf branches
  NodeList body;
  NodeList else_body;
  std::vector<Param> params;     // kMacro, kCallBlock; kWith assignments
  std::vector<ExprPtr> filters;  // kSetBlock, kFilterBlock: kFilter nodes with no operand
};

}  // namespace baton::model::jinja
