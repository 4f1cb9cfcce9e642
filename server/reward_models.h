// Reward models a server offers to the `alignment` object's
// "reward_model" field (issue 5), by name:
//   "judge"  the served model reading the judge rubric (--judge-rubric);
//            always present, scorer 0 (alignment/judge_reward_model.h).
//   "self_judge"  the served model asked about its own response in the
//            same conversation, its KV cache reused: cheaper than judge;
//            always present, scorer 0 (alignment/self_judge_reward_model.h).
//   NAME     each --reward-model NAME=KIND:PATH, a model of its own:
//            KIND judge       a second causal LM reading the same rubric;
//            KIND score_head  an HF LlamaForSequenceClassification folder
//                             (alignment/score_head_reward_model.h).
// Each declared model loads on the served model's device as a scorer
// engine (LlmEngine::AttachScorer) with its own KV pool: on a GPU its
// weights and KV cache take up to --reward-gpu-memory-utilization of the
// device and are loaded before the served model, whose
// --gpu-memory-utilization caps the total; on the CPU its KV cache is
// --reward-kv-cache-gib. A request names one; "default" or no name takes
// --default-reward-model.
//
// Thread-safety: built at start-up on one thread; the RewardModelSet is
// then immutable and its models are used from the engine thread only.
#ifndef ALIGNSERVE_SERVER_REWARD_MODELS_H_
#define ALIGNSERVE_SERVER_REWARD_MODELS_H_

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "alignment/reward_model.h"
#include "alignment/rubric.h"
#include "engine/llm_engine.h"
#include "server/engine_setup.h"

namespace alignserve {

struct RewardModelSpec {
  std::string name;
  std::string kind;  // "judge" or "score_head"
  std::string path;  // a model folder or .gguf file, as --model takes it
};

struct RewardModelFlags {
  std::string reward_models;  // NAME=KIND:PATH[,NAME=KIND:PATH...]
  std::string default_reward_model = "judge";
  float reward_gpu_memory_utilization = 0.2f;
  float reward_kv_cache_gib = 0.25f;
  std::string self_judge_question;  // empty: SelfJudgeRewardModel::kDefaultQuestion
};

// Declares the flags above on `args` (targets in *f).
void AddRewardModelFlags(ArgParser& args, RewardModelFlags* f);

// InvalidArgument naming the flag and the bad entry: a missing '=' or ':',
// an unknown kind, an empty or repeated name, or the reserved names
// "judge", "self_judge", "default" and "none".
absl::StatusOr<std::vector<RewardModelSpec>> ParseRewardModelFlag(std::string_view flag);

// All of RewardModelFlags checked before anything loads: the
// --reward-model list as above, a --default-reward-model that is "judge",
// "self_judge" or one of its names, and the two sizes in range (InvalidArgument naming
// the flag). Returns the declared models.
absl::StatusOr<std::vector<RewardModelSpec>> ParseRewardModelFlags(const RewardModelFlags& f);

// The scorer engines of `specs`, in order, built on the served engine's
// device (`served` gives device, block size and step limits). Load errors
// name the reward model.
absl::StatusOr<std::vector<std::unique_ptr<LlmEngine>>> BuildScorerEngines(
    const std::vector<RewardModelSpec>& specs, const EngineFlags& served,
    const RewardModelFlags& f);

class RewardModelSet {
 public:
  // Attaches `scorers` (from BuildScorerEngines(specs)) to `engine` and
  // makes the reward model of each, plus "judge" and "self_judge" on the
  // served model.
  // InvalidArgument when the default is not among them, or a model cannot
  // serve its kind (a score_head without a classifier head or tokenizer, a
  // judge whose verdict tokens cannot be told apart).
  static absl::StatusOr<std::unique_ptr<RewardModelSet>> Create(
      LlmEngine& engine, std::vector<std::unique_ptr<LlmEngine>> scorers,
      const std::vector<RewardModelSpec>& specs, const Rubric& rubric,
      const std::string& default_name, const std::string& self_judge_question = "");

  // The model a request names ("" or "default": the default); InvalidArgument
  // listing the names when there is none of that name.
  absl::StatusOr<std::shared_ptr<const RewardModel>> Find(std::string_view name) const;
  const std::string& default_name() const { return default_name_; }
  std::vector<std::string> names() const;

 private:
  std::map<std::string, std::shared_ptr<const RewardModel>, std::less<>> models_;
  std::string default_name_;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_SERVER_REWARD_MODELS_H_
