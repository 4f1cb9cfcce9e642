// Hostile templates (endless loops, runaway recursion, exponential growth,
// absurd nesting) end with the error naming the limit they hit, quickly,
// without hanging or crashing the process.
#include <chrono>
#include <string>

#include <catch2/catch.hpp>

#include "models/chat/chat_template.h"

namespace alignserve {
namespace {

using Clock = std::chrono::steady_clock;

struct Outcome {
  absl::Status status;
  double seconds;
};

// The wall-clock limit is raised so that each test sees the limit it aims at
// even on a slow (sanitizer) build; the deadline has its own test.
ChatTemplateLimits Generous() {
  ChatTemplateLimits limits;
  limits.max_time = std::chrono::seconds(30);
  return limits;
}

Outcome RenderTimed(const std::string& source, ChatTemplateLimits limits = Generous()) {
  auto tmpl = ChatTemplate::Create(source, limits);
  if (!tmpl.ok()) return {tmpl.status(), 0};
  auto start = Clock::now();
  auto out = tmpl->Render(ChatTemplateInputs{});
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return {out.ok() ? absl::OkStatus() : out.status(), seconds};
}

bool Mentions(const absl::Status& status, const std::string& word) {
  return std::string(status.message()).find(word) != std::string::npos;
}

TEST_CASE("nested huge loops hit max_steps") {
  Outcome o = RenderTimed(
      "{% for i in range(100000) %}{% for j in range(100000) %}{{ '' }}{% endfor %}{% endfor %}");
  CHECK(o.status.code() == absl::StatusCode::kResourceExhausted);
  CHECK(Mentions(o.status, "max_steps"));
  CHECK(o.seconds < 5.0);
}

TEST_CASE("unbounded macro recursion hits max_depth") {
  Outcome o = RenderTimed("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
  CHECK(o.status.code() == absl::StatusCode::kResourceExhausted);
  CHECK(Mentions(o.status, "max_depth"));
  CHECK(o.seconds < 5.0);
}

TEST_CASE("mutual recursion through caller hits max_depth") {
  Outcome o = RenderTimed(
      "{% macro f() %}{% call f() %}x{% endcall %}{{ caller() }}{% endmacro %}"
      "{% call f() %}y{% endcall %}");
  CHECK(o.status.code() == absl::StatusCode::kResourceExhausted);
  CHECK(Mentions(o.status, "max_depth"));
}

TEST_CASE("exponential string doubling hits max_output_bytes") {
  Outcome o = RenderTimed(
      "{% set ns = namespace(s='ab') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}"
      "{% endfor %}{{ ns.s }}");
  CHECK(o.status.code() == absl::StatusCode::kResourceExhausted);
  CHECK(Mentions(o.status, "max_output_bytes"));
  CHECK(o.seconds < 5.0);
}

TEST_CASE("string repetition by a huge count fails before allocating") {
  Outcome o = RenderTimed("{{ 'x' * 1000000000000000 }}");
  CHECK(o.status.code() == absl::StatusCode::kResourceExhausted);
  CHECK(o.seconds < 1.0);
  Outcome list = RenderTimed("{{ ([1, 2] * 1000000000000000)|length }}");
  CHECK(list.status.code() == absl::StatusCode::kResourceExhausted);
}

TEST_CASE("exponential list doubling hits a limit") {
  Outcome o = RenderTimed(
      "{% set ns = namespace(l=[1]) %}{% for i in range(100) %}{% set ns.l = ns.l + ns.l %}"
      "{% endfor %}{{ ns.l|length }}");
  CHECK(o.status.code() == absl::StatusCode::kResourceExhausted);
  CHECK(o.seconds < 5.0);
}

TEST_CASE("output flooding hits max_output_bytes") {
  Outcome o = RenderTimed("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}");
  CHECK(o.status.code() == absl::StatusCode::kResourceExhausted);
  CHECK(Mentions(o.status, "max_output_bytes"));
}

TEST_CASE("a slow template hits the wall-clock deadline") {
  ChatTemplateLimits limits;
  limits.max_steps = int64_t{1} << 60;
  limits.max_time = std::chrono::milliseconds(50);
  Outcome o = RenderTimed(
      "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}",
      limits);
  CHECK(o.status.code() == absl::StatusCode::kDeadlineExceeded);
  CHECK(Mentions(o.status, "max_time"));
  CHECK(o.seconds < 1.0);
}

TEST_CASE("power with a huge exponent does not loop") {
  Outcome one = RenderTimed("{{ 1 ** 1000000000000000000 }}");
  CHECK(one.status.ok());
  CHECK(one.seconds < 0.5);
  Outcome two = RenderTimed("{{ 2 ** 1000000000000000000 }}");
  CHECK(two.status.code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("deeply nested values are refused instead of overflowing the stack") {
  Outcome o = RenderTimed(
      "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = [ns.l] %}"
      "{% endfor %}{{ ns.l|tojson }}");
  CHECK(o.status.code() == absl::StatusCode::kResourceExhausted);
  CHECK(Mentions(o.status, "nests too deeply"));
}

TEST_CASE("deeply nested input JSON is refused") {
  auto tmpl = ChatTemplate::Create("{{ messages }}");
  REQUIRE(tmpl.ok());
  std::string deep(100000, '[');
  deep += std::string(100000, ']');
  ChatTemplateInputs inputs;
  inputs.extra_context["deep"] = nlohmann::ordered_json::parse(deep);
  auto out = tmpl->Render(inputs);
  CHECK(out.status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("absurdly nested template source is a parse error, not a crash") {
  std::string parens = "{{ " + std::string(100000, '(') + "1" + std::string(100000, ')') + " }}";
  Outcome o = RenderTimed(parens);
  CHECK(o.status.code() == absl::StatusCode::kInvalidArgument);
  CHECK(Mentions(o.status, "nests too deeply"));

  std::string ifs;
  for (int i = 0; i < 20000; ++i) ifs += "{% if true %}";
  for (int i = 0; i < 20000; ++i) ifs += "{% endif %}";
  Outcome nested = RenderTimed(ifs);
  CHECK(nested.status.code() == absl::StatusCode::kInvalidArgument);

  std::string nots = "{{ " ;
  for (int i = 0; i < 100000; ++i) nots += "not ";
  nots += "1 }}";
  CHECK(RenderTimed(nots).status.code() == absl::StatusCode::kInvalidArgument);
  std::string negs = "{{ " + std::string(100000, '-') + "1 }}";
  CHECK(RenderTimed(negs).status.code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("a namespace holding itself prints and is released without hanging") {
  Outcome o = RenderTimed("{% set ns = namespace(a=1) %}{% set ns.me = ns %}{{ ns }}");
  CHECK(o.status.ok());
}

TEST_CASE("ranges beyond the sandbox maximum are refused") {
  Outcome o = RenderTimed("{{ range(1000000000)|length }}");
  CHECK(o.status.code() == absl::StatusCode::kInvalidArgument);
  CHECK(Mentions(o.status, "MAX_RANGE"));
}

TEST_CASE("tight limits apply to ordinary templates too") {
  ChatTemplateLimits limits = Generous();
  limits.max_output_bytes = 10;
  Outcome o = RenderTimed("{{ 'hello world, this is long' }}", limits);
  CHECK(o.status.code() == absl::StatusCode::kResourceExhausted);
  limits = Generous();
  limits.max_steps = 50;
  o = RenderTimed("{% for i in range(100) %}{{ i }}{% endfor %}", limits);
  CHECK(o.status.code() == absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace alignserve
