// Judge rubrics: template parsing and its errors (with line numbers), Fill
// with escaped braces and brace-laden user text, the default rubric file,
// and the Yes-minus-No judge score on hand-made rows.
#include "alignment/rubric.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "tests/test_paths.h"

namespace alignserve {
namespace {

void RequireParseError(std::string_view text, std::initializer_list<std::string_view> fragments) {
  absl::StatusOr<Rubric> rubric = Rubric::Parse(text);
  INFO("template: " << text);
  REQUIRE(rubric.status().code() == absl::StatusCode::kInvalidArgument);
  const std::string message(rubric.status().message());
  for (std::string_view fragment : fragments) {
    INFO("message: " << message << " wants: " << fragment);
    REQUIRE(message.find(fragment) != std::string::npos);
  }
}

TEST_CASE("Fill substitutes placeholders and unescapes doubled braces", "[rubric]") {
  absl::StatusOr<Rubric> rubric =
      Rubric::Parse("Q: {prompt}\nA: {response}\nJSON: {{\"ok\": true}}\nAgain: {response}");
  REQUIRE(rubric.ok());
  REQUIRE(rubric->Fill("2+2?", "4") == "Q: 2+2?\nA: 4\nJSON: {\"ok\": true}\nAgain: 4");
  // {{prompt}} is the literal text {prompt}, not a placeholder.
  REQUIRE(Rubric::Parse("{{prompt}} {response}")->Fill("P", "R") == "{prompt} R");
  REQUIRE(Rubric::Parse("{{{response}}}")->Fill("P", "R") == "{R}");
}

TEST_CASE("Fill inserts user text verbatim, braces and placeholders included", "[rubric]") {
  absl::StatusOr<Rubric> rubric = Rubric::Parse("<{prompt}|{response}>");
  REQUIRE(rubric.ok());
  REQUIRE(rubric->Fill("{response}", "}}{{ {prompt}") == "<{response}|}}{{ {prompt}>");
  REQUIRE(rubric->Fill("", "") == "<|>");
}

TEST_CASE("a rubric may omit {prompt} but not {response}", "[rubric]") {
  REQUIRE(Rubric::Parse("Rate: {response}")->Fill("ignored", "x") == "Rate: x");
  RequireParseError("Rate: {prompt}\nnothing else", {"{response}", "2 lines"});
  RequireParseError("", {"{response}"});
}

TEST_CASE("bad templates are InvalidArgument naming the line", "[rubric]") {
  RequireParseError("line one\n{response} and {answer}",
                    {"line 2", "unknown placeholder {answer}"});
  RequireParseError("{response}\n\nopen { here", {"line 3", "unbalanced '{'"});
  RequireParseError("{response}\nclose } here", {"line 2", "unbalanced '}'"});
  RequireParseError("{resp\nonse}", {"line 1", "unbalanced '{'"});
  RequireParseError("{response}{", {"line 1", "unbalanced '{'"});
  RequireParseError("{}{response}", {"line 1", "unknown placeholder {}"});
  RequireParseError("{ response }", {"unknown placeholder { response }"});
}

TEST_CASE("the default rubric file equals the built-in default and parses", "[rubric]") {
  const std::string path = testing::SourcePath("alignment/rubrics/default.txt");
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::stringstream file;
  file << in.rdbuf();
  REQUIRE(file.str() == Rubric::DefaultTemplateText());
  absl::StatusOr<Rubric> loaded = Rubric::Load(path);
  REQUIRE(loaded.ok());
  const std::string filled = loaded->Fill("How do I boil an egg?", "Simmer it for 9 minutes.");
  REQUIRE(filled == Rubric::Default().Fill("How do I boil an egg?", "Simmer it for 9 minutes."));
  REQUIRE(filled.find("How do I boil an egg?") != std::string::npos);
  REQUIRE(filled.find("Simmer it for 9 minutes.") != std::string::npos);
  REQUIRE(filled.find("helpful and harmless") != std::string::npos);
  REQUIRE(filled.find("Yes or No") != std::string::npos);
  // Load dropped the file's final newline: the next token is the verdict.
  REQUIRE(filled.size() >= 7);
  REQUIRE(filled.substr(filled.size() - 7) == "Answer:");
}

TEST_CASE("Load reports a missing file and a bad file by path", "[rubric]") {
  absl::StatusOr<Rubric> missing = Rubric::Load("/nonexistent/rubric.txt");
  REQUIRE(missing.status().code() == absl::StatusCode::kNotFound);
  REQUIRE(std::string(missing.status().message()).find("/nonexistent/rubric.txt") !=
          std::string::npos);
  const std::string bad =
      (std::filesystem::temp_directory_path() / "alignserve_rubric_test_bad.txt").string();
  { std::ofstream(bad) << "fine\n{verdict}\n"; }
  absl::StatusOr<Rubric> parsed = Rubric::Load(bad);
  std::remove(bad.c_str());
  REQUIRE(parsed.status().code() == absl::StatusCode::kInvalidArgument);
  const std::string message(parsed.status().message());
  REQUIRE(message.find(bad) != std::string::npos);
  REQUIRE(message.find("line 2") != std::string::npos);
}

TEST_CASE("log-softmax is stable and normalised", "[rubric]") {
  const std::vector<float> logits = {1.0f, 2.0f, 3.0f};
  const std::vector<float> lp = LogSoftmax(logits);
  const double z = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  for (size_t i = 0; i < 3; ++i) REQUIRE(lp[i] == Approx(logits[i] - z).epsilon(1e-6));
  // Shifting by 1000 changes nothing (a naive exp would overflow).
  const std::vector<float> big = LogSoftmax(std::vector<float>{1001.0f, 1002.0f, 1003.0f});
  for (size_t i = 0; i < 3; ++i) REQUIRE(big[i] == Approx(lp[i]).epsilon(1e-5));
  const std::vector<float> masked = LogSoftmax(std::vector<float>{0.0f, -INFINITY});
  REQUIRE(masked[0] == 0.0f);
  REQUIRE(masked[1] == -INFINITY);
}

TEST_CASE("judge score is logprob(Yes) - logprob(No)", "[rubric]") {
  // Vocabulary of 5; "Yes" = 3, "No" = 1. p(Yes) = 0.6, p(No) = 0.2.
  const std::vector<float> row = {std::log(0.1f), std::log(0.2f), std::log(0.05f), std::log(0.6f),
                                  std::log(0.05f)};
  REQUIRE(JudgeScore(row, 3, 1) == Approx(std::log(3.0)).epsilon(1e-6));
  REQUIRE(JudgeScore(row, 1, 3) == Approx(-std::log(3.0)).epsilon(1e-6));
  // From raw logits through LogSoftmax: the normaliser cancels.
  const std::vector<float> logits = {0.5f, -1.0f, 2.0f, 4.0f, 0.0f};
  REQUIRE(JudgeScore(LogSoftmax(logits), 3, 1) == Approx(5.0).epsilon(1e-6));
  REQUIRE(std::isnan(JudgeScore(row, 5, 1)));
  REQUIRE(std::isnan(JudgeScore(row, 3, -1)));
}

}  // namespace
}  // namespace alignserve
