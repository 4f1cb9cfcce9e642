#include "server/reward_models.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "alignment/judge_reward_model.h"
#include "alignment/score_head_reward_model.h"
#include "alignment/self_judge_reward_model.h"
#include "kernels/status_macros.h"

namespace alignserve {
namespace {

absl::Status BadEntry(std::string_view entry, std::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("--reward-model: '", std::string(entry), "' ", std::string(why),
                   " (expected NAME=KIND:PATH with KIND judge or score_head, e.g. "
                   "rm=score_head:/models/Skywork-Reward-Llama-3.1-8B)"));
}

}  // namespace

void AddRewardModelFlags(ArgParser& args, RewardModelFlags* f) {
  args.AddString("reward-model", &f->reward_models,
                 "reward models of their own weights, NAME=KIND:PATH[,...]: KIND judge (a causal "
                 "LM reading the judge rubric) or score_head (an HF "
                 "LlamaForSequenceClassification folder, e.g. Skywork-Reward); requests name "
                 "them as alignment.reward_model; 'judge' (the rubric) and 'self_judge' (asked "
                 "after its own response, KV cache reused) are always the served model");
  args.AddString("default-reward-model", &f->default_reward_model,
                 "the reward model of requests that name none: judge, self_judge or a "
                 "--reward-model NAME");
  args.AddFloat("reward-gpu-memory-utilization", &f->reward_gpu_memory_utilization,
                "share of the GPU each --reward-model may use for its weights and KV cache; they "
                "load first, and --gpu-memory-utilization caps the total");
  args.AddFloat("reward-kv-cache-gib", &f->reward_kv_cache_gib,
                "KV cache of each --reward-model on the CPU, GiB");
  args.AddString("self-judge-question", &f->self_judge_question,
                 "the question self_judge asks after a response (answered Yes or No); empty: "
                 "'" +
                     std::string(SelfJudgeRewardModel::kDefaultQuestion) + "'");
}

absl::StatusOr<std::vector<RewardModelSpec>> ParseRewardModelFlag(std::string_view flag) {
  std::vector<RewardModelSpec> specs;
  if (flag.empty()) return specs;
  const std::vector<std::string> entries = absl::StrSplit(std::string(flag), ',');
  for (const std::string& entry_text : entries) {
    const std::string_view entry = entry_text;
    const size_t eq = entry.find('=');
    if (eq == std::string_view::npos) return BadEntry(entry, "has no '='");
    const size_t colon = entry.find(':', eq);
    if (colon == std::string_view::npos) return BadEntry(entry, "has no ':' after the kind");
    RewardModelSpec spec{std::string(entry.substr(0, eq)),
                         std::string(entry.substr(eq + 1, colon - eq - 1)),
                         std::string(entry.substr(colon + 1))};
    if (spec.name.empty()) return BadEntry(entry, "has an empty name");
    if (spec.name == "judge" || spec.name == "self_judge" || spec.name == "default" ||
        spec.name == "none") {
      return BadEntry(entry, "uses a reserved name (judge, self_judge, default, none)");
    }
    if (spec.kind != "judge" && spec.kind != "score_head") {
      return BadEntry(entry, absl::StrCat("has unknown kind '", spec.kind, "'"));
    }
    if (spec.path.empty()) return BadEntry(entry, "has an empty path");
    for (const RewardModelSpec& s : specs) {
      if (s.name == spec.name) return BadEntry(entry, "repeats a name");
    }
    specs.push_back(std::move(spec));
  }
  return specs;
}

absl::StatusOr<std::vector<RewardModelSpec>> ParseRewardModelFlags(const RewardModelFlags& f) {
  ASSIGN_OR_RETURN(std::vector<RewardModelSpec> specs, ParseRewardModelFlag(f.reward_models));
  const std::string& name = f.default_reward_model;
  if (name != "judge" && name != "self_judge" &&
      std::none_of(specs.begin(), specs.end(),
                   [&](const RewardModelSpec& s) { return s.name == name; })) {
    return absl::InvalidArgumentError(
        absl::StrCat("--default-reward-model '", name,
                     "' is neither judge, self_judge nor a --reward-model NAME"));
  }
  if (!(f.reward_gpu_memory_utilization > 0.0f && f.reward_gpu_memory_utilization < 1.0f)) {
    return absl::InvalidArgumentError("--reward-gpu-memory-utilization must be in (0, 1)");
  }
  if (!(f.reward_kv_cache_gib > 0.0f)) {
    return absl::InvalidArgumentError("--reward-kv-cache-gib must be > 0");
  }
  return specs;
}

