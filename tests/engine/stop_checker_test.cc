// StopChecker, table-driven: for every case, what each token's Append
// streams, where the sequence finishes and why, and the completion's text.
// Then the real SmolLM2 tokenizer and IncrementalDetokenizer end to end.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "engine/stop_checker.h"
#include "models/formats/gguf_file.h"
#include "models/model_text.h"
#include "models/tokenizer/incremental_detokenizer.h"
#include "tests/test_paths.h"

namespace alignserve {
namespace {

constexpr int32_t kEos = 0;
constexpr int32_t kStopId = 9;
constexpr int32_t kText = 5;  // any ordinary token

struct Step {
  int32_t token;
  std::string delta;
  std::string streamed;  // what Append must return for this step
};

struct Case {
  std::string name;
  SamplingParams params;
  std::vector<Step> steps;  // the last one finishes, unless reason is kNone
  FinishReason reason;
  std::string output;  // the completion's whole text
  std::optional<std::string> stop_string = std::nullopt;
  std::optional<int32_t> stop_token = std::nullopt;
  int32_t prompt_len = 4;
  int32_t max_model_len = 1000;
};

SamplingParams Params(std::vector<std::string> stop, bool include = false, int max_tokens = 50) {
  SamplingParams p;
  p.stop = std::move(stop);
  p.include_stop_str_in_output = include;
  p.max_tokens = max_tokens;
  p.stop_token_ids = {kStopId};
  return p;
}

SamplingParams WithMinTokens(SamplingParams p, int min_tokens) {
  p.min_tokens = min_tokens;
  return p;
}

SamplingParams IgnoringEos(SamplingParams p) {
  p.ignore_eos = true;
  return p;
}

std::vector<Case> Cases() {
  return {
      {"stop string split across three tokens", Params({"END"}),
       {{kText, "abc E", "abc "}, {kText, "N", ""}, {kText, "D tail", ""}},
       FinishReason::kStop, "abc ", "END"},
      {"split stop string kept with include_stop_str_in_output", Params({"END"}, true),
       {{kText, "abc E", "abc E"}, {kText, "N", "N"}, {kText, "D tail", "D"}},
       FinishReason::kStop, "abc END", "END"},
      {"held-back prefix released once it cannot be a stop string", Params({"abc"}),
       {{kText, "xab", "x"}, {kText, "d", "abd"}, {kText, "a", ""}, {kText, "z", "az"}},
       FinishReason::kNone, "xabdaz"},
      {"overlapping stops: the one that ends first wins", Params({"abc", "ab"}),
       {{kText, "xa", "x"}, {kText, "bc", ""}}, FinishReason::kStop, "x", "ab"},
      {"overlapping stops: a held prefix of one completes another", Params({"abc", "bd"}),
       {{kText, "ab", ""}, {kText, "d!", "a"}}, FinishReason::kStop, "a", "bd"},
      {"overlapping stops ending together: the longer wins", Params({"bc", "abc"}, true),
       {{kText, "xabcz", "xabc"}}, FinishReason::kStop, "xabc", "abc"},
      {"first token hits a stop string", Params({"Hel"}),
       {{kText, "Hello", ""}}, FinishReason::kStop, "", "Hel"},
      {"first token hits a stop string, included", Params({"Hel"}, true),
       {{kText, "Hello", "Hel"}}, FinishReason::kStop, "Hel", "Hel"},
      {"include_stop_str_in_output finds a stop starting in released text",
       Params({"xyz"}, true),
       {{kText, "ax", "ax"}, {kText, "y", "y"}, {kText, "z and more", "z"}},
       FinishReason::kStop, "axyz", "xyz"},
      {"multi-byte stop string held across the boundary", Params({"\u00e9!"}),
       {{kText, "caf", "caf"}, {kText, "\u00e9", ""}, {kText, "!", ""}},
       FinishReason::kStop, "caf", "\u00e9!"},
      {"multi-byte held text released whole", Params({"\u00e9!"}),
       {{kText, "caf\u00e9", "caf"}, {kText, "s", "\u00e9s"}},
       FinishReason::kNone, "caf\u00e9s"},
      {"four-byte stop string in the middle of a token", Params({"\U0001D518"}),
       {{kText, "ok\U0001D518bye", "ok"}}, FinishReason::kStop, "ok", "\U0001D518"},
      {"EOS stops and its text is dropped", Params({}),
       {{kText, "hi", "hi"}, {kEos, "</s>", ""}}, FinishReason::kStop, "hi"},
      {"EOS releases held-back text", Params({"abc"}),
       {{kText, "xab", "x"}, {kEos, "", "ab"}}, FinishReason::kStop, "xab"},
      {"stop token id stops and names itself", Params({}),
       {{kText, "hi", "hi"}, {kStopId, "<stop>", ""}}, FinishReason::kStop, "hi",
       std::nullopt, kStopId},
      {"stop token text kept with include_stop_str_in_output", Params({}, true),
       {{kText, "hi", "hi"}, {kStopId, "<stop>", "<stop>"}}, FinishReason::kStop, "hi<stop>",
       std::nullopt, kStopId},
      {"ignore_eos runs through EOS to max_tokens", IgnoringEos(Params({}, false, 3)),
       {{kEos, "a", "a"}, {kEos, "b", "b"}, {kEos, "c", "c"}}, FinishReason::kLength, "abc"},
      {"max_tokens finishes with length and releases held text", Params({"c!"}, false, 3),
       {{kText, "a", "a"}, {kText, "b", "b"}, {kText, "c", "c"}}, FinishReason::kLength, "abc"},
      {"EOS on the last allowed token is a stop, not length", Params({}, false, 2),
       {{kText, "a", "a"}, {kEos, "", ""}}, FinishReason::kStop, "a"},
      {"the context length finishes with length", Params({}),
       {{kText, "a", "a"}, {kText, "b", "b"}}, FinishReason::kLength, "ab", std::nullopt,
       std::nullopt, /*prompt_len=*/10, /*max_model_len=*/12},
      {"min_tokens ignores EOS, stop ids and stop strings until reached",
       WithMinTokens(Params({"x"}), 3),
       {{kEos, "", ""}, {kStopId, "x", "x"}, {kText, "x", "x"}, {kText, "ax", "a"}},
       FinishReason::kStop, "xxa", "x"},
      {"min_tokens: a stop string must end after the min_tokens-th token",
       WithMinTokens(Params({"abc"}), 2),
       {{kText, "ab", ""}, {kText, "c", "abc"}, {kText, "d", "d"}, {kEos, "", ""}},
       FinishReason::kStop, "abcd"},
      {"min_tokens: a stop straddling the threshold counts",
       WithMinTokens(Params({"abc"}), 1),
       {{kText, "ab", ""}, {kText, "cd", ""}}, FinishReason::kStop, "", "abc"},
  };
}

TEST_CASE("stop checker cases: streamed text, finish reason and completion text") {
  for (const Case& c : Cases()) {
    INFO("case: " << c.name);
    StopChecker checker(c.params, {kEos}, c.prompt_len, c.max_model_len);
    std::string streamed;
    for (size_t i = 0; i < c.steps.size(); ++i) {
      INFO("step " << i);
      const StopDecision d = checker.Append(c.steps[i].token, c.steps[i].delta);
      CHECK(d.text == c.steps[i].streamed);
      streamed += d.text;
      const bool last = i + 1 == c.steps.size();
      CHECK(d.reason == (last ? c.reason : FinishReason::kNone));
    }
    CHECK(checker.reason() == c.reason);
    if (c.reason != FinishReason::kNone) {
      CHECK(streamed == c.output);
      CHECK(checker.output_text() == c.output);
      CHECK(checker.held_back_bytes() == 0);
    } else {
      CHECK(checker.output_text() + std::string(c.steps.back().delta).substr(
                                        c.steps.back().delta.size() - checker.held_back_bytes()) ==
            c.output);
    }
    CHECK(checker.stop_string() == c.stop_string);
    CHECK(checker.stop_token() == c.stop_token);
  }
}

TEST_CASE("after finishing, further tokens change nothing") {
  StopChecker checker(Params({"!"}), {kEos}, 1, 100);
  CHECK(checker.Append(kText, "a!b").reason == FinishReason::kStop);
  const StopDecision d = checker.Append(kText, "more");
  CHECK(d.reason == FinishReason::kStop);
  CHECK(d.text.empty());
  CHECK(checker.output_text() == "a");
  CHECK(checker.num_output_tokens() == 1);
}

TEST_CASE("with the SmolLM2 tokenizer a multi-byte stop string cuts the detokenized stream") {
  auto gguf = GgufFile::Open(testing::DefaultModelPath());
  REQUIRE(gguf.ok());
  auto text = LoadModelTextFromGguf(**gguf);
  REQUIRE(text.ok());
  const Tokenizer& tokenizer = *text->tokenizer;
  const std::string completion = "Un caf\u00e9 cr\u00e8me \U0001D518\u00e9! Merci \u00e9t\u00e9.";
  const std::vector<int32_t> ids = tokenizer.Encode(completion, /*add_bos=*/false);
  struct Expect {
    std::vector<std::string> stop;
    bool include;
    std::string output;
  };
  for (const Expect& e : {Expect{{"\u00e9!"}, false, "Un caf\u00e9 cr\u00e8me \U0001D518"},
                          Expect{{"\u00e9!"}, true, "Un caf\u00e9 cr\u00e8me \U0001D518\u00e9!"},
                          Expect{{"\U0001D518"}, false, "Un caf\u00e9 cr\u00e8me "},
                          Expect{{"me \U0001D518\u00e9"}, false, "Un caf\u00e9 cr\u00e8"}}) {
    INFO("stop " << e.stop[0] << " include " << e.include);
    IncrementalDetokenizer detokenizer(tokenizer, /*skip_special=*/true);
    StopChecker checker(Params(e.stop, e.include), text->stop_token_ids, 3, 1000);
    std::string streamed;
    bool token_ended_inside_a_character = false;  // the case the test is about
    for (int32_t id : ids) {
      const StopDecision d = checker.Append(id, detokenizer.Append(id));
      token_ended_inside_a_character |= detokenizer.pending_bytes() > 0;
      streamed += d.text;
      if (d.finished()) break;
    }
    CHECK(token_ended_inside_a_character);
    CHECK(checker.reason() == FinishReason::kStop);
    CHECK(streamed == e.output);
    CHECK(checker.output_text() == e.output);
  }
}

}  // namespace
}  // namespace alignserve
