#include "engine/scheduler.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"

namespace alignserve {

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(const SchedulerConfig& config) {
  RETURN_IF_ERROR(config.Validate());
  return std::unique_ptr<Scheduler>(new Scheduler(config));
}

Scheduler::Scheduler(const SchedulerConfig& config)
    : config_(config), kv_(config.num_blocks, config.block_size, config.enable_prefix_caching) {}

absl::StatusOr<int64_t> Scheduler::AddRequest(int64_t request_id, std::vector<int32_t> prompt,
                                              RequestParams params) {
  if (groups_.contains(request_id)) {
    return absl::AlreadyExistsError(absl::StrCat("request ", request_id, " already exists"));
  }
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt has no tokens");
  if (std::any_of(prompt.begin(), prompt.end(), [](int32_t t) { return t < 0; })) {
    return absl::InvalidArgumentError("the prompt has a negative token id");
  }
  if (params.sampling.max_tokens <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens must be positive, got ", params.sampling.max_tokens));
  }
  const int64_t needed = static_cast<int64_t>(prompt.size()) + 1;
  if (needed > config_.max_model_len) {
    return absl::InvalidArgumentError(absl::StrCat("prompt of ", prompt.size(),
                                                   " tokens leaves no room for output within ",
                                                   "max_model_len ", config_.max_model_len));
  }
  if (needed > config_.max_sequence_len()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("prompt of ", prompt.size(), " tokens can never fit in the KV cache of ",
                     config_.num_blocks, " blocks of ", config_.block_size, " tokens"));
  }
  auto group = std::make_unique<SequenceGroup>(request_id, std::move(params), next_arrival_++);
  Sequence& seq = group->AddSequence(
      std::make_unique<Sequence>(next_seq_id_++, group.get(), std::move(prompt)));
  live_[seq.seq_id()] = &seq;
  waiting_.insert(&seq);
  groups_[request_id] = std::move(group);
  return seq.seq_id();
}

StepPlan Scheduler::Schedule() {
  StepBuilder step;
  step.plan.block_size = config_.block_size;
  if (!in_flight_.empty()) return std::move(step.plan);
  step.budget = config_.max_num_batched_tokens;
  step.plan.seqs.reserve(std::min<size_t>(running_.size() + waiting_.size(),
                                          static_cast<size_t>(config_.max_num_seqs)));
  step.scheduled.reserve(step.plan.seqs.capacity());
  ScheduleRunning(step, /*decodes=*/true);
  ScheduleRunning(step, /*decodes=*/false);
  // Re-admitting in the step that preempted would only thrash.
  if (step.plan.preempted.empty()) AdmitWaiting(step);
  for (const ScheduledSequence& s : step.plan.seqs) {
    in_flight_.push_back(InFlight{s.seq_id, s.num_tokens(), s.sample});
  }
  return std::move(step.plan);
}

bool Scheduler::HasRoom(const StepBuilder& step) const {
  return step.budget > 0 && static_cast<int32_t>(step.plan.seqs.size()) < config_.max_num_seqs;
}

// One pass over running sequences in scheduling order: decodes (exactly one
// uncomputed token) or (re)prefills in progress. Preemption removes entries
// at or after index i only, so indices before i stay valid.
void Scheduler::ScheduleRunning(StepBuilder& step, bool decodes) {
  size_t i = 0;
  while (i < running_.size() && HasRoom(step)) {
    Sequence& seq = *running_[i];
    const bool is_decode = seq.num_uncomputed_tokens() == 1;
    if (is_decode != decodes || seq.paused() || step.scheduled.contains(&seq)) {
      ++i;
      continue;
    }
    const int32_t n = std::min(seq.num_uncomputed_tokens(), step.budget);
    if (!AllocateOrPreempt(seq, n, step)) continue;  // seq left running_; i is the next one
    Emit(seq, n, step);
    ++i;
  }
}

// Frees blocks by preempting younger sequences until seq's slots fit; if
// seq is itself the youngest left, preempts seq and returns false.
bool Scheduler::AllocateOrPreempt(Sequence& seq, int32_t num_tokens, StepBuilder& step) {
  while (!kv_.AllocateSlots(seq, num_tokens, step.plan.block_copies)) {
    Sequence* victim = YoungestUnscheduledAfter(seq, step);
    if (victim == nullptr) {
      Preempt(seq, step);
      return false;
    }
    Preempt(*victim, step);
  }
  return true;
}

