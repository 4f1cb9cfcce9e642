// Tokenizer: text <-> token ids, matching Hugging Face exactly.
//
// Two families sit behind one interface:
//   - byte-level BPE (GPT-2 / Llama 3 / Qwen2 / SmolLM2 style), built from
//     GGUF metadata (CreateBpeTokenizer) or an HF tokenizer.json
//     (LoadTokenizerJson);
//   - SentencePiece (Llama 2 tokenizer.model, LoadSentencePiece).
// Thread-safety: a Tokenizer is immutable after creation; every const method
// may be called concurrently from any number of threads.
#ifndef ALIGNSERVE_MODELS_TOKENIZER_TOKENIZER_H_
#define ALIGNSERVE_MODELS_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace alignserve {

class Tokenizer {
 public:
  // How the bytes of consecutive tokens become text, shared by Decode and
  // the IncrementalDetokenizer:
  //   kByteLevel:     concatenate TokenBytes, then replace every ill-formed
  //                   UTF-8 subpart by U+FFFD (HF ByteLevel decoder).
  //   kSentencePiece: HF's Llama decoder: a run of consecutive <0xNN> byte
  //                   tokens is its bytes if they are valid UTF-8 and
  //                   otherwise one U+FFFD per byte token; other pieces are
  //                   their text with "▁" as space; finally one leading space
  //                   of the whole text is removed.
  enum class TextRule { kByteLevel, kSentencePiece };

  virtual ~Tokenizer() = default;

  // Token ids of `text`. parse_special: text spelled like a special token
  // (e.g. "<|im_start|>") becomes that token, as HF does by default; when
  // false only non-special added tokens are matched (HF
  // split_special_tokens=True). add_bos prepends bos_id() when there is one.
  // Never fails: bytes that are not UTF-8 are encoded as bytes (byte-level
  // BPE) or as sentencepiece treats them.
  virtual std::vector<int32_t> Encode(std::string_view text, bool add_bos,
                                      bool parse_special = true) const = 0;

  // The raw bytes a token stands for (byte-level BPE mapped back to bytes;
  // SentencePiece "▁" as a space and <0xAB> as the byte; special tokens their
  // spelling). May be part of a UTF-8 sequence. Out of range: "".
  virtual std::string TokenBytes(int32_t id) const = 0;

  // Equal to HF tokenizer.decode(ids, skip_special_tokens=skip_special).
  // Ids out of range are skipped, as HF does.
  virtual std::string Decode(std::span<const int32_t> ids, bool skip_special) const = 0;

  virtual int32_t vocab_size() const = 0;
  // Control tokens and added special tokens (skipped by skip_special).
  virtual bool IsSpecial(int32_t id) const = 0;
  // The id of a vocabulary entry spelled as stored (byte-level "Ġhello",
  // SentencePiece "▁hello", or an added token's content).
  virtual std::optional<int32_t> TokenId(std::string_view piece) const = 0;

  virtual TextRule text_rule() const = 0;
  // SentencePiece <0xNN> byte-fallback pieces (kSentencePiece only).
  virtual bool IsByteToken(int32_t id) const { return false; }

  int32_t bos_id() const { return bos_id_; }  // -1 if none
  int32_t eos_id() const { return eos_id_; }  // -1 if none
  bool add_bos_by_default() const { return add_bos_by_default_; }

 protected:
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  bool add_bos_by_default_ = false;
};

// Exactly what GGUF metadata carries for tokenizer.ggml.model == "gpt2".
struct BpeVocab {
  std::vector<std::string> tokens;  // tokenizer.ggml.tokens (byte-level spelling)
  // tokenizer.ggml.token_type: 1 normal, 2 unknown, 3 control,
  // 4 user-defined, 5 unused, 6 byte. May be empty (all normal).
  std::vector<int32_t> token_types;
  std::vector<std::string> merges;  // tokenizer.ggml.merges, "a b", by rank
  std::string pre;                  // tokenizer.ggml.pre
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t unk_id = -1;
  bool add_bos = false;
};

// Supported `pre` values: "gpt2", "default" (GPT-2 pattern), "llama-bpe",
// "llama3" (Llama 3 pattern, whole-word vocabulary hits skip merges),
// "qwen2", "smollm". Control tokens (type 3) become special added tokens,
// user-defined ones (type 4) non-special added tokens.
absl::StatusOr<std::unique_ptr<Tokenizer>> CreateBpeTokenizer(const BpeVocab& vocab);

// An HF tokenizer.json with a byte-level BPE model.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerJson(const std::string& path);

// A SentencePiece tokenizer.model, with HF LlamaTokenizer's special-token
// parsing (legacy=False) on top.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePiece(const std::string& path);

}  // namespace alignserve

#endif  // ALIGNSERVE_MODELS_TOKENIZER_TOKENIZER_H_
