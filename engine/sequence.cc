#include "engine/sequence.h"

#include <algorithm>
#include <tuple>
#include <utility>

namespace alignserve {

std::string_view ToString(SequenceStatus status) {
  switch (status) {
    case SequenceStatus::kWaiting:
      return "waiting";
    case SequenceStatus::kRunning:
      return "running";
    case SequenceStatus::kPreempted:
      return "preempted";
    case SequenceStatus::kFinished:
      return "finished";
  }
  return "unknown";
}

std::string_view ToString(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone:
      return "none";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAbort:
      return "abort";
  }
  return "unknown";
}

Sequence::Sequence(int64_t seq_id, SequenceGroup* group, std::vector<int32_t> prompt)
    : seq_id_(seq_id),
      group_(group),
      token_ids_(std::move(prompt)),
      num_prompt_tokens_(static_cast<int32_t>(token_ids_.size())) {}

Sequence::Sequence(int64_t seq_id, const Sequence& parent)
    : seq_id_(seq_id),
      group_(parent.group_),
      token_ids_(parent.token_ids_),
      num_prompt_tokens_(parent.num_prompt_tokens_),
      status_(parent.status_) {
  // Content hashes depend on tokens only, so the child can reuse them.
  kv_.block_hashes = parent.kv_.block_hashes;
}

int64_t Sequence::request_id() const { return group_->request_id(); }

std::string_view Sequence::cache_salt() const { return group_->params().cache_salt; }

std::span<const int32_t> Sequence::output_token_ids() const {
  return std::span<const int32_t>(token_ids_).subspan(num_prompt_tokens_);
}

void Sequence::MarkPreempted() {
  status_ = SequenceStatus::kPreempted;
  ++num_preemptions_;
}

void Sequence::Finish(FinishReason reason) {
  status_ = SequenceStatus::kFinished;
  finish_reason_ = reason;
}

bool RunsBefore(const Sequence& a, const Sequence& b) {
  const auto key = [](const Sequence& s) {
    return std::make_tuple(s.group().params().priority, s.group().arrival(), s.seq_id());
  };
  return key(a) < key(b);
}

SequenceGroup::SequenceGroup(int64_t request_id, RequestParams params, int64_t arrival)
    : request_id_(request_id), params_(std::move(params)), arrival_(arrival) {}

Sequence& SequenceGroup::AddSequence(std::unique_ptr<Sequence> seq) {
  seqs_.push_back(std::move(seq));
  return *seqs_.back();
}

bool SequenceGroup::is_finished() const {
  return std::all_of(seqs_.begin(), seqs_.end(),
                     [](const std::unique_ptr<Sequence>& s) { return s->is_finished(); });
}

}  // namespace alignserve