Sequence* Scheduler::YoungestUnscheduledAfter(const Sequence& seq, const StepBuilder& step) const {
  for (auto it = running_.rbegin(); it != running_.rend() && *it != &seq; ++it) {
    // A paused sequence keeps its blocks: its policy holds it for scoring.
    if (!(*it)->paused() && !step.scheduled.contains(*it)) return *it;
  }
  return nullptr;
}

void Scheduler::Preempt(Sequence& seq, StepBuilder& step) {
  kv_.Free(seq);
  seq.MarkPreempted();
  RemoveRunning(&seq);
  waiting_.insert(&seq);
  step.plan.preempted.push_back(seq.seq_id());
}

// Admits from the head of the queue while budget, sequence slots and blocks
// last. The head is never skipped, so later arrivals cannot starve it;
// paused sequences are not the head (they wait for their policy, not for
// blocks).
void Scheduler::AdmitWaiting(StepBuilder& step) {
  auto next = waiting_.begin();
  while (HasRoom(step) && static_cast<int32_t>(running_.size()) < config_.max_num_seqs) {
    next = std::find_if(next, waiting_.end(), [](const Sequence* s) { return !s->paused(); });
    if (next == waiting_.end()) return;
    Sequence& seq = **next;
    const int32_t cached = kv_.NumCachedPrefixTokens(seq);
    if (WaitsForSharedPrefix(seq, cached, step)) {
      ++next;
      continue;
    }
    // A waiting sequence may already hold computed tokens (one that shares
    // another's, KvCacheManager::ShareComputed) or take cached ones, not both.
    const int32_t start = seq.num_computed_tokens() + cached;
    const int32_t n = std::min(seq.num_tokens() - start, step.budget);
    if (!kv_.AllocateSlots(seq, n, step.plan.block_copies)) return;
    if (config_.shared_prefix_wait_blocks > 0) {
      const size_t bs = static_cast<size_t>(config_.block_size);
      const size_t end =
          std::min(seq.kv().block_hashes.size(), static_cast<size_t>(start + n) / bs);
      for (size_t b = static_cast<size_t>(start) / bs; b < end; ++b) {
        step.computing.insert(seq.kv().block_hashes[b]);
      }
    }
    next = waiting_.erase(next);
    seq.set_status(SequenceStatus::kRunning);
    InsertRunning(&seq);
    step.plan.admitted.push_back(seq.seq_id());
    Emit(seq, n, step);
  }
}

void Scheduler::Recycle(StepPlan plan) {
  for (ScheduledSequence& s : plan.seqs) spare_.push_back(std::move(s));
}

void Scheduler::Emit(Sequence& seq, int32_t num_tokens, StepBuilder& step) {
  ScheduledSequence s;
  if (!spare_.empty()) {
    s = std::move(spare_.back());  // keeps the buffers; every field is set below
    spare_.pop_back();
  }
  s.seq_id = seq.seq_id();
  s.request_id = seq.request_id();
  s.start_pos = seq.num_computed_tokens();
  const auto first = seq.token_ids().begin() + s.start_pos;
  s.token_ids.assign(first, first + num_tokens);
  s.block_table.assign(seq.block_table().begin(), seq.block_table().end());
  s.sample = s.start_pos + num_tokens == seq.num_tokens();
  s.all_logits = false;
  step.plan.seqs.push_back(std::move(s));
  step.budget -= num_tokens;
  step.scheduled.insert(&seq);
}

absl::StatusOr<absl::flat_hash_map<int64_t, const SequenceOutput*>> Scheduler::MatchOutputs(
    const StepOutput& output) const {
  absl::flat_hash_set<int64_t> sampled;
  sampled.reserve(in_flight_.size());
  for (const InFlight& f : in_flight_) {
    if (f.sample) sampled.insert(f.seq_id);
  }
  absl::flat_hash_map<int64_t, const SequenceOutput*> by_seq;
  by_seq.reserve(output.outputs.size());
  for (const SequenceOutput& out : output.outputs) {
    if (!sampled.contains(out.seq_id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("output for sequence ", out.seq_id, ", which was not sampled this step"));
    }
    if (!by_seq.emplace(out.seq_id, &out).second) {
      return absl::InvalidArgumentError(absl::StrCat("two outputs for sequence ", out.seq_id));
    }
  }
  for (const int64_t seq_id : sampled) {
    if (live_.contains(seq_id) && !by_seq.contains(seq_id)) {
      return absl::InvalidArgumentError(absl::StrCat("no output for sampled sequence ", seq_id));
    }
  }
  return by_seq;
}

