#include "server/alignment_spec.h"

#include <cstdint>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "alignment/policy_factory.h"
#include "kernels/status_macros.h"
#include "server/api_error.h"
#include "server/openai_request.h"

namespace alignserve {
namespace {

// Lets ParseDefaultPolicyFlags build the reward-guided policies before the
// served model (the judge) is loaded. The policies built with it are
// dropped unused.
class StandInRewardModel final : public RewardModel {
 public:
  absl::StatusOr<int64_t> Submit(const RewardInput&, PolicyContext&) const override {
    return absl::FailedPreconditionError("stand-in reward model used to check flags only");
  }
  double Reward(const ScoreResult&) const override { return 0.0; }
};

// The reward model the request names: from the server's set, or (without
// one) "judge", the context's only model.
absl::StatusOr<std::shared_ptr<const RewardModel>> FindRewardModel(const AlignmentSpec& spec,
                                                                   const ServeContext& ctx,
                                                                   const std::string& param) {
  if (ctx.reward_models != nullptr) {
    absl::StatusOr<std::shared_ptr<const RewardModel>> found =
        ctx.reward_models->Find(spec.reward_model);
    if (!found.ok()) return InvalidParamError(param, std::string(found.status().message()));
    return found;
  }
  if (spec.reward_model.empty() || spec.reward_model == "judge" || spec.reward_model == "default") {
    return ctx.reward_model;
  }
  return InvalidParamError(param,
                           "reward_model must be \"judge\" (the served model reading the rubric), "
                           "the only reward model this server declares");
}

absl::Status CheckSampleCount(const OpenAiRequest& req, bool from_default,
                              const std::string& policy) {
  if (req.params.n == 1) return absl::OkStatus();
  std::string what = absl::StrCat(
      "must be 1 with a policy (the policy's params set its sample count), got ", req.params.n);
  if (from_default) {
    absl::StrAppend(&what, "; the server's default policy '", policy,
                    "' applies to this request: send \"alignment\": {\"policy\": \"none\"} for ",
                    req.params.n, " plain samples");
  }
  return InvalidParamError("n", what);
}

}  // namespace

absl::Status ApplyAlignment(const std::optional<AlignmentSpec>& given,
                            const std::vector<std::string>& reward_prompts, const ServeContext& ctx,
                            const std::string& param, OpenAiRequest* req) {
  const bool from_default = !given.has_value();
  const AlignmentSpec& spec = from_default ? ctx.default_alignment : *given;
  if (!from_default && spec.policy.empty()) {
    return InvalidParamError(param, "policy is required: a policy name, or \"none\" for none");
  }
  if (spec.policy.empty() || spec.policy == kNoPolicy) return absl::OkStatus();
  ASSIGN_OR_RETURN(const std::shared_ptr<const RewardModel> reward_model,
                   FindRewardModel(spec, ctx, param));
  RETURN_IF_ERROR(CheckSampleCount(*req, from_default, spec.policy));
  std::vector<std::shared_ptr<DecodingPolicy>> policies;
  for (size_t i = 0; i < req->prompts.size(); ++i) {
    PolicyDeps deps;
    deps.reward_model = reward_model;
    deps.tokenizer = ctx.text != nullptr ? ctx.text->tokenizer.get() : nullptr;
    deps.prompt = i < reward_prompts.size() ? reward_prompts[i] : "";
    deps.plugins = ctx.policy_plugins;
    absl::StatusOr<std::shared_ptr<DecodingPolicy>> policy =
        MakePolicy(spec.policy, spec.params, deps);
    if (!policy.ok()) {
      return ParamError(policy.status().code(), param, std::string(policy.status().message()));
    }
    policies.push_back(std::move(*policy));
  }
  req->policies = std::move(policies);
  req->policy_name = spec.policy;
  return absl::OkStatus();
}

absl::StatusOr<AlignmentSpec> ParseDefaultPolicyFlags(
    const std::string& name, const std::string& params_json,
    const std::map<std::string, std::shared_ptr<PolicyPlugin>>* plugins) {
  AlignmentSpec spec;
  if (name.empty() || name == kNoPolicy) return spec;
  spec.policy = name;
  spec.params = nlohmann::json::parse(params_json, nullptr, /*allow_exceptions=*/false);
  if (spec.params.is_discarded() || !spec.params.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--default-policy-params must be a JSON object such as '{\"n\": 4}', got '",
                     params_json, "'"));
  }
  PolicyDeps deps;
  deps.reward_model = std::make_shared<StandInRewardModel>();
  deps.plugins = plugins;
  absl::StatusOr<std::shared_ptr<DecodingPolicy>> policy = MakePolicy(name, spec.params, deps);
  if (!policy.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--default-policy ", name, " --default-policy-params '", params_json,
        "': ", policy.status().message(),
        " (see the README's alignment section; --default-policy none or empty: no default)"));
  }
  return spec;
}

}  // namespace alignserve
