// Real model chat templates rendered by ChatTemplate equal, byte for byte,
// what transformers' apply_chat_template renders (fixtures made by
// tests/reference/make_chat_fixtures.py), including the conversations a
// template rejects.
#include "models/chat/chat_template.h"

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "tests/test_paths.h"

namespace alignserve {
namespace {

using nlohmann::ordered_json;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

ordered_json LoadCases() {
  ordered_json doc = ordered_json::parse(
      ReadFile(testing::SourcePath("tests/data/chat/chat_template_cases.json")), nullptr, false);
  REQUIRE_FALSE(doc.is_discarded());
  return doc["cases"];
}

const ChatTemplate& TemplateNamed(const std::string& name) {
  static std::map<std::string, ChatTemplate>* cache = new std::map<std::string, ChatTemplate>();
  auto it = cache->find(name);
  if (it == cache->end()) {
    auto tmpl = ChatTemplate::Create(
        ReadFile(testing::SourcePath("tests/data/chat/templates/" + name + ".jinja")));
    INFO(tmpl.status().ToString());
    REQUIRE(tmpl.ok());
    it = cache->emplace(name, *std::move(tmpl)).first;
  }
  return it->second;
}

ChatTemplateInputs InputsOf(const ordered_json& c) {
  ChatTemplateInputs inputs;
  inputs.messages = c["messages"];
  inputs.add_generation_prompt = c["add_generation_prompt"].get<bool>();
  inputs.bos_token = c["bos_token"].get<std::string>();
  inputs.eos_token = c["eos_token"].get<std::string>();
  inputs.extra_context = c["extra_context"];
  return inputs;
}

TEST_CASE("every fixture template renders byte-identical to transformers") {
  const ordered_json cases = LoadCases();
  REQUIRE(cases.size() >= 100);
  int rendered = 0, rejected = 0;
  for (const auto& c : cases) {
    const std::string label = c["template"].get<std::string>() + "/" + c["name"].get<std::string>();
    INFO(label);
    const ChatTemplate& tmpl = TemplateNamed(c["template"].get<std::string>());
    absl::StatusOr<std::string> out = tmpl.Render(InputsOf(c));
    if (c.contains("expected")) {
      INFO((out.ok() ? std::string("ok") : out.status().ToString()));
      REQUIRE(out.ok());
      CHECK(*out == c["expected"].get<std::string>());
      ++rendered;
    } else {
      REQUIRE_FALSE(out.ok());
      CHECK(out.status().code() == absl::StatusCode::kInvalidArgument);
      if (c["error"]["kind"] == "raise_exception") {
        // The template's own message comes through unchanged.
        CHECK(std::string(out.status().message()) == c["error"]["message"].get<std::string>());
      }
      ++rejected;
    }
  }
  CHECK(rendered > 100);
  CHECK(rejected >= 5);
}

TEST_CASE("templates cover SmolLM2, Llama 3.x, Qwen2.5, Mistral Nemo and DeepSeek-R1-Distill") {
  std::map<std::string, int> per_template;
  for (const auto& c : LoadCases()) ++per_template[c["template"].get<std::string>()];
  for (const char* name : {"smollm2", "llama3_instruct", "llama3_2_instruct", "llama3_3_instruct",
                           "qwen2_5_instruct", "mistral_nemo", "deepseek_r1_distill_qwen"}) {
    INFO(name);
    CHECK(per_template[name] >= 15);
  }
}

TEST_CASE("Mistral's role alternation rule rejects two user turns with its own message") {
  ChatTemplateInputs inputs;
  inputs.messages = ordered_json::array({{{"role", "user"}, {"content", "a"}},
                                         {{"role", "user"}, {"content", "b"}}});
  inputs.bos_token = "<s>";
  inputs.eos_token = "</s>";
  auto out = TemplateNamed("mistral_nemo").Render(inputs);
  REQUIRE_FALSE(out.ok());
  CHECK(out.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(out.status().message()) ==
        "After the optional system message, conversation roles must alternate "
        "user/assistant/user/assistant/...");
}

TEST_CASE("concurrent renders of one template agree with a single-threaded render") {
  const ordered_json cases = LoadCases();
  std::vector<std::pair<const ChatTemplate*, ordered_json>> work;
  for (const auto& c : cases) {
    if (c.contains("expected")) work.emplace_back(&TemplateNamed(c["template"]), c);
  }
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = t; i < work.size(); i += 2) {
        auto out = work[i].first->Render(InputsOf(work[i].second));
        if (!out.ok() || *out != work[i].second["expected"].get<std::string>()) ++mismatches[t];
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (int m : mismatches) CHECK(m == 0);
}

}  // namespace
}  // namespace alignserve
