// Answer extraction for votes: last_number normalisation, \boxed{} with
// nested braces, and user regexes that can neither throw nor run away.
#include "alignment/answer_extractor.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <string>

namespace alignserve {
namespace {

std::unique_ptr<AnswerExtractor> Make(std::string_view spec) {
  auto extractor = MakeAnswerExtractor(spec);
  REQUIRE(extractor.ok());
  return *std::move(extractor);
}

TEST_CASE("NormalizeNumber makes equal numbers equal strings", "[answer_extractor]") {
  const std::pair<const char*, const char*> cases[] = {
      {"1,000", "1000"},     {"1000", "1000"},
      {"3.50", "3.5"},       {"+5", "5"},
      {"3.0", "3"},          {"-0", "0"},
      {"-0.00", "0"},        {".5", "0.5"},
      {"007", "7"},          {"1,234,567.890", "1234567.89"},
      {"-12.340", "-12.34"}, {"0", "0"},
      {"100", "100"},        {"10.01", "10.01"}};
  for (const auto& [in, want] : cases) {
    INFO(in);
    REQUIRE(NormalizeNumber(in) == std::optional<std::string>(want));
  }
  for (const char* bad : {"", "+", "1,00", "12,3456", "abc", "1.2.3", "1,000,00", "--1"}) {
    INFO(bad);
    REQUIRE_FALSE(NormalizeNumber(bad).has_value());
  }
}

TEST_CASE("last_number returns the last number in the text, normalised", "[answer_extractor]") {
  auto e = Make("last_number");
  REQUIRE(e->spec() == "last_number");
  REQUIRE(e->Extract("So 3 apples plus 4 apples is 7 apples.") == "7");
  REQUIRE(e->Extract("The total is $1,000.00.") == "1000");
  REQUIRE(e->Extract("x = -5") == "-5");
  REQUIRE(e->Extract("pages 3-5") == "5");  // a range, not a negative number
  REQUIRE(e->Extract("answer: 3.50") == "3.5");
  REQUIRE(e->Extract("answer: +42!") == "42");
  REQUIRE(e->Extract("it costs .5 dollars") == "0.5");
  REQUIRE(e->Extract("1, 2, 3") == "3");  // ", 3" is not a thousands group
  REQUIRE(e->Extract("version 1.2.3") == "3");
  REQUIRE_FALSE(e->Extract("no digits here").has_value());
  REQUIRE_FALSE(e->Extract("").has_value());
  // "1,000" and "1000" vote for the same answer.
  REQUIRE(e->Extract("about 1,000") == e->Extract("about 1000.0"));
}

TEST_CASE("boxed returns the last boxed content with nested braces balanced",
          "[answer_extractor]") {
  auto e = Make("boxed");
  REQUIRE(e->Extract("first \\boxed{1} then \\boxed{2}") == "2");
  REQUIRE(e->Extract("\\boxed{\\frac{1}{2}}") == "\\frac{1}{2}");
  REQUIRE(e->Extract("\\boxed{ {a}{b{c}} } end") == "{a}{b{c}}");
  REQUIRE(e->Extract("\\fbox{x+1}") == "x+1");
  REQUIRE(e->Extract("\\boxed{5} and \\fbox{6}") == "6");
  REQUIRE(e->Extract("\\fbox{6} and \\boxed {7}") == "7");
  // Escaped braces are literal and do not close the group.
  REQUIRE(e->Extract("\\boxed{\\{1,2\\}}") == "\\{1,2\\}");
  // A number is normalised like last_number.
  REQUIRE(e->Extract("\\boxed{1,000}") == "1000");
  REQUIRE(e->Extract("\\boxed{3.50}") == "3.5");
  // An unterminated last box (cut by max_tokens) falls back to the one before.
  REQUIRE(e->Extract("\\boxed{4} ... \\boxed{5") == "4");
  REQUIRE(e->Extract("\\boxed{} \\boxed{8}") == "8");
  REQUIRE_FALSE(e->Extract("\\boxed{}").has_value());
  REQUIRE_FALSE(e->Extract("\\boxed 5").has_value());
  REQUIRE_FALSE(e->Extract("no box").has_value());
  REQUIRE_FALSE(e->Extract("\\boxed{{unclosed}").has_value());
}

TEST_CASE("regex returns the first group of the last match", "[answer_extractor]") {
  auto e = Make("regex:answer is (\\d+)");
  REQUIRE(e->spec() == "regex:answer is (\\d+)");
  REQUIRE(e->Extract("the answer is 12, no, the answer is 345.") == "345");
  REQUIRE_FALSE(e->Extract("no answer").has_value());
  auto whole = Make("regex:[A-D]\\)");
  REQUIRE(whole->Extract("A) or maybe C)") == "C)");
  auto optional_group = Make("regex:x(y)?");
  REQUIRE(optional_group->Extract("xy x") == std::nullopt);  // last match has no group 1
  REQUIRE(optional_group->Extract("x xy") == "y");
}

TEST_CASE("regex scans only the last 8192 bytes", "[answer_extractor]") {
  auto e = Make("regex:ANSWER=(\\w+)");
  const std::string early = "ANSWER=early " + std::string(kMaxAnswerRegexScanBytes, '.');
  REQUIRE_FALSE(e->Extract(early).has_value());
  const std::string late = std::string(20000, '.') + "ANSWER=late";
  REQUIRE(e->Extract(late) == "late");
}

TEST_CASE("bad regex specs are InvalidArgument, never an exception", "[answer_extractor]") {
  for (const std::string& spec :
       {std::string("regex:("), std::string("regex:[a-"), std::string("regex:a{2,1}"),
        std::string("regex:"), std::string("regex:(a)\\1"),
        "regex:" + std::string(kMaxAnswerRegexLength + 1, 'a'), std::string("regex:(a{40}){40}"),
        std::string("last"), std::string("Boxed"), std::string("")}) {
    INFO(spec);
    absl::StatusOr<std::unique_ptr<AnswerExtractor>> e = MakeAnswerExtractor(spec);
    REQUIRE(e.status().code() == absl::StatusCode::kInvalidArgument);
  }
  REQUIRE(MakeAnswerExtractor("regex:" + std::string(kMaxAnswerRegexLength, 'a')).ok());
  REQUIRE(MakeAnswerExtractor("regex:(a{32}){32}").ok());
}

TEST_CASE("a catastrophic-backtracking regex stays polynomial", "[answer_extractor]") {
  // (a+)+b on a run of a's with no b is exponential for a backtracking
  // matcher; the breadth-first executor finishes. Its time is reported.
  auto e = Make("regex:(a+)+b");
  // 2,048 a's keeps sanitizer builds fast; the cost grows as length^2.
  const std::string text(2048, 'a');
  const auto start = std::chrono::steady_clock::now();
  REQUIRE_FALSE(e->Extract(text).has_value());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  WARN("(a+)+b over 2048 a's took " << seconds << " s");
  REQUIRE(Make("regex:(a+)+b")->Extract(std::string(200, 'a') + "b") == std::string(200, 'a'));
}

}  // namespace
}  // namespace alignserve