absl::StatusOr<std::vector<std::unique_ptr<SequenceGroup>>> Scheduler::Update(
    const StepOutput& output) {
  ASSIGN_OR_RETURN(const auto by_seq, MatchOutputs(output));
  std::vector<InFlight> done;
  done.swap(in_flight_);
  for (const InFlight& f : done) {
    const auto it = live_.find(f.seq_id);
    if (it == live_.end()) continue;  // aborted while in flight
    Sequence& seq = *it->second;
    kv_.CommitComputed(seq, f.num_tokens);
    if (f.sample) ApplyOutput(seq, *by_seq.at(f.seq_id));
  }
  return TakeFinishedGroups();
}

// Forks before appending, so children share exactly the computed blocks and
// each then writes its own token: the first write into a shared partial
// block copies it (copy-on-write).
void Scheduler::ApplyOutput(Sequence& seq, const SequenceOutput& out) {
  if (out.finish == FinishReason::kAbort) {
    FinishSequence(seq, FinishReason::kAbort);
    return;
  }
  for (const int32_t token : out.fork_tokens) {
    Sequence& child = ForkSequence(seq);
    child.AppendToken(token);
    FinishIfDone(child, FinishReason::kNone);
  }
  seq.AppendToken(out.token_id);
  FinishIfDone(seq, out.finish);
}

void Scheduler::FinishIfDone(Sequence& seq, FinishReason requested) {
  FinishReason reason = requested;
  if (reason == FinishReason::kNone &&
      (seq.num_output_tokens() >= seq.group().params().sampling.max_tokens ||
       seq.num_tokens() >= config_.max_sequence_len())) {
    reason = FinishReason::kLength;
  }
  if (reason != FinishReason::kNone) FinishSequence(seq, reason);
}

void Scheduler::FinishSequence(Sequence& seq, FinishReason reason) {
  if (reason != FinishReason::kAbort && seq.group().params().policy != nullptr &&
      !seq.kv().block_table.empty()) {
    retained_.push_back(&seq);
  } else {
    kv_.Free(seq);
  }
  if (seq.status() == SequenceStatus::kRunning) {
    RemoveRunning(&seq);
  } else {
    waiting_.erase(&seq);
  }
  seq.Finish(reason);
  live_.erase(seq.seq_id());
  touched_groups_.insert(seq.request_id());
}

void Scheduler::ReleaseRetained() {
  for (Sequence* seq : retained_) kv_.Free(*seq);
  retained_.clear();
}

void Scheduler::ReleaseRetainedOf(int64_t request_id) {
  std::erase_if(retained_, [&](Sequence* seq) {
    if (seq->request_id() != request_id) return false;
    kv_.Free(*seq);
    return true;
  });
}

int32_t Scheduler::ShareComputedKv(const Sequence& source, int64_t child_seq_id) {
  const auto it = live_.find(child_seq_id);
  if (it == live_.end()) return 0;
  Sequence& child = *it->second;
  const int32_t n = source.num_computed_tokens();
  if (n == 0 || source.kv().block_table.empty() || !child.kv().block_table.empty() ||
      child.status() != SequenceStatus::kWaiting || child.num_tokens() <= n) {
    return 0;
  }
  const std::span<const int32_t> a(source.token_ids()), b(child.token_ids());
  if (!std::equal(a.begin(), a.begin() + n, b.begin())) return 0;
  kv_.ShareComputed(source, child, n);
  return n;
}

Sequence& Scheduler::ForkSequence(Sequence& parent) {
  Sequence& child = parent.group().AddSequence(std::make_unique<Sequence>(next_seq_id_++, parent));
  kv_.Fork(parent, child);
  live_[child.seq_id()] = &child;
  if (child.status() == SequenceStatus::kRunning) {
    InsertRunning(&child);
  } else {
    waiting_.insert(&child);
  }
  return child;
}

absl::StatusOr<int64_t> Scheduler::Fork(int64_t seq_id) {
  if (!in_flight_.empty()) {
    return absl::FailedPreconditionError("Fork while a step is in flight");
  }
  const auto it = live_.find(seq_id);
  if (it == live_.end()) return absl::NotFoundError(absl::StrCat("no live sequence ", seq_id));
  return ForkSequence(*it->second).seq_id();
}

