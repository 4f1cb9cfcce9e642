// Per-request skip_special_tokens (vLLM's sampling parameter): the output
// text keeps or drops special tokens as each request asks, whatever else
// shares its batch; the token ids are the same either way. On the default
// model a logit_bias forces the end-of-turn token <|im_end|> (ignore_eos
// keeps it from finishing the request), so the oracle is that token's own
// spelling.
#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include "engine/llm_engine.h"
#include "tests/engine/shared_default_model.h"

namespace alignserve {
namespace {

using testing::SharedModel;

TEST_CASE("skip_special_tokens drops or keeps special tokens per request") {
  LoadedModel& loaded = *SharedModel().loaded;
  const Tokenizer& tokenizer = *loaded.text.tokenizer;
  const std::optional<int32_t> im_end = tokenizer.TokenId("<|im_end|>");
  REQUIRE(im_end.has_value());
  EngineConfig config;
  config.scheduler.num_blocks = 64;
  config.scheduler.block_size = 16;
  config.scheduler.max_model_len = 256;
  auto engine = LlmEngine::Create(*loaded.model, loaded.text, config);
  REQUIRE(engine.ok());
  const std::vector<int32_t> prompt = tokenizer.Encode("Say hello.", false, false);
  for (int64_t id : {1, 2}) {
    SamplingParams p;
    p.temperature = 0.0f;
    p.ignore_eos = true;
    p.max_tokens = 3;
    p.logit_bias[*im_end] = 100.0f;
    p.skip_special_tokens = id == 1;
    REQUIRE((*engine)->AddRequest(id, prompt, p).ok());
  }
  std::map<int64_t, std::string> text;
  std::map<int64_t, std::vector<int32_t>> ids;
  while ((*engine)->HasUnfinished()) {
    auto outputs = (*engine)->Step();
    REQUIRE(outputs.ok());
    for (const RequestOutput& o : *outputs) {
      text[o.request_id] += o.text;
      ids[o.request_id].insert(ids[o.request_id].end(), o.new_token_ids.begin(),
                               o.new_token_ids.end());
    }
  }
  const std::vector<int32_t> forced(3, *im_end);
  CHECK(ids[1] == forced);
  CHECK(ids[2] == forced);
  CHECK(text[1].empty());
  CHECK(text[2] == "<|im_end|><|im_end|><|im_end|>");
}

}  // namespace
}  // namespace alignserve
