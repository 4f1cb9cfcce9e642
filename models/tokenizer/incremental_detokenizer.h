// IncrementalDetokenizer: turns one sequence's generated tokens into text
// deltas for streaming. Each Append returns only text that is final: it never
// ends inside a UTF-8 sequence (an incomplete tail is held back), and ill-formed
// bytes become U+FFFD exactly where Tokenizer::Decode puts them, so the
// concatenation of all deltas plus Flush() equals Decode(all ids).
//   kByteLevel:     holds back at most 3 bytes (a cut UTF-8 sequence).
//   kSentencePiece: holds back the current run of <0xNN> byte tokens, since
//                   HF turns a whole run into U+FFFDs when any byte of it is
//                   invalid; and strips the one leading space of the text.
// Thread-safety: one instance per sequence, used by one thread at a time.
// The Tokenizer must outlive it.
#ifndef ALIGNSERVE_MODELS_TOKENIZER_INCREMENTAL_DETOKENIZER_H_
#define ALIGNSERVE_MODELS_TOKENIZER_INCREMENTAL_DETOKENIZER_H_

#include <cstdint>
#include <string>

#include "models/tokenizer/tokenizer.h"

namespace alignserve {

class IncrementalDetokenizer {
 public:
  // skip_special: drop special tokens, as Decode(ids, skip_special).
  IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special);

  // The text that `token` completes (possibly empty).
  std::string Append(int32_t token);

  // Emits whatever is held back (a cut UTF-8 tail as U+FFFD) and resets to
  // the state after the last token; Append may continue afterwards.
  std::string Flush();

  // Bytes currently held back.
  size_t pending_bytes() const { return pending_.size(); }

 private:
  std::string AppendByteLevel(int32_t token);
  std::string AppendSentencePiece(int32_t token);
  // Emits the held-back SentencePiece byte run into *out.
  void FlushByteRun(std::string* out);
  // SentencePiece: remove the one leading space of the whole text.
  std::string StripLeadingSpace(std::string text);

  const Tokenizer& tokenizer_;
  const bool skip_special_;
  std::string pending_;
  bool at_start_ = true;  // no non-empty text emitted yet
};

}  // namespace alignserve

#endif  // ALIGNSERVE_MODELS_TOKENIZER_INCREMENTAL_DETOKENIZER_H_
