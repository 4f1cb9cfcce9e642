// OpenAI request bodies become exactly the engine inputs they describe:
// every prompt form gives the tokenizer's ids (and, for chat, the ids
// transformers' apply_chat_template gives: tests/data/models/
// smollm2_greedy.json), and every sampling field lands in SamplingParams.
#include "server/openai_request.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "tests/models/model_test_util.h"
#include "tests/server/openai_test_util.h"

namespace alignserve {
namespace {

using nlohmann::json;
using testing::DefaultContext;
using testing::DefaultModelText;

std::vector<int32_t> Encode(const std::string& text) {
  const Tokenizer& t = *DefaultModelText().tokenizer;
  return t.Encode(text, t.add_bos_by_default());
}

OpenAiRequest ParseCompletion(const json& body, const ServeContext& ctx = DefaultContext()) {
  auto req = ParseCompletionRequest(body.dump(), ctx);
  INFO(req.status().ToString());
  REQUIRE(req.ok());
  return *std::move(req);
}

OpenAiRequest ParseChat(const json& body, const ServeContext& ctx = DefaultContext()) {
  auto req = ParseChatRequest(body.dump(), ctx);
  INFO(req.status().ToString());
  REQUIRE(req.ok());
  return *std::move(req);
}

TEST_CASE("a string prompt gives the tokenizer's ids and OpenAI's defaults") {
  OpenAiRequest req = ParseCompletion({{"model", "smollm2"}, {"prompt", "Hello world"}});
  CHECK(req.kind == ApiKind::kCompletion);
  CHECK(req.model == "smollm2");
  REQUIRE(req.prompts.size() == 1);
  CHECK(req.prompts[0] == Encode("Hello world"));
  CHECK(req.prompt_texts == std::vector<std::string>{"Hello world"});
  CHECK(req.params.max_tokens == 16);  // OpenAI's completions default
  CHECK(req.params.temperature == 1.0f);
  CHECK(req.params.n == 1);
  CHECK_FALSE(req.params.logprobs.has_value());
  CHECK_FALSE(req.stream);
  CHECK_FALSE(req.echo);
  CHECK(req.skip_special_tokens);
}

TEST_CASE("a completion prompt tokenizes as transformers does") {
  // The user turn of the fixture's first prompt, between "\n" (198) and
  // "<|im_end|>" (2), tokenized by transformers.
  OpenAiRequest req = ParseCompletion({{"prompt", "What is the capital of France?"}});
  CHECK(req.prompts[0] == std::vector<int32_t>{1780, 314, 260, 3575, 282, 4649, 47});
}

TEST_CASE("a missing model means the served one") {
  CHECK(ParseCompletion({{"prompt", "hi"}}).model == "smollm2");
  CHECK(ParseCompletion({{"prompt", "hi"}, {"model", nullptr}}).model == "smollm2");
}

TEST_CASE("a list of strings gives one prompt each") {
  OpenAiRequest req = ParseCompletion({{"prompt", {"Hello", "The sky is"}}});
  REQUIRE(req.prompts.size() == 2);
  CHECK(req.prompts[0] == Encode("Hello"));
  CHECK(req.prompts[1] == Encode("The sky is"));
  CHECK(req.prompt_texts == std::vector<std::string>{"Hello", "The sky is"});
}

TEST_CASE("a list of token ids is one prompt of exactly those ids") {
  const std::vector<int32_t> ids = Encode("Once upon a time");
  OpenAiRequest req = ParseCompletion({{"prompt", ids}});
  REQUIRE(req.prompts.size() == 1);
  CHECK(req.prompts[0] == ids);
  CHECK(req.prompt_texts[0] == "Once upon a time");  // decoded for echo
}

TEST_CASE("a list of lists of token ids is one prompt per list") {
  OpenAiRequest req = ParseCompletion({{"prompt", {{1, 2, 3}, {49151}}}});
  REQUIRE(req.prompts.size() == 2);
  CHECK(req.prompts[0] == std::vector<int32_t>{1, 2, 3});
  CHECK(req.prompts[1] == std::vector<int32_t>{49151});
}

TEST_CASE("chat messages render and tokenize exactly as apply_chat_template") {
  const json fixture =
      testing::ReadJson(testing::SourcePath("tests/data/models/smollm2_greedy.json"));
  for (const json& prompt : fixture["prompts"]) {
    OpenAiRequest req = ParseChat({{"model", "smollm2"}, {"messages", prompt["messages"]}});
    CHECK(req.kind == ApiKind::kChat);
    REQUIRE(req.prompts.size() == 1);
    CHECK(req.prompts[0] == prompt["prompt_ids"].get<std::vector<int32_t>>());
    CHECK(req.prompt_texts[0] == prompt["text"].get<std::string>());
    // Chat's default max_tokens is what the context leaves.
    CHECK(req.params.max_tokens == 2048 - static_cast<int>(req.prompts[0].size()));
  }
}

TEST_CASE("chat equals the template's text tokenized without BOS") {
  const json messages = {{{"role", "system"}, {"content", "Be brief."}},
                         {{"role", "user"}, {"content", "Hi"}},
                         {{"role", "assistant"}, {"content", "Hello!"}},
                         {{"role", "user"}, {"content", "Name a color."}}};
  OpenAiRequest req = ParseChat({{"messages", messages}});
  auto rendered = DefaultModelText().RenderChat(messages, /*add_generation_prompt=*/true);
  REQUIRE(rendered.ok());
  CHECK(req.prompts[0] == DefaultModelText().tokenizer->Encode(*rendered, false));
  CHECK(req.prompt_texts[0] == *rendered);

  SECTION("without the generation prompt") {
    OpenAiRequest no_gen = ParseChat({{"messages", messages}, {"add_generation_prompt", false}});
    auto plain = DefaultModelText().RenderChat(messages, /*add_generation_prompt=*/false);
    REQUIRE(plain.ok());
    CHECK(no_gen.prompts[0] == DefaultModelText().tokenizer->Encode(*plain, false));
    CHECK(no_gen.prompts[0].size() < req.prompts[0].size());
  }
}

TEST_CASE("text content parts equal the same text as a string") {
  const json as_string = {{{"role", "user"}, {"content", "line one\nline two"}}};
  const json as_parts = {
      {{"role", "user"},
       {"content",
        {{{"type", "text"}, {"text", "line one"}}, {{"type", "text"}, {"text", "line two"}}}}}};
  CHECK(ParseChat({{"messages", as_parts}}).prompts[0] ==
        ParseChat({{"messages", as_string}}).prompts[0]);
}

TEST_CASE("developer messages are rendered as system messages") {
  const json dev = {{{"role", "developer"}, {"content", "Be brief."}},
                    {{"role", "user"}, {"content", "Hi"}}};
  const json sys = {{{"role", "system"}, {"content", "Be brief."}},
                    {{"role", "user"}, {"content", "Hi"}}};
  CHECK(ParseChat({{"messages", dev}}).prompts[0] == ParseChat({{"messages", sys}}).prompts[0]);
}

TEST_CASE("every sampling field lands in SamplingParams") {
  const json body = {{"prompt", "x"},
                     {"max_tokens", 40},
                     {"temperature", 0.7},
                     {"top_p", 0.9},
                     {"top_k", 50},
                     {"min_p", 0.05},
                     {"n", 3},
                     {"seed", 1234},
                     {"stop", {"\n\n", "END"}},
                     {"stop_token_ids", {2, 7}},
                     {"presence_penalty", 0.5},
                     {"frequency_penalty", -0.25},
                     {"repetition_penalty", 1.1},
                     {"logit_bias", {{"15", 2.5}, {"300", -100}}},
                     {"ignore_eos", true},
                     {"min_tokens", 4},
                     {"include_stop_str_in_output", true},
                     {"skip_special_tokens", false},
                     {"user", "alice"},
                     {"best_of", 3}};
  OpenAiRequest req = ParseCompletion(body);
  const SamplingParams& p = req.params;
  CHECK(p.max_tokens == 40);
  CHECK(p.temperature == 0.7f);
  CHECK(p.top_p == 0.9f);
  CHECK(p.top_k == 50);
  CHECK(p.min_p == 0.05f);
  CHECK(p.n == 3);
  CHECK(p.seed == std::optional<uint64_t>(1234));
  CHECK(p.stop == std::vector<std::string>{"\n\n", "END"});
  CHECK(p.stop_token_ids == std::vector<int32_t>{2, 7});
  CHECK(p.presence_penalty == 0.5f);
  CHECK(p.frequency_penalty == -0.25f);
  CHECK(p.repetition_penalty == 1.1f);
  CHECK(p.logit_bias == std::map<int32_t, float>{{15, 2.5f}, {300, -100.0f}});
  CHECK(p.ignore_eos);
  CHECK(p.min_tokens == 4);
  CHECK(p.include_stop_str_in_output);
  CHECK_FALSE(req.skip_special_tokens);
  CHECK(req.user == "alice");
}

TEST_CASE("a single stop string, negative and huge seeds") {
  CHECK(ParseCompletion({{"prompt", "x"}, {"stop", "END"}}).params.stop ==
        std::vector<std::string>{"END"});
  CHECK(ParseCompletion({{"prompt", "x"}, {"seed", -1}}).params.seed ==
        std::optional<uint64_t>(~uint64_t{0}));
  CHECK(ParseCompletion({{"prompt", "x"}, {"seed", ~uint64_t{0}}}).params.seed ==
        std::optional<uint64_t>(~uint64_t{0}));
}

TEST_CASE("null fields are absent and integral floats are integers") {
  OpenAiRequest req = ParseCompletion({{"prompt", "x"},
                                       {"temperature", nullptr},
                                       {"stop", nullptr},
                                       {"logit_bias", nullptr},
                                       {"suffix", nullptr},
                                       {"max_tokens", 5.0},
                                       {"n", 2.0}});
  CHECK(req.params.temperature == 1.0f);
  CHECK(req.params.stop.empty());
  CHECK(req.params.max_tokens == 5);
  CHECK(req.params.n == 2);
}

TEST_CASE("unknown fields that OpenAI clients send are ignored") {
  OpenAiRequest req = ParseChat({{"messages", {{{"role", "user"}, {"content", "hi"}}}},
                                 {"store", false},
                                 {"metadata", {{"k", "v"}}},
                                 {"parallel_tool_calls", true},
                                 {"service_tier", "auto"},
                                 {"tools", json::array()},
                                 {"tool_choice", "none"},
                                 {"response_format", {{"type", "text"}}},
                                 {"frobnicate", {1, 2, 3}}});
  CHECK(req.prompts.size() == 1);
}

TEST_CASE("completion logprobs and echo") {
  OpenAiRequest req = ParseCompletion({{"prompt", "x"}, {"logprobs", 5}});
  CHECK(req.logprobs);
  CHECK(req.top_logprobs == 5);
  CHECK(req.params.logprobs == std::optional<int>(5));
  CHECK_FALSE(req.params.prompt_logprobs.has_value());

  OpenAiRequest echo = ParseCompletion({{"prompt", "x"}, {"logprobs", 0}, {"echo", true}});
  CHECK(echo.echo);
  CHECK(echo.params.logprobs == std::optional<int>(0));
  CHECK(echo.params.prompt_logprobs == std::optional<int>(0));
}

TEST_CASE("chat logprobs is a flag and top_logprobs the count") {
  const json messages = {{{"role", "user"}, {"content", "hi"}}};
  OpenAiRequest off = ParseChat({{"messages", messages}});
  CHECK_FALSE(off.logprobs);
  CHECK_FALSE(off.params.logprobs.has_value());

  OpenAiRequest on = ParseChat({{"messages", messages}, {"logprobs", true}});
  CHECK(on.logprobs);
  CHECK(on.params.logprobs == std::optional<int>(0));

  OpenAiRequest top = ParseChat({{"messages", messages}, {"logprobs", true}, {"top_logprobs", 7}});
  CHECK(top.top_logprobs == 7);
  CHECK(top.params.logprobs == std::optional<int>(7));
}

TEST_CASE("max_completion_tokens wins over max_tokens") {
  const json messages = {{{"role", "user"}, {"content", "hi"}}};
  CHECK(ParseChat({{"messages", messages}, {"max_tokens", 9}}).params.max_tokens == 9);
  CHECK(ParseChat({{"messages", messages}, {"max_tokens", 9}, {"max_completion_tokens", 4}})
            .params.max_tokens == 4);
}

TEST_CASE("stream and stream_options.include_usage") {
  OpenAiRequest plain = ParseCompletion({{"prompt", "x"}, {"stream", true}});
  CHECK(plain.stream);
  CHECK_FALSE(plain.include_usage);
  OpenAiRequest usage = ParseCompletion(
      {{"prompt", "x"}, {"stream", true}, {"stream_options", {{"include_usage", true}}}});
  CHECK(usage.include_usage);
}

TEST_CASE("a prompt one shorter than the context runs with one new token") {
  const ServeContext ctx = DefaultContext(/*max_model_len=*/8);
  const std::vector<int32_t> seven = {1, 2, 3, 4, 5, 6, 7};
  CHECK(ParseCompletion({{"prompt", seven}, {"max_tokens", 1}}, ctx).params.max_tokens == 1);
  SECTION("max_tokens past the context is clamped (ROBUSTNESS.md 5)") {
    CHECK(ParseCompletion({{"prompt", seven}, {"max_tokens", 100}}, ctx).params.max_tokens == 1);
    CHECK(ParseCompletion({{"prompt", {1, 2, 3}}, {"max_tokens", int64_t{1} << 40}}, ctx)
              .params.max_tokens == 5);
    // The default 16 too.
    CHECK(ParseCompletion({{"prompt", {1, 2, 3}}}, ctx).params.max_tokens == 5);
  }
  SECTION("several prompts: clamped to what the shortest leaves") {
    CHECK(ParseCompletion({{"prompt", {{1, 2}, {1, 2, 3, 4}}}, {"max_tokens", 100}}, ctx)
              .params.max_tokens == 6);
  }
}

TEST_CASE("tokenize a prompt or messages, detokenize ids") {
  const ServeContext ctx = DefaultContext();
  auto ids = ParseTokenizeRequest(R"({"model": "smollm2", "prompt": "Hello world"})", ctx);
  REQUIRE(ids.ok());
  CHECK(*ids == Encode("Hello world"));
  CHECK(TokenizeResponse(*ids, ctx) ==
        json{{"count", ids->size()}, {"max_model_len", 2048}, {"tokens", *ids}});

  const json messages = {{{"role", "user"}, {"content", "What is 2+2?"}}};
  auto chat_ids = ParseTokenizeRequest(json{{"messages", messages}}.dump(), ctx);
  REQUIRE(chat_ids.ok());
  OpenAiRequest chat = ParseChat({{"messages", messages}});
  CHECK(*chat_ids == chat.prompts[0]);

  auto back = ParseDetokenizeRequest(json{{"tokens", *ids}}.dump(), ctx);
  REQUIRE(back.ok());
  CHECK(*back == *ids);
  CHECK(DetokenizeResponse(*back, ctx) == json{{"prompt", "Hello world"}});
  // Special tokens are kept, as vLLM's /detokenize does.
  CHECK(DetokenizeResponse(chat.prompts[0], ctx)["prompt"] == chat.prompt_texts[0]);
}

}  // namespace
}  // namespace alignserve
