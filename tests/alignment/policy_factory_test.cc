// MakePolicy: builds the implemented policies with their parsed parameters
// (visible through their PolicySpec), passes ParsePolicySpec's
// InvalidArgument through, and names what exists for the policies not
// built yet.
#include "alignment/policy_factory.h"

#include <catch2/catch.hpp>
#include <string>

#include "alignment/policy_params.h"

namespace alignserve {
namespace {

using Json = nlohmann::json;

TEST_CASE("MakePolicy builds the implemented policies with their parameters") {
  auto sc = MakePolicy("self_consistency", Json{{"n", 6}, {"window", 3}, {"answer", "boxed"}}, {});
  REQUIRE(sc.ok());
  CHECK((*sc)->Spec().num_sequences == 6);
  CHECK((*sc)->Spec().top_logprobs == -1);

  auto dc = MakePolicy("deepconf", Json{{"n", 8}, {"n_init", 2}, {"top_k", 7}}, {});
  REQUIRE(dc.ok());
  CHECK((*dc)->Spec().num_sequences == 8);
  CHECK((*dc)->Spec().top_logprobs == 7);

  auto lg = MakePolicy("loop_guard", nullptr, {});
  REQUIRE(lg.ok());
  CHECK((*lg)->Spec().num_sequences == 1);

  auto defaults = MakePolicy("deepconf", nullptr, {});
  REQUIRE(defaults.ok());
  CHECK((*defaults)->Spec().num_sequences == 32);
  CHECK((*defaults)->Spec().top_logprobs == 20);
}

TEST_CASE("MakePolicy passes parameter errors through as InvalidArgument") {
  auto bad = MakePolicy("deepconf", Json{{"percentile", 100}}, {});
  REQUIRE(absl::IsInvalidArgument(bad.status()));
  CHECK(std::string(bad.status().message()).find("percentile") != std::string::npos);
  CHECK(absl::IsInvalidArgument(MakePolicy("no_such_policy", nullptr, {}).status()));
  auto regex = MakePolicy("self_consistency", Json{{"answer", "regex:(a"}}, {});
  REQUIRE(absl::IsInvalidArgument(regex.status()));
  CHECK(std::string(regex.status().message()).find("'answer'") != std::string::npos);
  CHECK(absl::IsInvalidArgument(MakePolicy("deepconf", Json{{"answer", "last"}}, {}).status()));
  CHECK(absl::IsInvalidArgument(MakePolicy("deepconf", Json{{"answer", 3}}, {}).status()));
}

TEST_CASE("MakePolicy names the implemented policies for those not built yet") {
  for (const char* name :
       {"best_of_n", "soft_best_of_n", "args", "blockwise_cd", "prm_beam_search"}) {
    auto made = MakePolicy(name, nullptr, {});
    INFO(name);
    REQUIRE(absl::IsUnimplemented(made.status()));
    const std::string message(made.status().message());
    CHECK(message.find(name) != std::string::npos);
    for (const std::string& built : ImplementedPolicyNames()) {
      CHECK(message.find(built) != std::string::npos);
    }
  }
  // Their parameters are still validated first: a bad one is a 400.
  CHECK(absl::IsInvalidArgument(MakePolicy("best_of_n", Json{{"n", 0}}, {}).status()));
}

TEST_CASE("the answer parameter of self_consistency and deepconf defaults to last_number") {
  auto sc = ParsePolicySpec("self_consistency", nullptr);
  REQUIRE(sc.ok());
  CHECK(std::get<SelfConsistencyParams>(sc->params).answer == "last_number");
  auto dc = ParsePolicySpec("deepconf", Json{{"answer", "regex:x=(\\d+)"}});
  REQUIRE(dc.ok());
  CHECK(std::get<DeepConfParams>(dc->params).answer == "regex:x=(\\d+)");
}

}  // namespace
}  // namespace alignserve
