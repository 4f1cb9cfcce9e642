#include "models/tokenizer/bpe_tokenizer.h"

#include <queue>

#include "absl/strings/str_cat.h"
#include "models/tokenizer/byte_level.h"
#include "models/tokenizer/utf8.h"

namespace alignserve {
namespace {

// One pending merge of the symbols at `left` and its right neighbour. Ordered
// so the queue yields the lowest rank first, then the leftmost position, as
// HF's BPE word merge does.
struct Candidate {
  int32_t rank;
  int32_t left;     // symbol index; indices increase left to right
  int32_t left_id;  // ids at push time, to detect stale entries
  int32_t right_id;
  bool operator>(const Candidate& o) const {
    return rank != o.rank ? rank > o.rank : left > o.left;
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> CreateBpeTokenizerFromSpec(BpeTokenizerSpec spec) {
  std::unique_ptr<BpeTokenizer> tok(new BpeTokenizer());
  const size_t n = spec.tokens.size();
  tok->token_bytes_.resize(n);
  tok->special_.assign(n, false);
  tok->token_ids_.reserve(n);
  for (size_t id = 0; id < n; ++id) {
    const std::string& s = spec.tokens[id];
    tok->token_bytes_[id] = ByteLevelToBytes(s);
    if (!s.empty()) tok->token_ids_.try_emplace(s, static_cast<int32_t>(id));
  }
  for (const AddedToken& t : spec.added_tokens) {
    if (t.id < 0 || static_cast<size_t>(t.id) >= n) {
      return absl::InvalidArgumentError(absl::StrCat("added token '", t.content, "' has id ", t.id,
                                                     " outside the vocabulary of ", n));
    }
    tok->special_[t.id] = t.special;
    tok->token_ids_[t.content] = t.id;
  }
  for (int b = 0; b < 256; ++b) {
    auto it = tok->token_ids_.find(ByteLevelChar(static_cast<uint8_t>(b)));
    tok->byte_token_[b] = it == tok->token_ids_.end() ? -1 : it->second;
  }
  tok->merges_.reserve(spec.merges.size());
  for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
    const auto& [a, b] = spec.merges[rank];
    auto ia = tok->token_ids_.find(a);
    auto ib = tok->token_ids_.find(b);
    auto im = tok->token_ids_.find(a + b);
    if (ia == tok->token_ids_.end() || ib == tok->token_ids_.end() || im == tok->token_ids_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("BPE merge ", rank, " '", a, " ", b,
                                                     "' uses a token not in the vocabulary"));
    }
    // The first (lowest) rank of a pair wins, as in HF.
    tok->merges_.try_emplace(BpeTokenizer::PairKey(ia->second, ib->second),
                             BpeTokenizer::Merge{static_cast<int32_t>(rank), im->second});
  }
  tok->pre_ = spec.pre;
  tok->ignore_merges_ = spec.ignore_merges;
  tok->added_ = AddedTokenMatcher(std::move(spec.added_tokens));
  tok->bos_id_ = spec.bos_id;
  tok->eos_id_ = spec.eos_id;
  tok->add_bos_by_default_ = spec.add_bos;
  return std::unique_ptr<Tokenizer>(std::move(tok));
}

void BpeTokenizer::ApplyMerges(std::vector<int32_t>* symbols) const {
  std::vector<int32_t>& ids = *symbols;
  const int32_t n = static_cast<int32_t>(ids.size());
  // Doubly linked list over symbol slots; merged-away slots get id -1.
  std::vector<int32_t> prev(n), next(n);
  for (int32_t i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto push = [&](int32_t left) {
    if (left < 0 || next[left] < 0) return;
    auto it = merges_.find(PairKey(ids[left], ids[next[left]]));
    if (it != merges_.end()) {
      queue.push({it->second.rank, left, ids[left], ids[next[left]]});
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    const int32_t right = next[c.left];
    if (ids[c.left] != c.left_id || right < 0 || ids[right] != c.right_id) {
      continue;  // stale: one side has merged since
    }
    ids[c.left] = merges_.find(PairKey(c.left_id, c.right_id))->second.merged_id;
    ids[right] = -1;
    next[c.left] = next[right];
    if (next[right] >= 0) prev[next[right]] = c.left;
    push(prev[c.left]);
    push(c.left);
  }
  std::erase(ids, -1);
}

void BpeTokenizer::EncodeWord(std::string_view word, std::vector<int32_t>* out) const {
  if (ignore_merges_) {
    auto it = token_ids_.find(BytesToByteLevel(word));
    if (it != token_ids_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  std::vector<int32_t> symbols;
  symbols.reserve(word.size());
  for (char c : word) {
    // A byte missing from the vocabulary is dropped, as HF's BPE does
    // without an unk token; a full byte-level alphabet never misses one.
    const int32_t id = byte_token_[static_cast<uint8_t>(c)];
    if (id >= 0) symbols.push_back(id);
  }
  if (symbols.size() > 1) ApplyMerges(&symbols);
  out->insert(out->end(), symbols.begin(), symbols.end());
}

std::vector<int32_t> BpeTokenizer::Encode(std::string_view text, bool add_bos,
                                          bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos && bos_id_ >= 0) out.push_back(bos_id_);
  std::vector<std::string_view> words;
  for (const TextSegment& seg : added_.Split(text, parse_special)) {
    if (seg.id >= 0) {
      out.push_back(seg.id);
      continue;
    }
    words.clear();
    PreTokenize(pre_, seg.text, &words);
    for (std::string_view w : words) EncodeWord(w, &out);
  }
  return out;
}

std::string BpeTokenizer::TokenBytes(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return "";
  return token_bytes_[id];
}

std::string BpeTokenizer::Decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) continue;
    if (skip_special && special_[id]) continue;
    bytes += token_bytes_[id];
  }
  std::string text;
  text.reserve(bytes.size());
  AppendLossyUtf8(bytes, &text);
  return text;
}

bool BpeTokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size() && special_[id];
}

std::optional<int32_t> BpeTokenizer::TokenId(std::string_view piece) const {
  auto it = token_ids_.find(absl::string_view(piece.data(), piece.size()));
  if (it == token_ids_.end()) return std::nullopt;
  return it->second;
}

}  // namespace alignserve
