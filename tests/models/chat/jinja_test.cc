// The Jinja-subset interpreter, feature by feature, against jinja2 as
// transformers configures it. Every expected string below was produced by
// rendering the same template with transformers' own compiled environment
// (transformers.utils.chat_template_utils) in the oracle venv; error cases
// note the exception jinja2 raised.
#include <string>

#include <catch2/catch.hpp>

#include "models/chat/chat_template.h"

namespace alignserve {
namespace {

absl::StatusOr<std::string> RenderWith(const std::string& source, const std::string& context) {
  auto tmpl = ChatTemplate::Create(source);
  if (!tmpl.ok()) return tmpl.status();
  ChatTemplateInputs inputs;
  inputs.extra_context = nlohmann::ordered_json::parse(context);
  return tmpl->Render(inputs);
}

void ExpectRender(const std::string& source, const std::string& context,
                  const std::string& expected) {
  INFO("template: " << source);
  auto out = RenderWith(source, context);
  INFO((out.ok() ? std::string("ok") : out.status().ToString()));
  REQUIRE(out.ok());
  CHECK(*out == expected);
}

void ExpectError(const std::string& source, const std::string& context) {
  INFO("template: " << source);
  auto out = RenderWith(source, context);
  INFO((out.ok() ? "rendered: " + *out : out.status().ToString()));
  REQUIRE_FALSE(out.ok());
  CHECK(out.status().code() == absl::StatusCode::kInvalidArgument);
}

void ExpectRaise(const std::string& source, const std::string& context,
                 const std::string& message) {
  auto out = RenderWith(source, context);
  REQUIRE_FALSE(out.ok());
  CHECK(out.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(out.status().message()) == message);
}

void ExpectParseError(const std::string& source, const std::string& where) {
  INFO("template: " << source);
  auto tmpl = ChatTemplate::Create(source);
  REQUIRE_FALSE(tmpl.ok());
  CHECK(tmpl.status().code() == absl::StatusCode::kInvalidArgument);
  INFO(tmpl.status().message());
  CHECK(std::string(tmpl.status().message()).find(where) != std::string::npos);
}

TEST_CASE("trim_blocks drops the newline after a block tag") {
  ExpectRender("{% if true %}\nyes\n{% endif %}\nend",
               R"J({})J",
               "yes\nend");
}

TEST_CASE("lstrip_blocks drops indentation before a block tag") {
  ExpectRender("<\n  {% if true %}\n  x\n  {% endif %}\n>",
               R"J({})J",
               "<\n  x\n>");
}

TEST_CASE("minus markers strip whitespace on their side") {
  ExpectRender("a  {{- 'b' -}}  \n c {%- if true -%}  d  {%- endif %}",
               R"J({})J",
               R"J(abcd)J");
}

TEST_CASE("plus marker keeps indentation before a block tag") {
  ExpectRender(R"J(  {%+ if true %}x{% endif %})J",
               R"J({})J",
               R"J(  x)J");
}

TEST_CASE("comments vanish and trim like blocks") {
  ExpectRender("a {# note #}\nb\n  {# own line #}\nc{#- x -#}  d",
               R"J({})J",
               "a b\ncd");
}

TEST_CASE("raw blocks are not interpreted") {
  ExpectRender(R"J({% raw %}{{ x }}{% if %}{% endraw %}!)J",
               R"J({})J",
               R"J({{ x }}{% if %}!)J");
}

TEST_CASE("one trailing newline of the source is dropped") {
  ExpectRender("x\n\n",
               R"J({})J",
               "x\n");
}

TEST_CASE("CRLF source newlines become LF") {
  ExpectRender("a\015\nb\015c",
               R"J({})J",
               "a\nb\nc");
}

TEST_CASE("variable tags do not trim the following newline") {
  ExpectRender("{{ 'a' }}\nb",
               R"J({})J",
               "a\nb");
}

TEST_CASE("lstrip_blocks leaves text before a tag on the same line") {
  ExpectRender(R"J(ab {% if true %}c{% endif %})J",
               R"J({})J",
               R"J(ab c)J");
}

TEST_CASE("string escapes") {
  ExpectRender(R"J({{ 'a\n\tb\\c\'d' }}|{{ "it's" }}|{{ '\u00e9\x41' }})J",
               R"J({})J",
               "a\n\tb\\c'd|it's|éA");
}

TEST_CASE("integer arithmetic follows Python") {
  ExpectRender(R"J({{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 2 ** 3 ** 2 }})J",
               R"J({})J",
               R"J(7 3 -4 1 2 1024 64)J");
}

TEST_CASE("true division gives floats") {
  ExpectRender(R"J({{ 7 / 2 }} {{ 4 / 2 }} {{ 10 / 4 }} {{ 1 / 3 }})J",
               R"J({})J",
               R"J(3.5 2.0 2.5 0.3333333333333333)J");
}

TEST_CASE("floats print like Python repr") {
  ExpectRender(R"J({{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1.5e-7 }} {{ 2.0 }} {{ 1e16 }} {{ 123456789012345.6 }} {{ 0.0001 }} {{ -0.5 }})J",
               R"J({})J",
               R"J(0.30000000000000004 1e+20 1.5e-07 2.0 1e+16 123456789012345.6 0.0001 -0.5)J");
}

TEST_CASE("booleans and none print capitalised") {
  ExpectRender(R"J({{ true }} {{ False }} {{ none }} {{ None }} {{ True + 1 }})J",
               R"J({})J",
               R"J(True False None None 2)J");
}

TEST_CASE("tilde concatenates string forms") {
  ExpectRender(R"J({{ 'a' ~ 1 ~ none ~ true ~ 1.5 ~ missing }})J",
               R"J({})J",
               R"J(a1NoneTrue1.5)J");
}

TEST_CASE("lists dicts and tuples print as Python repr") {
  ExpectRender(R"J({{ [1, 'a', none, true, 1.5] }} {{ {'a': 1, 'b': [2]} }} {{ (1, 2) }} {{ (1,) }} {{ ["it's", 'say "hi"'] }} {{ ['\n'] }})J",
               R"J({})J",
               R"J([1, 'a', None, True, 1.5] {'a': 1, 'b': [2]} (1, 2) (1,) ["it's", 'say "hi"'] ['\n'])J");
}

TEST_CASE("comparisons chain and compare numbers across types") {
  ExpectRender(R"J({{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' != 'b' }} {{ [1,2] == [1,2] }} {{ 'abc' < 'abd' }} {{ 2 >= 2 }})J",
               R"J({})J",
               R"J(True False True True True True True True)J");
}

TEST_CASE("and or return operands") {
  ExpectRender(R"J({{ 0 or 'x' }} {{ 1 and 'y' }} {{ not 0 }} {{ none or [] }} {{ '' and 1 }})J",
               R"J({})J",
               R"J(x y True [] )J");
}

TEST_CASE("in and not in") {
  ExpectRender(R"J({{ 'b' in 'abc' }} {{ 2 in [1,2] }} {{ 'k' in {'k':1} }} {{ 3 not in [1] }} {{ 'x' in missing }})J",
               R"J({})J",
               R"J(True True True True False)J");
}

TEST_CASE("conditional expressions") {
  ExpectRender(R"J([{{ 'y' if true else 'n' }}][{{ 'y' if false }}][{{ 'a' if 0 else 'b' if 1 else 'c' }}])J",
               R"J({})J",
               R"J([y][][b])J");
}

TEST_CASE("operator precedence of unary minus and filters") {
  ExpectRender(R"J({{ -3|abs }} {{ 'a' ~ 'b'|upper }} {{ 2 + 3 * 4 ** 2 }} {{ not true or true }} {{ (1 + 2) ~ 3 }})J",
               R"J({})J",
               R"J(3 aB 50 True 33)J");
}

// jinja2: TypeError: unsupported operand type(s) for +: 'int' and 'str'
TEST_CASE("tilde binds tighter than plus") {
  ExpectError(R"J({{ 1 + 2 ~ 3 }})J", R"J({})J");
}

TEST_CASE("adjacent string literals join") {
  ExpectRender(R"J({{ 'a' 'b' "c" }})J",
               R"J({})J",
               R"J(abc)J");
}

TEST_CASE("integer literal forms") {
  ExpectRender(R"J({{ 1_000 }} {{ 0x1F }} {{ 0o17 }} {{ 0b101 }})J",
               R"J({})J",
               R"J(1000 31 15 5)J");
}

TEST_CASE("attribute and subscript lookup") {
  ExpectRender(R"J({{ m.role }} {{ m['content'] }} {{ m.meta.tags[1] }} {{ items[-1] }} {{ items.0 }})J",
               R"J({"m": {"role": "user", "content": "hi", "meta": {"tags": ["a", "b"]}}, "items": [1, 2, 3]})J",
               R"J(user hi b 3 1)J");
}

TEST_CASE("missing attributes and items are undefined and print empty") {
  ExpectRender(R"J([{{ m.missing }}][{{ m['nope'] }}][{{ items[9] }}][{{ none.x }}][{{ 'abc'[7] }}])J",
               R"J({"m": {"a": 1}, "items": [1]})J",
               R"J([][][][][])J");
}

TEST_CASE("dict methods shadow keys on attribute access but not on subscript") {
  ExpectRender(R"J({{ d.items()|list }} {{ d['items'] }} {{ d.get('x', 'dflt') }} {{ d.get('items') }} {{ d.keys()|list }} {{ d.values()|list }})J",
               R"J({"d": {"items": 5, "k": 1}})J",
               R"J([('items', 5), ('k', 1)] 5 dflt 5 ['items', 'k'] [5, 1])J");
}

TEST_CASE("slices") {
  ExpectRender(R"J({{ [1,2,3,4][1:3] }} {{ 'hello'[::-1] }} {{ [1,2,3][::-1] }} {{ 'abcdef'[-2:] }} {{ 'abcdef'[:-1] }} {{ 'héllo'[1:3] }} {{ [0,1,2,3,4,5][::2] }} {{ [0,1,2,3,4,5][4:1:-2] }} {{ (1,2,3)[1:] }})J",
               R"J({})J",
               R"J([2, 3] olleh [3, 2, 1] ef abcde él [0, 2, 4] [4, 2] (2, 3))J");
}

TEST_CASE("undefined values are falsy empty and iterable") {
  ExpectRender(R"J([{{ missing }}][{{ missing is defined }}][{{ missing|length }}][{{ missing|default('d') }}][{% for x in missing %}x{% endfor %}][{{ missing|trim }}][{{ missing is iterable }}])J",
               R"J({})J",
               R"J([][False][0][d][][][True])J");
}

TEST_CASE("if elif else") {
  ExpectRender(R"J({% for n in [1, 2, 3] %}{% if n == 1 %}one{% elif n == 2 %}two{% else %}many{% endif %},{% endfor %})J",
               R"J({})J",
               R"J(one,two,many,)J");
}

TEST_CASE("loop variables") {
  ExpectRender(R"J({% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}|{% endfor %})J",
               R"J({})J",
               R"J(1032TrueFalse3|2121FalseFalse3|3210FalseTrue3|)J");
}

TEST_CASE("loop previtem and nextitem") {
  ExpectRender(R"J({% for x in [1,2,3] %}({{ loop.previtem }},{{ loop.nextitem }}){% endfor %})J",
               R"J({})J",
               R"J((,2)(1,3)(2,))J");
}

TEST_CASE("for else runs when nothing was iterated") {
  ExpectRender(R"J({% for x in [] %}x{% else %}empty{% endfor %}{% for x in [1] if x > 5 %}x{% else %}filtered{% endfor %})J",
               R"J({})J",
               R"J(emptyfiltered)J");
}

TEST_CASE("inline if filters before loop length") {
  ExpectRender(R"J({% for x in range(10) if x is odd %}{{ x }}/{{ loop.length }},{% endfor %})J",
               R"J({})J",
               R"J(1/5,3/5,5/5,7/5,9/5,)J");
}

TEST_CASE("tuple unpacking over items") {
  ExpectRender(R"J({% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k, v in d|items %}{{ k }}{{ v }}{% endfor %}{% for a, b in [[1, 2], (3, 4)] %}{{ a + b }}{% endfor %})J",
               R"J({"d": {"z": 1, "a": 2}})J",
               R"J(z=1;a=2;z1a237)J");
}

TEST_CASE("iterating a dict gives keys in insertion order") {
  ExpectRender(R"J({% for k in d %}{{ k }}{% endfor %})J",
               R"J({"d": {"z": 1, "a": 2, "m": 3}})J",
               R"J(zam)J");
}

TEST_CASE("break and continue") {
  ExpectRender(R"J({% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %})J",
               R"J({})J",
               R"J(0134)J");
}

TEST_CASE("assignments inside a loop do not leak out") {
  ExpectRender(R"J({% set x = 1 %}{% for i in [1,2] %}{% set x = x + 1 %}{{ x }}{% endfor %}{{ x }})J",
               R"J({})J",
               R"J(221)J");
}

TEST_CASE("assignments inside if blocks are visible after them") {
  ExpectRender(R"J({% if true %}{% set y = 5 %}{% endif %}{{ y }})J",
               R"J({})J",
               R"J(5)J");
}

TEST_CASE("namespace carries values out of loops") {
  ExpectRender(R"J({% set ns = namespace(c=0, s='') %}{% for i in [1,2,3] %}{% set ns.c = ns.c + i %}{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.c }} {{ ns.s }})J",
               R"J({})J",
               R"J(6 123)J");
}

TEST_CASE("block set captures rendered text") {
  ExpectRender(R"J({% set s %}a{{ 1 }}b{% endset %}[{{ s }}]{% set t | upper %}ab{% endset %}{{ t }})J",
               R"J({})J",
               R"J([a1b]AB)J");
}

TEST_CASE("tuple assignment") {
  ExpectRender(R"J({% set a, b = 1, 'two' %}{{ a }}{{ b }})J",
               R"J({})J",
               R"J(1two)J");
}

TEST_CASE("macros with defaults and keywords") {
  ExpectRender(R"J({% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Bob') }} {{ greet('Al', punct='?') }} {{ greet(name='Cy') }})J",
               R"J({})J",
               R"J(Hi Bob! Hi Al? Hi Cy!)J");
}

TEST_CASE("macros see template variables and recurse") {
  ExpectRender(R"J({% set sep = '-' %}{% macro count(n) %}{{ n }}{% if n > 0 %}{{ sep }}{{ count(n - 1) }}{% endif %}{% endmacro %}{{ count(3) }})J",
               R"J({})J",
               R"J(3-2-1-0)J");
}

TEST_CASE("call blocks pass caller") {
  ExpectRender(R"J({% macro wrap() %}[{{ caller() }}]{% endmacro %}{% call wrap() %}inner{% endcall %}{% macro each(items) %}{% for i in items %}{{ caller(i) }}{% endfor %}{% endmacro %}{% call(x) each([1,2]) %}<{{ x }}>{% endcall %})J",
               R"J({})J",
               R"J([inner]<1><2>)J");
}

TEST_CASE("filter blocks") {
  ExpectRender(R"J({% filter upper %}abc{{ 'd' }}{% endfilter %}{% filter trim | upper %}  x  {% endfilter %})J",
               R"J({})J",
               R"J(ABCDX)J");
}

TEST_CASE("with blocks scope their variables") {
  ExpectRender(R"J({% with a = 1, b = 2 %}{{ a + b }}{% endwith %}[{{ a }}])J",
               R"J({})J",
               R"J(3[])J");
}

TEST_CASE("generation blocks render their body") {
  ExpectRender(R"J({% generation %}gen{% endgeneration %})J",
               R"J({})J",
               R"J(gen)J");
}

TEST_CASE("trim and length") {
  ExpectRender("[{{ '  a b \n'|trim }}][{{ 'xxaxx'|trim('x') }}][{{ 'héllo'|length }}][{{ [1,2]|count }}][{{ {'a':1}|length }}]",
               R"J({})J",
               R"J([a b][a][5][2][1])J");
}

TEST_CASE("case filters") {
  ExpectRender(R"J({{ 'hello wOrld'|upper }} {{ 'HeLLo'|lower }} {{ 'hello big-world (x)'|title }} {{ 'hELLO there'|capitalize }})J",
               R"J({})J",
               R"J(HELLO WORLD hello Hello Big-World (X) Hello there)J");
}

TEST_CASE("default filter") {
  ExpectRender(R"J({{ missing|default('a') }} {{ ''|default('b') }} {{ ''|default('c', true) }} {{ none|d('e') }} {{ 0|default('f', boolean=true) }})J",
               R"J({})J",
               R"J(a  c None f)J");
}

TEST_CASE("first last join") {
  ExpectRender(R"J({{ [3,4,5]|first }} {{ [3,4,5]|last }} {{ 'abc'|first }} {{ [1,'a',none]|join(', ') }} {{ users|join('/', attribute='name') }} {{ []|first }})J",
               R"J({"users": [{"name": "a"}, {"name": "b"}]})J",
               R"J(3 5 a 1, a, None a/b )J");
}

TEST_CASE("replace and string") {
  ExpectRender(R"J({{ 'aaa'|replace('a', 'b') }} {{ 'aaa'|replace('a', 'b', 2) }} {{ 123|string ~ 'x' }} {{ [1]|string }})J",
               R"J({})J",
               R"J(bbb bba 123x [1])J");
}

TEST_CASE("int and float conversions") {
  ExpectRender(R"J({{ '42'|int }} {{ '3.7'|int }} {{ 'x'|int }} {{ 'x'|int(7) }} {{ 3.9|int }} {{ '2.5'|float }} {{ 'y'|float }} {{ 4|float }} {{ true|int }})J",
               R"J({})J",
               R"J(42 3 0 7 3 2.5 0.0 4.0 1)J");
}

TEST_CASE("list and items") {
  ExpectRender(R"J({{ 'ab'|list }} {{ d|items|list }} {{ d|list }})J",
               R"J({"d": {"k": "v", "n": 1}})J",
               R"J(['a', 'b'] [('k', 'v'), ('n', 1)] ['k', 'n'])J");
}

TEST_CASE("selectattr and rejectattr") {
  ExpectRender(R"J({{ msgs|selectattr('role', 'equalto', 'user')|map(attribute='content')|list }} {{ msgs|rejectattr('role', 'equalto', 'user')|list|length }} {{ msgs|selectattr('flag')|list|length }} {{ msgs|selectattr('role', '==', 'system')|list }})J",
               R"J({"msgs": [{"role": "user", "content": "a", "flag": true}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]})J",
               R"J(['a', 'c'] 1 1 [])J");
}

TEST_CASE("map select and reject") {
  ExpectRender(R"J({{ ['a','b']|map('upper')|list }} {{ range(6)|select('odd')|list }} {{ range(6)|reject('even')|list }} {{ [0, 1, '', 'x']|select|list }} {{ msgs|map(attribute='x', default='?')|list }})J",
               R"J({"msgs": [{"x": 1}, {}]})J",
               R"J(['A', 'B'] [1, 3, 5] [1, 3, 5] [1, 'x'] [1, '?'])J");
}

TEST_CASE("indent") {
  ExpectRender("[{{ 'a\nb\n\nc'|indent }}][{{ 'a\nb'|indent(2, true) }}][{{ 'a\n\nb'|indent(width=1, blank=true) }}][{{ 'a\nb'|indent('> ') }}]",
               R"J({})J",
               "[a\n    b\n\n    c][  a\n  b][a\n \n b][a\n> b]");
}

TEST_CASE("unique reverse sort") {
  ExpectRender(R"J({{ ['a','A','b','a']|unique|list }} {{ [1,2,3]|reverse|list }} {{ 'abc'|reverse }} {{ ['b','C','a']|sort }} {{ [3,1,2]|sort(reverse=true) }} {{ ['b','C','a']|sort(case_sensitive=true) }} {{ users|sort(attribute='age')|map(attribute='n')|join }})J",
               R"J({"users": [{"n": "x", "age": 30}, {"n": "y", "age": 20}]})J",
               R"J(['a', 'b'] [3, 2, 1] cba ['a', 'b', 'C'] [3, 2, 1] ['C', 'a', 'b'] yx)J");
}

TEST_CASE("round abs wordcount") {
  ExpectRender(R"J({{ 2.5|round }} {{ 3.5|round }} {{ 3.14159|round(2) }} {{ 1.7|round(0, 'floor') }} {{ 1.2|round(0, 'ceil') }} {{ 7|round }} {{ -3|abs }} {{ -2.5|abs }} {{ 'hello big world_x 1'|wordcount }})J",
               R"J({})J",
               R"J(2.0 4.0 3.14 1.0 2.0 7 3 2.5 4)J");
}

TEST_CASE("tojson matches transformers json.dumps settings") {
  ExpectRender("{{ d|tojson }}\n{{ d|tojson(indent=2) }}\n{{ 'é \"q\" </s> \n'|tojson }} {{ [1, 2.5, none, true]|tojson }} {{ {}|tojson }} {{ []|tojson(indent=4) }} {{ d|tojson(sort_keys=true) }}",
               R"J({"d": {"z": 1, "a": [1, {"b": null}], "s": "x\ty"}})J",
               "{\"z\": 1, \"a\": [1, {\"b\": null}], \"s\": \"x\\ty\"}\n{\n  \"z\": 1,\n  \"a\": [\n    1,\n    {\n      \"b\": null\n    }\n  ],\n  \"s\": \"x\\ty\"\n}\n\"é \\\"q\\\" </s> \\n\" [1, 2.5, null, true] {} [] {\"a\": [1, {\"b\": null}], \"s\": \"x\\ty\", \"z\": 1}");
}

TEST_CASE("safe and escape") {
  ExpectRender(R"J({{ '<b>'|safe }} {{ '<a href="x">&'|escape }})J",
               R"J({})J",
               R"J(<b> &lt;a href=&#34;x&#34;&gt;&amp;)J");
}

TEST_CASE("min max sum") {
  ExpectRender(R"J({{ [3,1,2]|min }} {{ [3,1,2]|max }} {{ [1,2,3]|sum }} {{ ['b','A']|max }})J",
               R"J({})J",
               R"J(1 3 6 b)J");
}

TEST_CASE("type tests") {
  ExpectRender(R"J({{ 'a' is string }} {{ 1 is number }} {{ true is number }} {{ 1 is integer }} {{ 1.0 is integer }} {{ 1.0 is float }} {{ {} is mapping }} {{ [] is mapping }} {{ 'a' is iterable }} {{ 1 is iterable }} {{ [] is sequence }} {{ true is boolean }} {{ 1 is boolean }})J",
               R"J({})J",
               R"J(True True True True False True True False True False True True False)J");
}

TEST_CASE("value tests") {
  ExpectRender(R"J({{ none is none }} {{ 0 is none }} {{ true is true }} {{ 1 is true }} {{ false is false }} {{ x is defined }} {{ y is undefined }} {{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 'a' is equalto 'a' }} {{ 1 is eq 2 }} {{ 2 is gt 1 }} {{ 'A' is upper }} {{ 'a' is lower }} {{ x is not none }})J",
               R"J({"x": 1})J",
               R"J(True False True False True True True True True True True False True True True True)J");
}

TEST_CASE("tests accept arguments without parentheses") {
  ExpectRender(R"J({{ 'user' is equalto 'user' }} {{ 5 is divisibleby(5) }} {{ 2 is in [1, 2] }})J",
               R"J({})J",
               R"J(True True True)J");
}

TEST_CASE("strip methods") {
  ExpectRender("[{{ '  a  '.strip() }}][{{ 'xxaxx'.lstrip('x') }}][{{ 'xxaxx'.rstrip('x') }}][{{ '\t a\n'.lstrip() }}]",
               R"J({})J",
               "[a][axx][xxa][a\n]");
}

TEST_CASE("split methods") {
  ExpectRender(R"J({{ 'a,b,,c'.split(',') }} {{ ' a  b c '.split() }} {{ 'a,b,c'.split(',', 1) }} {{ 'a b c'.split(none, 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ 'x</think>y</think>z'.split('</think>')[-1] }})J",
               R"J({})J",
               R"J(['a', 'b', '', 'c'] ['a', 'b', 'c'] ['a', 'b,c'] ['a', 'b c'] ['a,b', 'c'] z)J");
}

TEST_CASE("startswith endswith") {
  ExpectRender(R"J({{ 'hello'.startswith('he') }} {{ 'hello'.endswith('lo') }} {{ 'hello'.startswith(('x', 'h')) }} {{ 'hello'.endswith('x') }})J",
               R"J({})J",
               R"J(True True True False)J");
}

TEST_CASE("case and replace methods") {
  ExpectRender(R"J({{ 'ab'.upper() }} {{ 'AB'.lower() }} {{ 'aXa'.replace('a', 'b') }} {{ 'hello world'.title() }} {{ 'hELLO'.capitalize() }})J",
               R"J({})J",
               R"J(AB ab bXb Hello World Hello)J");
}

TEST_CASE("format method") {
  ExpectRender(R"J({{ '{} and {}'.format(1, 'two') }} {{ '{0}{0}{name}'.format('x', name='y') }} {{ '{{literal}}'.format() }})J",
               R"J({})J",
               R"J(1 and two xxy {literal})J");
}

TEST_CASE("range") {
  ExpectRender(R"J({{ range(3)|list }} {{ range(1, 5, 2)|list }} {{ range(5, 0, -2)|list }} {{ range(0)|list }})J",
               R"J({})J",
               R"J([0, 1, 2] [1, 3] [5, 3, 1] [])J");
}

TEST_CASE("dict global builds a mapping") {
  ExpectRender(R"J({{ dict(a=1, b='x') }} {{ dict(a=1).a }})J",
               R"J({})J",
               R"J({'a': 1, 'b': 'x'} 1)J");
}

TEST_CASE("raise_exception") {
  ExpectRaise(R"J({{ raise_exception('boom: ' ~ 1) }})J", R"J({})J", R"J(boom: 1)J");
}

// jinja2: TypeError: unsupported operand type(s) for +: 'int' and 'str'
TEST_CASE("adding a string to a number is an error") {
  ExpectError(R"J({{ 1 + 'a' }})J", R"J({})J");
}

// jinja2: TypeError: can only concatenate str (not "list") to str
TEST_CASE("adding a list to a string is an error") {
  ExpectError(R"J({{ 'a' + [1] }})J", R"J({})J");
}

// jinja2: ZeroDivisionError: division by zero
TEST_CASE("dividing by zero is an error") {
  ExpectError(R"J({{ 1 / 0 }})J", R"J({})J");
}

// jinja2: UndefinedError: 'missing' is undefined
TEST_CASE("attribute of undefined is an error") {
  ExpectError(R"J({{ missing.attr }})J", R"J({})J");
}

// jinja2: UndefinedError: 'missing' is undefined
TEST_CASE("arithmetic on undefined is an error") {
  ExpectError(R"J({{ missing + 1 }})J", R"J({})J");
}

// jinja2: UndefinedError: 'nothing' is undefined
TEST_CASE("calling undefined is an error") {
  ExpectError(R"J({{ nothing() }})J", R"J({})J");
}

// jinja2: TypeError: Object of type Undefined is not JSON serializable
TEST_CASE("tojson of undefined is an error") {
  ExpectError(R"J({{ missing|tojson }})J", R"J({})J");
}

// jinja2: TypeError: '<' not supported between instances of 'str' and 'int'
TEST_CASE("comparing string with number is an error") {
  ExpectError(R"J({{ 'a' < 1 }})J", R"J({})J");
}

// jinja2: TypeError: 'int' object is not iterable
TEST_CASE("iterating a number is an error") {
  ExpectError(R"J({% for x in 5 %}{% endfor %})J", R"J({})J");
}

// jinja2: TemplateRuntimeError: cannot assign attribute on non-namespace object
TEST_CASE("assigning to a non-namespace attribute is an error") {
  ExpectError(R"J({% set d = {} %}{% set d.x = 1 %})J", R"J({})J");
}

// jinja2: ValueError: too many values to unpack (expected 2)
TEST_CASE("unpacking the wrong number of values is an error") {
  ExpectError(R"J({% for a, b in [[1, 2, 3]] %}{% endfor %})J", R"J({})J");
}

// jinja2: SecurityError: access to attribute 'append' of 'list' object is unsafe.
TEST_CASE("list append is blocked by the sandbox") {
  ExpectError(R"J({% set l = [] %}{{ l.append(1) }})J", R"J({})J");
}

// jinja2: OverflowError: Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).
TEST_CASE("range above the sandbox maximum is an error") {
  ExpectError(R"J({{ range(200000)|length }})J", R"J({})J");
}

// jinja2 rejects all of these when compiling (TemplateSyntaxError or
// TemplateAssertionError); the message names the position.
TEST_CASE("parse errors name the line and column") {
  ExpectParseError("line one\n{% if x %}never closed", "line 2");
  ExpectParseError("{{ 'unterminated }}", "line 1, column 4");
  ExpectParseError("ok\n\n  {% frobnicate %}", "line 3, column 6");
  ExpectParseError("{% for x in y %}{% endif %}", "line 1");
  ExpectParseError("{{ (1 + 2 }}", "line 1");
  ExpectParseError("{{ 1 + }}", "line 1, column 8");
  ExpectParseError("{# never closed", "line 1, column 1");
  ExpectParseError("{{ x }", "line 1");
}

TEST_CASE("unknown filters and tests fail at creation unless inside an if, as in jinja2") {
  ExpectParseError("{{ x|no_such_filter }}", "no filter named 'no_such_filter'");
  ExpectParseError("{{ x is no_such_test }}", "no test named 'no_such_test'");
  ExpectParseError("{% if x %}{% for i in y %}{{ i|no_such_filter }}{% endfor %}{% endif %}",
                   "no filter named");
  // jinja2 defers these to render time: an untaken branch renders fine.
  ExpectRender("{% if false %}{{ x|no_such_filter }}{% endif %}ok", "{}", "ok");
  ExpectRender("{{ x|no_such_filter if false else 'ok' }}", "{}", "ok");
  ExpectError("{% if true %}{{ x|no_such_filter }}{% endif %}ok", "{}");
}

TEST_CASE("template errors at render time name the line") {
  auto out = RenderWith("first\n{{ 1 + 'a' }}", "{}");
  REQUIRE_FALSE(out.ok());
  CHECK(std::string(out.status().message()).find("line 2") != std::string::npos);
}

TEST_CASE("bos and eos are undefined when the tokenizer has none") {
  auto tmpl = ChatTemplate::Create("[{{ bos_token is defined }}{{ eos_token }}]");
  REQUIRE(tmpl.ok());
  ChatTemplateInputs inputs;
  inputs.eos_token = "</s>";
  auto out = tmpl->Render(inputs);
  REQUIRE(out.ok());
  CHECK(*out == "[False</s>]");
}

TEST_CASE("tools and documents are none unless given, as transformers passes them") {
  auto tmpl = ChatTemplate::Create(
      "{{ tools is defined }} {{ tools is none }} {{ documents is none }} {{ add_generation_prompt }}");
  REQUIRE(tmpl.ok());
  ChatTemplateInputs inputs;
  inputs.add_generation_prompt = false;
  auto out = tmpl->Render(inputs);
  REQUIRE(out.ok());
  CHECK(*out == "True True True False");
}

TEST_CASE("reasoning fields are aliased as transformers does") {
  // {"thinking": r, **message, "reasoning_content": r}
  auto tmpl = ChatTemplate::Create("{{ messages[0]|tojson }}");
  REQUIRE(tmpl.ok());
  ChatTemplateInputs inputs;
  inputs.messages = nlohmann::ordered_json::parse(
      R"([{"role": "assistant", "content": "4", "reasoning": "add"}])");
  auto out = tmpl->Render(inputs);
  REQUIRE(out.ok());
  CHECK(*out ==
        R"({"thinking": "add", "role": "assistant", "content": "4", "reasoning": "add", "reasoning_content": "add"})");
}

}  // namespace
}  // namespace alignserve
