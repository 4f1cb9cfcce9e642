// AlignmentSpec: a request's alignment as both front ends receive it,
// {policy, params, reward_model} (HTTP's "alignment" object, gRPC's
// GenerateRequest.alignment), and ApplyAlignment, the one place where it
// becomes the DecodingPolicy instances of a request, with its errors. The
// server's default policy (serve --default-policy, --default-policy-params)
// applies to requests that name none; "none" opts out of it.
//
// Errors carry the field they are about as their param (server/api_error.h):
// the caller's field name ("alignment", or "policy" for HTTP's shorthand)
// for unknown policies, bad params (ParsePolicySpec's message, naming the
// parameter), a reward model the server does not declare (ServeContext::
// reward_models; without a set only "judge"), and a reward-guided policy
// without ServeContext::reward_model (all InvalidArgument); built-in
// policies not implemented yet are Unimplemented. n above 1 with a policy
// is InvalidArgument with param "n" (a policy decides its own sample count).
// Thread-safety: pure functions; ServeContext is read-only.
#ifndef ALIGNSERVE_SERVER_ALIGNMENT_SPEC_H_
#define ALIGNSERVE_SERVER_ALIGNMENT_SPEC_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "alignment/plugin_policy.h"
#include "nlohmann/json.hpp"

namespace alignserve {

struct ServeContext;   // server/openai_request.h
struct OpenAiRequest;  // server/openai_request.h

// The policy name that means "no policy": plain sampling, even where the
// server has a default policy. No built-in or plugin policy has this name.
inline constexpr char kNoPolicy[] = "none";

struct AlignmentSpec {
  std::string policy;  // a built-in or plugin policy name, or kNoPolicy
  // The policy's parameters: a JSON object, or null for its defaults.
  nlohmann::json params = nullptr;
  // The reward model that scores the reward-guided policies: "" or
  // "default" (--default-reward-model), "judge" (the served model), or a
  // --reward-model NAME (server/reward_models.h).
  std::string reward_model;
};

// Sets req->policy_name and req->policies (one fresh instance per prompt,
// policies[i] for prompts[i]) from `given`, or from ctx.default_alignment
// when the request named no alignment. `reward_prompts[i]` is prompt i as
// the reward model reads it ("" : the prompt tokens decoded). `param` is the
// request field errors name. Call once the prompts and n are read.
absl::Status ApplyAlignment(const std::optional<AlignmentSpec>& given,
                            const std::vector<std::string>& reward_prompts, const ServeContext& ctx,
                            const std::string& param, OpenAiRequest* req);

// serve's --default-policy NAME and --default-policy-params JSON, checked
// once at start-up by building the policy (with a stand-in reward model, so
// the served model need not be loaded): an unknown name, params that are not
// a JSON object or that the policy refuses, and policies not implemented
// yet are InvalidArgument naming the flag. An empty name (or "none") is no
// default policy. `plugins` are the --policy-plugin policies (may be null).
absl::StatusOr<AlignmentSpec> ParseDefaultPolicyFlags(
    const std::string& name, const std::string& params_json,
    const std::map<std::string, std::shared_ptr<PolicyPlugin>>* plugins);

}  // namespace alignserve

#endif  // ALIGNSERVE_SERVER_ALIGNMENT_SPEC_H_
