// Built-in policy parameters: every default, and every rejection (unknown
// policy, unknown parameter, wrong JSON type, out of range) is
// InvalidArgument naming the policy, the parameter and the allowed range.
#include "alignment/policy_params.h"

#include <catch2/catch.hpp>
#include <string>

namespace alignserve {
namespace {

using Json = nlohmann::json;

template <typename T>
T ParseOk(std::string_view name, const Json& params) {
  absl::StatusOr<ParsedPolicy> spec = ParsePolicySpec(name, params);
  INFO(spec.status().ToString());
  REQUIRE(spec.ok());
  REQUIRE(spec->name == name);
  REQUIRE(std::holds_alternative<T>(spec->params));
  return std::get<T>(spec->params);
}

// Asserts an InvalidArgument whose message contains every fragment.
void RequireRejected(std::string_view name, const Json& params,
                     std::initializer_list<std::string_view> fragments) {
  absl::StatusOr<ParsedPolicy> spec = ParsePolicySpec(name, params);
  INFO("policy " << name << " params " << params.dump());
  REQUIRE(spec.status().code() == absl::StatusCode::kInvalidArgument);
  const std::string message(spec.status().message());
  for (std::string_view fragment : fragments) {
    INFO("message: " << message << " wants: " << fragment);
    REQUIRE(message.find(fragment) != std::string::npos);
  }
}

TEST_CASE("every built-in policy parses with documented defaults", "[policy_params]") {
  REQUIRE(ParseOk<BestOfNParams>("best_of_n", Json::object()).n == 4);
  const auto soft = ParseOk<SoftBestOfNParams>("soft_best_of_n", nullptr);
  REQUIRE(soft.n == 4);
  REQUIRE(soft.lambda == 1.0);
  const auto args = ParseOk<ArgsParams>("args", Json::object());
  REQUIRE(args.k == 10);
  REQUIRE(args.w == 1.0);
  REQUIRE_FALSE(args.temperature.has_value());
  const auto cd = ParseOk<BlockwiseCdParams>("blockwise_cd", Json::object());
  REQUIRE(cd.k == 4);
  REQUIRE(cd.m == 32);
  const auto dc = ParseOk<DeepConfParams>("deepconf", Json::object());
  REQUIRE(dc.n == 32);
  REQUIRE(dc.n_init == 16);
  REQUIRE(dc.window == 2048);
  REQUIRE(dc.percentile == 90.0);
  REQUIRE(dc.top_k == 20);
  const auto sc = ParseOk<SelfConsistencyParams>("self_consistency", Json::object());
  REQUIRE(sc.n == 16);
  REQUIRE(sc.window == 5);
  REQUIRE(sc.rule == SelfConsistencyRule::kEsc);
  const auto prm = ParseOk<PrmBeamSearchParams>("prm_beam_search", Json::object());
  REQUIRE(prm.n == 8);
  REQUIRE(prm.beam_width == 2);
  REQUIRE(prm.delimiter == "\n\n");
  const auto lg = ParseOk<LoopGuardParams>("loop_guard", Json::object());
  REQUIRE(lg.ngram == 32);
  REQUIRE(lg.window == 1024);
  REQUIRE(BuiltinPolicyNames().size() == std::variant_size_v<PolicyParams>);
}

TEST_CASE("given parameters are read", "[policy_params]") {
  REQUIRE(ParseOk<BestOfNParams>("best_of_n", Json{{"n", 64}}).n == 64);
  REQUIRE(ParseOk<SoftBestOfNParams>("soft_best_of_n", Json{{"lambda", 0}}).lambda == 0.0);
  const auto args = ParseOk<ArgsParams>("args", Json{{"k", 3}, {"w", 2.5}, {"temperature", 0.7}});
  REQUIRE(args.k == 3);
  REQUIRE(args.w == 2.5);
  REQUIRE(args.temperature == 0.7);
  const auto dc = ParseOk<DeepConfParams>(
      "deepconf", Json{{"n", 64}, {"n_init", 8}, {"window", 16}, {"percentile", 10}, {"top_k", 5}});
  REQUIRE(dc.n == 64);
  REQUIRE(dc.n_init == 8);
  REQUIRE(dc.window == 16);
  REQUIRE(dc.percentile == 10.0);
  REQUIRE(dc.top_k == 5);
  REQUIRE(ParseOk<SelfConsistencyParams>("self_consistency", Json{{"rule", "beta"}}).rule ==
          SelfConsistencyRule::kBeta);
  REQUIRE(ParseOk<SelfConsistencyParams>("self_consistency", Json{{"rule", "none"}}).rule ==
          SelfConsistencyRule::kNone);
  const auto prm = ParseOk<PrmBeamSearchParams>(
      "prm_beam_search", Json{{"n", 12}, {"beam_width", 3}, {"delimiter", "Step"}});
  REQUIRE(prm.n == 12);
  REQUIRE(prm.beam_width == 3);
  REQUIRE(prm.delimiter == "Step");
  const auto lg = ParseOk<LoopGuardParams>("loop_guard", Json{{"ngram", 8}, {"window", 64}});
  REQUIRE(lg.ngram == 8);
  REQUIRE(lg.window == 64);
}

TEST_CASE("dependent defaults shrink with a small n or window", "[policy_params]") {
  REQUIRE(ParseOk<DeepConfParams>("deepconf", Json{{"n", 8}}).n_init == 8);
  REQUIRE(ParseOk<SelfConsistencyParams>("self_consistency", Json{{"n", 3}}).window == 3);
  REQUIRE(ParseOk<PrmBeamSearchParams>("prm_beam_search", Json{{"n", 1}}).beam_width == 1);
  REQUIRE(ParseOk<LoopGuardParams>("loop_guard", Json{{"window", 10}}).ngram == 10);
}

TEST_CASE("unknown policy names are rejected with the list of built-ins", "[policy_params]") {
  RequireRejected("beam_search", Json::object(),
                  {"unknown alignment policy", "\"beam_search\"", "best_of_n", "loop_guard"});
  RequireRejected("", Json::object(), {"unknown alignment policy"});
  RequireRejected("Best_Of_N", Json::object(), {"unknown alignment policy"});
  // Hostile names are shown truncated and ASCII-escaped.
  RequireRejected(std::string(1000, 'x') + "\xff", Json::object(), {"...", "unknown"});
}

TEST_CASE("unknown parameter names are rejected", "[policy_params]") {
  RequireRejected("best_of_n", Json{{"best_of", 4}}, {"'best_of_n'", "\"best_of\"", "n"});
  RequireRejected(
      "deepconf", Json{{"threshold", 4}},
      {"'deepconf'", "\"threshold\"", "n, n_init, window, percentile, top_k, answer, consensus"});
  RequireRejected("loop_guard", Json{{"ngram", 4}, {"repeats", 3}}, {"\"repeats\""});
}

TEST_CASE("params that are not an object are rejected", "[policy_params]") {
  RequireRejected("best_of_n", Json::array({1, 2}), {"'best_of_n'", "JSON object"});
  RequireRejected("args", Json("k=3"), {"'args'", "JSON object"});
}

TEST_CASE("wrong JSON types are rejected", "[policy_params]") {
  RequireRejected("best_of_n", Json{{"n", "4"}}, {"'best_of_n'", "'n'", "integer in [1, 64]"});
  RequireRejected("best_of_n", Json{{"n", 4.5}}, {"'n'", "integer"});
  RequireRejected("best_of_n", Json{{"n", true}}, {"'n'", "integer"});
  RequireRejected("soft_best_of_n", Json{{"lambda", "1"}}, {"'lambda'", "number in [0, "});
  RequireRejected("args", Json{{"w", nullptr}}, {"'w'", "number in [0, 1000]"});
  RequireRejected("self_consistency", Json{{"rule", 1}}, {"'rule'", "string"});
  RequireRejected("prm_beam_search", Json{{"delimiter", Json::array()}}, {"'delimiter'"});
}

TEST_CASE("out-of-range values are rejected naming the range", "[policy_params]") {
  const std::pair<const char*, Json> too_many[] = {{"best_of_n", Json{{"n", 65}}},
                                                   {"soft_best_of_n", Json{{"n", 0}}},
                                                   {"deepconf", Json{{"n", 100}}},
                                                   {"self_consistency", Json{{"n", -1}}},
                                                   {"prm_beam_search", Json{{"n", 1000}}}};
  for (const auto& [policy, params] : too_many) {
    RequireRejected(policy, params, {policy, "'n'", "[1, 64]"});
  }
  RequireRejected("best_of_n", Json{{"n", 18446744073709551615ull}}, {"'n'", "[1, 64]"});
  RequireRejected("best_of_n", Json{{"n", -9223372036854775807ll}}, {"'n'", "[1, 64]"});
  RequireRejected("soft_best_of_n", Json{{"lambda", -0.1}}, {"'lambda'", "[0, "});
  RequireRejected("args", Json{{"k", 0}}, {"'args'", "'k'", "[1, 64]"});
  RequireRejected("args", Json{{"w", -1}}, {"'w'", "[0, 1000]"});
  RequireRejected("args", Json{{"temperature", 0}}, {"'temperature'", "(0, 100]"});
  RequireRejected("args", Json{{"temperature", 101}}, {"'temperature'", "(0, 100]"});
  RequireRejected("blockwise_cd", Json{{"m", 0}}, {"'blockwise_cd'", "'m'", "[1, 4096]"});
  RequireRejected("blockwise_cd", Json{{"k", 65}}, {"'k'", "[1, 64]"});
  RequireRejected("deepconf", Json{{"percentile", 0}}, {"'deepconf'", "'percentile'", "(0, 100)"});
  RequireRejected("deepconf", Json{{"percentile", 100}}, {"'percentile'", "(0, 100)"});
  RequireRejected("deepconf", Json{{"n", 8}, {"n_init", 9}}, {"'n_init'", "[1, n = 8]"});
  RequireRejected("deepconf", Json{{"window", 0}}, {"'window'", "[1, 65536]"});
  RequireRejected("deepconf", Json{{"consensus", 0}}, {"'consensus'", "(0, 1]"});
  RequireRejected("deepconf", Json{{"consensus", 1.5}}, {"'consensus'", "(0, 1]"});
  CHECK(ParseOk<DeepConfParams>("deepconf", Json{{"consensus", 0.95}}).consensus == 0.95);
  CHECK_FALSE(ParseOk<DeepConfParams>("deepconf", Json::object()).consensus.has_value());
  RequireRejected("deepconf", Json{{"top_k", 21}}, {"'top_k'", "[1, 20]"});
  RequireRejected("self_consistency", Json{{"n", 4}, {"window", 5}}, {"'window'", "[1, n = 4]"});
  RequireRejected("self_consistency", Json{{"rule", "adaptive"}},
                  {"'rule'", "\"none\", \"esc\", \"beta\"", "\"adaptive\""});
  RequireRejected("prm_beam_search", Json{{"n", 8}, {"beam_width", 3}},
                  {"'beam_width'", "divisor of n = 8"});
  RequireRejected("prm_beam_search", Json{{"n", 8}, {"beam_width", 9}}, {"[1, n = 8]"});
  // An odd n with the default beam_width (2) names the default as the culprit.
  RequireRejected("prm_beam_search", Json{{"n", 5}},
                  {"'prm_beam_search'", "'beam_width'", "divisor of n = 5", "got 2 (the default)"});
  REQUIRE(ParseOk<PrmBeamSearchParams>("prm_beam_search", Json{{"n", 5}, {"beam_width", 5}})
              .beam_width == 5);
  RequireRejected("prm_beam_search", Json{{"delimiter", ""}}, {"'delimiter'", "1 to 64 bytes"});
  RequireRejected("prm_beam_search", Json{{"delimiter", std::string(65, '-')}}, {"1 to 64 bytes"});
  RequireRejected("loop_guard", Json{{"window", 16}, {"ngram", 17}}, {"'ngram'", "window = 16"});
  RequireRejected("loop_guard", Json{{"window", 70000}}, {"'window'", "[1, 65536]"});
}

TEST_CASE("rule names round-trip", "[policy_params]") {
  for (SelfConsistencyRule rule :
       {SelfConsistencyRule::kNone, SelfConsistencyRule::kEsc, SelfConsistencyRule::kBeta}) {
    const auto parsed = ParseOk<SelfConsistencyParams>(
        "self_consistency", Json{{"rule", std::string(SelfConsistencyRuleName(rule))}});
    REQUIRE(parsed.rule == rule);
  }
}

}  // namespace
}  // namespace alignserve
