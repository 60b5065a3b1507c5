// Focused tests of the Jinja interpreter through ChatTemplate. Expected
// strings are what jinja2 3.1 renders under transformers' configuration.

#include <gtest/gtest.h>

#include "model/chat_template.h"

namespace baton::model {
namespace {

using nlohmann::ordered_json;

// The rendered text, or "ERROR: <message>".
std::string render(const std::string& source, const ordered_json& ctx = ordered_json::object(),
                   const RenderOptions& options = {}) {
  auto t = ChatTemplate::parse(source);
  if (!t.is_ok()) return "ERROR: " + t.status().message();
  auto out = t->render(ctx, options);
  if (!out.is_ok()) return "ERROR: " + out.status().message();
  return *out;
}

Status render_status(const std::string& source, const ordered_json& ctx = ordered_json::object(),
                     const RenderOptions& options = {}) {
  auto t = ChatTemplate::parse(source);
  if (!t.is_ok()) return t.status();
  return t->render(ctx, options).status();
}

bool is_error(const std::string& s) { return s.rfind("ERROR: ", 0) == 0; }

TEST(JinjaWhitespace, TrimBlocksEatsTheNewlineAfterABlockTag) {
  EXPECT_EQ(render("{% if true %}\n  x\n{% endif %}\n"), "  x\n");
  EXPECT_EQ(render("{% if true +%}\nx{% endif %}"), "\nx");
  EXPECT_EQ(render("{{ 'a' }}\nb"), "a\nb");  // not after variables
}

TEST(JinjaWhitespace, LstripBlocksRemovesIndentationBeforeBlockTagsOnly) {
  EXPECT_EQ(render("a\n    {% if true %}b{% endif %}"), "a\nb");
  EXPECT_EQ(render("a\n  {%+ if true %}b{% endif %}"), "a\n  b");
  EXPECT_EQ(render("a\n  {{ 'x' }}"), "a\n  x");
  EXPECT_EQ(render("a {% if true %}b{% endif %}"), "a b");  // not alone on its line
  EXPECT_EQ(render("a\n  {# note #}\nb"), "a\nb");
}

TEST(JinjaWhitespace, MinusStripsAllWhitespaceOnItsSide) {
  EXPECT_EQ(render("a  \n {{- 'x' -}} \n b"), "axb");
  EXPECT_EQ(render("a\n\n{%- if true -%}\n\n b {%- endif %}"), "ab");
  EXPECT_EQ(render("x {#- c -#} y"), "xy");
}

TEST(JinjaWhitespace, NewlinesAreNormalisedAndOneTrailingNewlineDropped) {
  EXPECT_EQ(render("a\r\nb\rc\n"), "a\nb\nc");
  EXPECT_EQ(render("a\n\n"), "a\n");
  EXPECT_EQ(render("{% raw %}{{ x }}{% endraw %}"), "{{ x }}");
}

TEST(JinjaLoops, LoopVariables) {
  EXPECT_EQ(
      render("{% for x in ['a','b','c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}"
             "{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}|{% endfor %}"),
      "1032TrueFalse3|2121FalseFalse3|3210FalseTrue3|");
  EXPECT_EQ(render("{% for x in [1,2,3] %}{{ loop.previtem }}-{{ loop.nextitem }},{% endfor %}"),
            "-2,1-3,2-,");
  EXPECT_EQ(render("{% for x in 'ab' %}{{ loop.cycle('o', 'e') }}{{ x }}{% endfor %}"), "oaeb");
}

TEST(JinjaLoops, DictsUnpackingElseAndInlineFilter) {
  ordered_json ctx = {{"d", {{"b", 1}, {"a", 2}}}};
  EXPECT_EQ(render("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", ctx), "b=1;a=2;");
  EXPECT_EQ(render("{% for k in d %}{{ k }}{% endfor %}", ctx), "ba");
  EXPECT_EQ(render("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{% for x in range(6) if x is even %}{{ loop.index }}:{{ x }}/{{ loop.length }} "
                   "{% endfor %}"),
            "1:0/3 2:2/3 3:4/3 ");
}

TEST(JinjaLoops, BreakAndContinue) {
  EXPECT_EQ(render("{% for i in range(10) %}{% if i == 1 %}{% continue %}{% endif %}"
                   "{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %}"),
            "023");
  EXPECT_TRUE(is_error(render("{% break %}")));
}

TEST(JinjaScopes, LoopAssignmentsStayInsideButNamespacesCarryOut) {
  EXPECT_EQ(render("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}"), "1");
  EXPECT_EQ(render("{% set ns = namespace(x=1) %}{% for i in [1, 2] %}{% set ns.x = ns.x + i %}"
                   "{% endfor %}{{ ns.x }}"),
            "4");
  EXPECT_EQ(render("{% if true %}{% set y = 5 %}{% endif %}{{ y }}"), "5");
  EXPECT_EQ(render("{% set a, b = [1, 2] %}{{ b }}{{ a }}"), "21");
  EXPECT_EQ(render("{% set s %}x{{ 1 + 1 }}{% endset %}{{ s | upper }}"), "X2");
  EXPECT_TRUE(is_error(render("{% set d = {} %}{% set d.x = 1 %}")));
}

TEST(JinjaMacros, ArgumentsDefaultsAndCaller) {
  EXPECT_EQ(render("{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!"
                   "{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', greeting='Hi') }}"),
            "Hello, Ann! Hi, Bob!");
  EXPECT_EQ(render("{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}"
                   "{% call wrap('b') %}inner{% endcall %}"),
            "<b>inner</b>");
  EXPECT_EQ(render("{% macro m(a) %}{{ a is defined }}{% endmacro %}{{ m() }}"), "False");
}

TEST(JinjaFilters, StringFilters) {
  EXPECT_EQ(render("{{ '  a  ' | trim }}|{{ 'xxaxx' | trim('x') }}|{{ 'héllo' | length }}"),
            "a|a|5");
  EXPECT_EQ(render("{{ 'hello WORLD' | capitalize }}|{{ 'hello-world foo' | title }}|"
                   "{{ 'aB' | upper }}{{ 'aB' | lower }}"),
            "Hello world|Hello-World Foo|ABab");
  EXPECT_EQ(render("{{ 'a-b-c' | replace('-', '+') }}|{{ 'a-b-c' | replace('-', '', 1) }}"),
            "a+b+c|ab-c");
  EXPECT_EQ(render("{{ 'l1\nl2\n\nl3' | indent(2) }}|{{ 'x' | indent(first=true) }}"),
            "l1\n  l2\n\n  l3|    x");
  EXPECT_EQ(render("{{ '<a href=\"x\">' | e }}|{{ 'one two  three' | wordcount }}"),
            "&lt;a href=&#34;x&#34;&gt;|3");
}

TEST(JinjaFilters, Tojson) {
  EXPECT_EQ(render("{{ {'a': [1, 2.0, none, true]} | tojson }}"), R"({"a": [1, 2.0, null, true]})");
  EXPECT_EQ(render("{{ {'a': [1, 2]} | tojson(indent=2) }}"),
            "{\n  \"a\": [\n    1,\n    2\n  ]\n}");
  EXPECT_EQ(render("{{ 'é\"\n<' | tojson }}"), "\"é\\\"\\n<\"");
  EXPECT_EQ(render("{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}"), R"({"a": 2, "b": 1})");
  EXPECT_EQ(render("{{ 'é' | tojson(ensure_ascii=true) }}"), "\"\\u00e9\"");
  EXPECT_TRUE(is_error(render("{{ missing | tojson }}")));
}

TEST(JinjaFilters, SequenceFilters) {
  ordered_json ctx = {
      {"users", {{{"name", "a"}, {"admin", true}}, {{"name", "b"}, {"admin", false}}}}};
  EXPECT_EQ(render("{{ users | selectattr('admin') | map(attribute='name') | join(',') }}|"
                   "{{ users | rejectattr('admin') | map(attribute='name') | first }}|"
                   "{{ users | selectattr('name', 'equalto', 'b') | list | length }}",
                   ctx),
            "a|b|1");
  EXPECT_EQ(render("{{ [3, 1, 2] | sort }}|{{ ['b', 'A', 'a'] | unique | list }}|"
                   "{{ [1, 2, 3] | first }}{{ [1, 2, 3] | last }}|{{ [1, 2] | reverse | list }}"),
            "[1, 2, 3]|['b', 'A']|13|[2, 1]");
  EXPECT_EQ(
      render("{{ [1, 2, 3, 4] | select('odd') | list }}|{{ ['a', 'b'] | map('upper') | join }}"),
      "[1, 3]|AB");
  EXPECT_EQ(
      render("{{ 'ab' | list }}|{{ {'k': 1} | items | list }}|{{ [-2] | map('abs') | list }}"),
      "['a', 'b']|[('k', 1)]|[2]");
}

TEST(JinjaFilters, NumbersAndDefaults) {
  EXPECT_EQ(render("{{ '3' | int + 1 }}|{{ 'x' | int }}|{{ 2 | float }}|{{ '1.5' | float }}"),
            "4|0|2.0|1.5");
  EXPECT_EQ(render("{{ 2.5 | round }}|{{ 2.567 | round(2) }}|{{ -3 | abs }}|{{ 3 | string }}"),
            "2.0|2.57|3|3");
  EXPECT_EQ(render("{{ missing | default('d') }}|{{ '' | default('d') }}|{{ '' | d('d', true) }}|"
                   "{{ none | default('d') }}"),
            "d||d|None");
}

TEST(JinjaTests, TypeAndValueTests) {
  EXPECT_EQ(render("{{ x is defined }}{{ y is undefined }}{{ none is none }}{{ 'a' is string }}"
                   "{{ 1 is number }}{{ 1.0 is integer }}{{ true is boolean }}{{ {} is mapping }}"
                   "{{ [] is iterable }}{{ 'a' is sequence }}{{ 2 is even }}{{ 3 is odd }}"
                   "{{ 1 is in [1] }}{{ 1 is eq 1 }}{{ x is not none }}{{ 9 is divisibleby 3 }}",
                   {{"x", 1}}),
            "TrueTrueTrueTrueTrueFalseTrueTrueTrueTrueTrueTrueTrueTrueTrueTrue");
  EXPECT_EQ(render("{{ true is true }}{{ 1 is true }}{{ false is false }}{{ 'A' is upper }}"),
            "TrueFalseTrueTrue");
}

TEST(JinjaUndefined, PrintsEmptyButFailsWhenUsed) {
  ordered_json ctx = {{"d", {{"a", 1}}}};
  EXPECT_EQ(render("[{{ missing }}]{{ d.nokey }}{{ d['nokey'] is defined }}", ctx), "[]False");
  EXPECT_EQ(render("{{ missing | length }}{% for x in missing %}x{% endfor %}{{ missing ~ 'a' }}"),
            "0a");
  EXPECT_EQ(render("{{ missing.attr }}"), "ERROR: line 1: 'missing' is undefined");
  EXPECT_EQ(render("{{ d.nokey.deeper }}", ctx),
            "ERROR: line 1: 'dict object' has no attribute 'nokey'");
  EXPECT_TRUE(is_error(render("{{ missing + 1 }}")));
  EXPECT_EQ(render("{{ 'yes' if missing else 'no' }}{{ not missing }}"), "noTrue");
}

TEST(JinjaExpressions, PythonStringificationAndArithmetic) {
  EXPECT_EQ(render("{{ [1, 'a', none, true, 1.5] }}|{{ {'k': \"it's\"} }}|{{ ('x',) }}"),
            "[1, 'a', None, True, 1.5]|{'k': \"it's\"}|('x',)");
  EXPECT_EQ(render("{{ 1 ~ 2.0 ~ none ~ false }}"), "12.0NoneFalse");
  EXPECT_EQ(
      render("{{ 10 / 4 }} {{ 10 // 4 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 4 / 2 }} {{ -7 // 2 }}"),
      "2.5 2 2 1024 2.0 -4");
  EXPECT_EQ(render("{{ 1e3 }} {{ 1.0e-5 }} {{ 123456789012345678.0 }} {{ 0.1 + 0.2 }}"),
            "1000.0 1e-05 1.2345678901234568e+17 0.30000000000000004");
  EXPECT_EQ(render("{{ 'a' + 'b' }}{{ [1] + [2] }}{{ 'ab' * 2 }}{{ 1 + true }}"), "ab[1, 2]abab2");
  EXPECT_EQ(
      render("{{ 1 if false }}|{{ 'a' if 0 else 'b' }}|{{ 1 < 2 < 3 }}|{{ 'b' not in 'abc' }}"),
      "|b|True|False");
  EXPECT_EQ(
      render("{{ 1 == 1.0 }}{{ [1, 2] == [1, 2] }}{{ 'a' != 'a' }}{{ none or 'x' }}{{ 0 and 1 }}"),
      "TrueTrueFalsex0");
  EXPECT_EQ(render("{{ 'line \\'q\\'\\n\\u00e9' }}"), "line 'q'\né");
  EXPECT_EQ(render("{{ '%s-%d' % ('a', 3) }}|{{ '{}+{}'.format(1, 2) }}"), "a-3|1+2");
  EXPECT_EQ(render("{{ 1 + 'x' }}"),
            "ERROR: line 1: unsupported operand type(s) for +: 'int' and 'str'");
  EXPECT_TRUE(is_error(render("{{ 1 / 0 }}")));
}

TEST(JinjaExpressions, SlicingAndSubscripts) {
  EXPECT_EQ(render("{{ 'hello'[1:3] }}|{{ 'hello'[::-1] }}|{{ [1,2,3,4][-2:] }}|"
                   "{{ [1,2,3,4][::-2] }}|{{ 'héllo'[1] }}|{{ [1,2,3][5:] }}|{{ [1,2,3][-1] }}"),
            "el|olleh|[3, 4]|[4, 2]|é|[]|3");
  ordered_json ctx = {{"m", {{"role", "user"}, {"items", "key"}}}};
  EXPECT_EQ(render("{{ m.role }}{{ m['role'] }}{{ m['items'] }}", ctx), "useruserkey");
}

TEST(JinjaExpressions, StringAndDictMethods) {
  EXPECT_EQ(
      render("{{ '  x '.strip() }}|{{ 'a,b'.split(',') }}|{{ 'abc'.startswith('ab') }}|"
             "{{ 'abc'.endswith(('x', 'c')) }}|{{ 'Hi'.upper() }}|{{ 'x-y'.replace('-', '_') }}|"
             "{{ 'a b'.title() }}|{{ '-'.join(['a', 'b']) }}|{{ 'xxhixx'.lstrip('x') }}|"
             "{{ ' a  b '.split() }}|{{ 'a b c'.rsplit(' ', 1) }}"),
      "x|['a', 'b']|True|True|HI|x_y|A B|a-b|hixx|['a', 'b']|['a b', 'c']");
  ordered_json ctx = {{"d", {{"a", 1}, {"b", 2}}}};
  EXPECT_EQ(render("{{ d.get('a') }}|{{ d.get('zz', 'def') }}|{{ d.get('zz') }}|"
                   "{{ d.keys() | list }}|{{ d.values() | list }}|{{ 'a' in d }}",
                   ctx),
            "1|def|None|['a', 'b']|[1, 2]|True");
  EXPECT_EQ(render("{{ dict(a=1) }}|{{ namespace(a=1).a }}"), "{'a': 1}|1");
}

TEST(JinjaExpressions, SandboxRefusesMutation) {
  std::string out = render("{{ [1].append(2) }}");
  EXPECT_NE(out.find("unsafe"), std::string::npos) << out;
}

TEST(JinjaErrors, SyntaxErrorsNameTheLine) {
  Status s = render_status("ok\n\n{% if x %}\nno end");
  EXPECT_EQ(s.code(), StatusCode::kUnprocessable);
  EXPECT_NE(s.message().find("endif"), std::string::npos) << s.message();
  s = render_status("a\n{{ x | nosuchfilter }}");
  EXPECT_NE(s.message().find("line 2"), std::string::npos) << s.message();
  EXPECT_TRUE(is_error(render("{{ x")));
  EXPECT_TRUE(is_error(render("{% nosuchtag %}")));
  EXPECT_TRUE(is_error(render("{{ 'unterminated }}")));
  EXPECT_TRUE(is_error(render("{{ 1 + }}")));
  EXPECT_EQ(render("a\nb\n{{ 1 + 'x' }}").rfind("ERROR: line 3: ", 0), 0u);
}

TEST(JinjaLimits, HostileTemplatesFailCleanly) {
  RenderOptions small;
  small.limits.max_steps = 100000;
  small.limits.max_output_bytes = 1 << 20;
  small.limits.max_call_depth = 50;
  Status s = render_status(
      "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
      ordered_json::object(), small);
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.to_string();
  s = render_status("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
                    ordered_json::object(), small);
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.to_string();
  s = render_status(
      "{% set ns = namespace(s='x') %}{% for i in range(40) %}"
      "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
      ordered_json::object(), small);
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.to_string();
  s = render_status(
      "{% for i in range(30) %}{{ 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' * 1000 }}"
      "{% endfor %}",
      ordered_json::object(), small);
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.to_string();
  EXPECT_FALSE(render_status("{{ 'a' * 1000000000000 }}").is_ok());
  EXPECT_FALSE(render_status("{{ range(1000000) | length }}").is_ok());
  EXPECT_FALSE(render_status("{{ 2 ** 100 }}").is_ok());  // beyond int64: refused, not wrapped
}

TEST(JinjaLimits, DeepNestingIsASyntaxErrorNotACrash) {
  std::string parens = "{{ " + std::string(20000, '(') + "1" + std::string(20000, ')') + " }}";
  EXPECT_FALSE(render_status(parens).is_ok());
  std::string chain = "{{ 1";
  for (int i = 0; i < 20000; ++i) chain += " + 1";
  EXPECT_FALSE(render_status(chain + " }}").is_ok());
  std::string blocks;
  for (int i = 0; i < 5000; ++i) blocks += "{% if true %}";
  EXPECT_FALSE(render_status(blocks).is_ok());
  std::string nots = "{{ ";
  for (int i = 0; i < 20000; ++i) nots += "not ";
  EXPECT_FALSE(render_status(nots + "1 }}").is_ok());
}

TEST(JinjaLimits, CyclicNamespacePrintsWithoutRecursingForever) {
  std::string out = render("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}");
  EXPECT_FALSE(is_error(out));
  EXPECT_EQ(out.rfind("<Namespace {'me': ", 0), 0u) << out;
}

}  // namespace
}  // namespace baton::model