absl::StatusOr<std::vector<std::unique_ptr<LlmEngine>>> BuildScorerEngines(
    const std::vector<RewardModelSpec>& specs, const EngineFlags& served,
    const RewardModelFlags& f) {
  std::vector<std::unique_ptr<LlmEngine>> scorers;
  for (const RewardModelSpec& spec : specs) {
    EngineFlags flags = served;
    flags.model = spec.path;
    flags.num_blocks = 0;
    flags.max_model_len = 0;  // its own context length
    flags.skip_tokenizer_init = false;
    flags.gpu_memory_utilization = f.reward_gpu_memory_utilization;
    flags.kv_cache_gib = f.reward_kv_cache_gib;
    absl::StatusOr<std::unique_ptr<LlmEngine>> engine =
        BuildEngine(flags, /*cpu_num_blocks=*/0, /*seed=*/0, /*fault_injection=*/false);
    if (!engine.ok()) {
      return absl::Status(engine.status().code(), absl::StrCat("--reward-model ", spec.name, ": ",
                                                               engine.status().message()));
    }
    scorers.push_back(std::move(*engine));
  }
  return scorers;
}

absl::StatusOr<std::unique_ptr<RewardModelSet>> RewardModelSet::Create(
    LlmEngine& engine, std::vector<std::unique_ptr<LlmEngine>> scorers,
    const std::vector<RewardModelSpec>& specs, const Rubric& rubric,
    const std::string& default_name, const std::string& self_judge_question) {
  if (scorers.size() != specs.size()) {
    return absl::InvalidArgumentError("one scorer engine per reward model spec");
  }
  auto set = std::unique_ptr<RewardModelSet>(new RewardModelSet());
  ASSIGN_OR_RETURN(set->models_["judge"],
                   JudgeRewardModel::Create(engine.text().tokenizer.get(), rubric));
  absl::StatusOr<std::shared_ptr<const SelfJudgeRewardModel>> self_judge =
      SelfJudgeRewardModel::Create(engine.text(),
                                   self_judge_question.empty()
                                       ? std::string(SelfJudgeRewardModel::kDefaultQuestion)
                                       : self_judge_question);
  if (!self_judge.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--self-judge-question: ", self_judge.status().message()));
  }
  set->models_["self_judge"] = std::move(*self_judge);
  for (size_t i = 0; i < specs.size(); ++i) {
    const RewardModelSpec& spec = specs[i];
    const int k = engine.AttachScorer(std::move(scorers[i]));
    const LlmEngine& scorer = *engine.scorer(k);
    absl::StatusOr<std::shared_ptr<const RewardModel>> model;
    if (spec.kind == "judge") {
      model = JudgeRewardModel::Create(scorer.text().tokenizer.get(), rubric, k);
    } else if (scorer.model_config().num_labels == 0) {
      model = absl::InvalidArgumentError(
          "is a causal LM, not a sequence classifier (its config.json names no "
          "*ForSequenceClassification architecture): declare it as judge");
    } else {
      model = ScoreHeadRewardModel::Create(scorer.text(), scorer.model_config().num_labels, k);
    }
    if (!model.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--reward-model ", spec.name, ": ", model.status().message()));
    }
    set->models_[spec.name] = std::move(*model);
  }
  set->default_name_ = default_name;
  if (!set->models_.contains(default_name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--default-reward-model '", default_name,
                     "' is not one of: ", absl::StrJoin(set->names(), ", ")));
  }
  return set;
}

absl::StatusOr<std::shared_ptr<const RewardModel>> RewardModelSet::Find(
    std::string_view name) const {
  if (name.empty() || name == "default") name = default_name_;
  const auto it = models_.find(name);
  if (it == models_.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown reward_model '", std::string(name),
                     "'; this server has: ", absl::StrJoin(names(), ", ")));
  }
  return it->second;
}

std::vector<std::string> RewardModelSet::names() const {
  std::vector<std::string> out;
  for (const auto& [name, model] : models_) out.push_back(name);
  return out;
}

}  // namespace alignserve
