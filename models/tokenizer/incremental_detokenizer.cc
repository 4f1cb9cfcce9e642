#include "models/tokenizer/incremental_detokenizer.h"

#include "models/tokenizer/utf8.h"

namespace alignserve {

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(tokenizer), skip_special_(skip_special) {}

std::string IncrementalDetokenizer::Append(int32_t token) {
  if (token < 0 || token >= tokenizer_.vocab_size()) return "";
  if (skip_special_ && tokenizer_.IsSpecial(token)) return "";
  if (tokenizer_.text_rule() == Tokenizer::TextRule::kSentencePiece) {
    return AppendSentencePiece(token);
  }
  return AppendByteLevel(token);
}

std::string IncrementalDetokenizer::AppendByteLevel(int32_t token) {
  // Lossy UTF-8 decoding decides each character from its own bytes only, so
  // resuming at a held-back tail gives what decoding everything at once does.
  pending_ += tokenizer_.TokenBytes(token);
  std::string out;
  const size_t held = AppendLossyUtf8HoldTail(pending_, &out);
  pending_.erase(0, pending_.size() - held);
  return out;
}

void IncrementalDetokenizer::FlushByteRun(std::string* out) {
  if (IsValidUtf8(pending_)) {
    *out += pending_;
  } else {
    for (size_t i = 0; i < pending_.size(); ++i) *out += kReplacementChar;
  }
  pending_.clear();
}

std::string IncrementalDetokenizer::StripLeadingSpace(std::string text) {
  if (at_start_ && !text.empty()) {
    at_start_ = false;
    if (text[0] == ' ') text.erase(0, 1);
  }
  return text;
}

std::string IncrementalDetokenizer::AppendSentencePiece(int32_t token) {
  if (tokenizer_.IsByteToken(token)) {
    pending_ += tokenizer_.TokenBytes(token);
    return "";
  }
  std::string out;
  FlushByteRun(&out);
  out += tokenizer_.TokenBytes(token);
  return StripLeadingSpace(std::move(out));
}

std::string IncrementalDetokenizer::Flush() {
  std::string out;
  if (tokenizer_.text_rule() == Tokenizer::TextRule::kSentencePiece) {
    FlushByteRun(&out);
    return StripLeadingSpace(std::move(out));
  }
  AppendLossyUtf8(pending_, &out);
  pending_.clear();
  return out;
}

}  // namespace alignserve