absl::StatusOr<std::unique_ptr<SequenceGroup>> Scheduler::FinishSequence(int64_t seq_id,
                                                                         FinishReason reason) {
  if (!in_flight_.empty()) {
    return absl::FailedPreconditionError("FinishSequence while a step is in flight");
  }
  if (reason == FinishReason::kNone) {
    return absl::InvalidArgumentError("FinishSequence needs a finish reason");
  }
  const auto it = live_.find(seq_id);
  if (it == live_.end()) return absl::NotFoundError(absl::StrCat("no live sequence ", seq_id));
  Sequence& seq = *it->second;
  const int64_t request_id = seq.request_id();
  FinishSequence(seq, reason);
  const auto group = groups_.find(request_id);
  if (group == groups_.end() || !group->second->is_finished()) return nullptr;
  std::unique_ptr<SequenceGroup> done = std::move(group->second);
  groups_.erase(group);
  touched_groups_.erase(request_id);
  return done;
}

absl::Status Scheduler::Pause(int64_t seq_id) {
  if (!in_flight_.empty()) return absl::FailedPreconditionError("Pause while a step is in flight");
  const auto it = live_.find(seq_id);
  if (it == live_.end()) return absl::NotFoundError(absl::StrCat("no live sequence ", seq_id));
  it->second->set_paused(true);
  return absl::OkStatus();
}

absl::Status Scheduler::Resume(int64_t seq_id) {
  if (!in_flight_.empty()) {
    return absl::FailedPreconditionError("Resume while a step is in flight");
  }
  const auto it = live_.find(seq_id);
  if (it == live_.end()) return absl::NotFoundError(absl::StrCat("no live sequence ", seq_id));
  it->second->set_paused(false);
  return absl::OkStatus();
}

bool Scheduler::WaitsForSharedPrefix(const Sequence& seq, int32_t cached,
                                     const StepBuilder& step) const {
  const int32_t want = config_.shared_prefix_wait_blocks;
  if (want <= 0 || step.computing.empty() || !kv_.ReadsPrefixCache(seq)) return false;
  int32_t run = 0;
  for (size_t b = static_cast<size_t>(cached / config_.block_size);
       b < seq.kv().block_hashes.size() && step.computing.contains(seq.kv().block_hashes[b]); ++b) {
    if (++run >= want) return true;
  }
  return false;
}

absl::StatusOr<std::unique_ptr<SequenceGroup>> Scheduler::Abort(int64_t request_id) {
  const auto it = groups_.find(request_id);
  if (it == groups_.end()) {
    return absl::NotFoundError(absl::StrCat("no unfinished request ", request_id));
  }
  for (const std::unique_ptr<Sequence>& seq : it->second->sequences()) {
    if (!seq->is_finished()) FinishSequence(*seq, FinishReason::kAbort);
  }
  std::unique_ptr<SequenceGroup> group = std::move(it->second);
  groups_.erase(it);
  touched_groups_.erase(request_id);
  return group;
}

std::vector<std::unique_ptr<SequenceGroup>> Scheduler::TakeFinishedGroups() {
  std::vector<std::unique_ptr<SequenceGroup>> finished;
  for (const int64_t request_id : touched_groups_) {
    const auto it = groups_.find(request_id);
    if (it == groups_.end() || !it->second->is_finished()) continue;
    finished.push_back(std::move(it->second));
    groups_.erase(it);
  }
  touched_groups_.clear();
  // Deterministic order for callers and tests.
  std::sort(finished.begin(), finished.end(),
            [](const auto& a, const auto& b) { return a->request_id() < b->request_id(); });
  return finished;
}

void Scheduler::InsertRunning(Sequence* seq) {
  running_.insert(std::upper_bound(running_.begin(), running_.end(), seq, ByRunsBefore()), seq);
}

void Scheduler::RemoveRunning(Sequence* seq) {
  running_.erase(std::find(running_.begin(), running_.end(), seq));
}

const Sequence* Scheduler::FindSequence(int64_t seq_id) const {
  const auto it = live_.find(seq_id);
  return it == live_.end() ? nullptr : it->second;
}

std::vector<const Sequence*> Scheduler::running() const {
  return std::vector<const Sequence*>(running_.begin(), running_.end());
}

std::vector<const Sequence*> Scheduler::waiting() const {
  return std::vector<const Sequence*>(waiting_.begin(), waiting_.end());
}

}  // namespace alignserve
