// MakePolicy: a request's `alignment` object ({"policy", "params"}) turned
// into the DecodingPolicy instance that serves that one request. Parameters
// are parsed and validated by ParsePolicySpec (policy_params.h), so every
// bad name or value is InvalidArgument with a message fit for a 400.
//
// Built so far: self_consistency, deepconf, loop_guard (the policies that
// need no reward model). The reward-guided ones (best_of_n, soft_best_of_n,
// args, blockwise_cd, prm_beam_search) parse but return Unimplemented,
// naming the policies that exist; they will take their reward model from
// PolicyDeps.
//
// Thread-safety: MakePolicy is reentrant; PolicyDeps members must outlive
// the policies made with them and be safe to use from the engine thread.
#ifndef ALIGNSERVE_ALIGNMENT_POLICY_FACTORY_H_
#define ALIGNSERVE_ALIGNMENT_POLICY_FACTORY_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/decoding_policy.h"
#include "nlohmann/json.hpp"

namespace alignserve {

// What policies need from outside the request. Empty for now: the reward
// model (for best_of_n, args, ...) is added here when it lands.
struct PolicyDeps {};

// The policies MakePolicy can build, in BuiltinPolicyNames() order.
const std::vector<std::string>& ImplementedPolicyNames();

// InvalidArgument: unknown policy or bad params (ParsePolicySpec's message).
// Unimplemented: a built-in policy not built yet.
absl::StatusOr<std::shared_ptr<DecodingPolicy>> MakePolicy(std::string_view name,
                                                           const nlohmann::json& params,
                                                           const PolicyDeps& deps);

}  // namespace alignserve

#endif  // ALIGNSERVE_ALIGNMENT_POLICY_FACTORY_H_
