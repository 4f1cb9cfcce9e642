// The `score_head` reward model's text side on SmolLM2's ModelText (a chat
// template): the classifier's input is the [user, assistant] chat rendered
// without a generation prompt and tokenized as transformers'
// apply_chat_template(tokenize=True) does; Submit addresses a kLogits
// request for its label to its scorer; Reward reads that logit. The
// engine-level oracle (a classifier scorer's logit against transformers'
// score) is in tests/engine/scorer_engine_test.cc.
#include "alignment/score_head_reward_model.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <vector>

#include "tests/engine/shared_default_model.h"

namespace alignserve {
namespace {

const ModelText& Text() { return testing::SharedModel().loaded->text; }

// Records the scoring requests a reward model submits.
class RecordingContext final : public PolicyContext {
 public:
  int64_t request_id() const override { return 1; }
  int64_t step() const override { return 0; }
  double free_block_fraction() const override { return 1.0; }
  const Sequence* FindSequence(int64_t) const override { return nullptr; }
  std::string_view text(int64_t) const override { return {}; }
  absl::StatusOr<int64_t> Score(ScoreRequest request) override {
    requests.push_back(std::move(request));
    return -static_cast<int64_t>(requests.size());
  }
  absl::StatusOr<std::vector<int64_t>> Fork(int64_t, int) override {
    return absl::UnimplementedError("");
  }
  absl::Status Stop(int64_t) override { return absl::UnimplementedError(""); }
  absl::Status Abort(int64_t) override { return absl::UnimplementedError(""); }
  absl::Status Pause(int64_t) override { return absl::UnimplementedError(""); }
  absl::Status Resume(int64_t) override { return absl::UnimplementedError(""); }
  std::vector<ScoreRequest> requests;
};

TEST_CASE("the classifier reads the pair as a chat rendered by its own template") {
  REQUIRE(Text().chat_template.has_value());
  auto model = ScoreHeadRewardModel::Create(Text(), /*num_labels=*/1, /*scorer=*/1);
  REQUIRE(model.ok());
  const std::string prompt = "How do I boil an egg?";
  const std::string response = "Place it in boiling water for nine minutes.";
  auto ids = (*model)->ScorePrompt(prompt, response);
  REQUIRE(ids.ok());
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  messages.push_back({{"role", "user"}, {"content", prompt}});
  messages.push_back({{"role", "assistant"}, {"content", response}});
  auto rendered = Text().RenderChat(messages, /*add_generation_prompt=*/false);
  REQUIRE(rendered.ok());
  CHECK(*ids == Text().tokenizer->Encode(*rendered, /*add_bos=*/false, /*parse_special=*/true));
  // SmolLM2's template: "<|im_start|>user\n...<|im_end|>\n<|im_start|>assistant\n...<|im_end|>\n"
  // (after its default system turn); the chat ends with the response's turn.
  const std::string decoded = Text().tokenizer->Decode(*ids, /*skip_special=*/false);
  CHECK(decoded.find("<|im_start|>user\n" + prompt + "<|im_end|>") != std::string::npos);
  CHECK(decoded.ends_with("<|im_start|>assistant\n" + response + "<|im_end|>\n"));
  CHECK(ids->front() == Text().tokenizer->TokenId("<|im_start|>"));
}

TEST_CASE("Submit asks its scorer for the label's raw logit; Reward is that logit") {
  auto model = ScoreHeadRewardModel::Create(Text(), /*num_labels=*/3, /*scorer=*/2, /*label=*/1);
  REQUIRE(model.ok());
  RecordingContext ctx;
  auto id = (*model)->Submit(
      {.prompt = "a question", .response = "an answer", .response_token_ids = {}}, ctx);
  REQUIRE(id.ok());
  CHECK(*id == -1);
  REQUIRE(ctx.requests.size() == 1);
  const ScoreRequest& r = ctx.requests[0];
  CHECK(r.scorer == 2);
  CHECK(r.output == ScoreRequest::Output::kLogits);
  CHECK(r.token_ids == std::vector<int32_t>{1});
  CHECK(r.prompt_token_ids == *(*model)->ScorePrompt("a question", "an answer"));

  ScoreResult ok;
  ok.values = {2.75f};
  CHECK((*model)->Reward(ok) == 2.75);
  ScoreResult failed;
  failed.status = absl::AbortedError("forward pass failed");
  CHECK(std::isnan((*model)->Reward(failed)));
}

TEST_CASE("a score_head model without a scorer, tokenizer or valid label is refused") {
  CHECK(absl::IsInvalidArgument(ScoreHeadRewardModel::Create(Text(), 1, /*scorer=*/0).status()));
  CHECK(absl::IsInvalidArgument(ScoreHeadRewardModel::Create(Text(), 1, 1, /*label=*/1).status()));
  CHECK(absl::IsInvalidArgument(ScoreHeadRewardModel::Create(Text(), 2, 1, /*label=*/-1).status()));
  const ModelText no_tokenizer;
  CHECK(absl::IsInvalidArgument(ScoreHeadRewardModel::Create(no_tokenizer, 1, 1).status()));
}

}  // namespace
}  // namespace alignserve
