// MakePolicy: a request's `alignment` object ({"policy", "params"}) turned
// into the DecodingPolicy instance that serves that one request. Parameters
// are parsed and validated by ParsePolicySpec (policy_params.h), so every
// bad name or value is InvalidArgument with a message fit for a 400.
//
// Built: best_of_n, soft_best_of_n, args, blockwise_cd and prm_beam_search
// (scored by PolicyDeps::reward_model), self_consistency, deepconf,
// loop_guard, and any plugin policy in PolicyDeps::plugins (looked up
// first): every built-in. A built-in added to policy_params.h before its
// policy exists parses but returns Unimplemented, naming the policies that do.
//
// Thread-safety: MakePolicy is reentrant; PolicyDeps members must outlive
// the policies made with them and be safe to use from the engine thread.
#ifndef ALIGNSERVE_ALIGNMENT_POLICY_FACTORY_H_
#define ALIGNSERVE_ALIGNMENT_POLICY_FACTORY_H_

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "alignment/plugin_policy.h"
#include "alignment/reward_model.h"
#include "engine/decoding_policy.h"
#include "models/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace alignserve {

// What policies need from outside the request's params.
struct PolicyDeps {
  // Scores (prompt, response) pairs for the reward-guided policies; null:
  // they are InvalidArgument ("no reward model"). Shared across requests.
  std::shared_ptr<const RewardModel> reward_model;
  // Decodes the prompt tokens for the reward model when `prompt` is empty;
  // may be null. Not owned.
  const Tokenizer* tokenizer = nullptr;
  // The request's prompt as the reward model should read it (the user's
  // text, without a chat template); empty: the prompt tokens decoded.
  std::string prompt;
  // Policies loaded from plugins (--policy-plugin NAME=path.so), by name;
  // may be null. Not owned.
  const std::map<std::string, std::shared_ptr<PolicyPlugin>>* plugins = nullptr;
};

// The policies MakePolicy can build, in BuiltinPolicyNames() order.
const std::vector<std::string>& ImplementedPolicyNames();

// InvalidArgument: unknown policy or bad params (ParsePolicySpec's message),
// or a reward-guided policy without deps.reward_model.
// Unimplemented: a built-in policy not built yet.
absl::StatusOr<std::shared_ptr<DecodingPolicy>> MakePolicy(std::string_view name,
                                                           const nlohmann::json& params,
                                                           const PolicyDeps& deps);

}  // namespace alignserve

#endif  // ALIGNSERVE_ALIGNMENT_POLICY_FACTORY_H_
