// SentencePieceModel: a plain C++ wrapper over libsentencepiece. It exists so
// that sentencepiece_processor.h (whose Debian build declares its own
// absl::string_view, clashing with real Abseil) is included by exactly one
// .cc, sentencepiece_model.cc, which includes no Abseil header. This header
// must stay free of Abseil too. Errors are reported as strings; the Status
// wrapping happens in sentencepiece_tokenizer.cc.
// Immutable after Load: thread-safe for concurrent const use.
#ifndef ALIGNSERVE_MODELS_TOKENIZER_SENTENCEPIECE_MODEL_H_
#define ALIGNSERVE_MODELS_TOKENIZER_SENTENCEPIECE_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace alignserve {

class SentencePieceModel {
 public:
  enum class PieceKind { kNormal, kUnknown, kControl, kUserDefined, kUnused, kByte };

  // nullptr and *error set when the file cannot be read or parsed.
  static std::unique_ptr<SentencePieceModel> Load(const std::string& path, std::string* error);
  ~SentencePieceModel();

  // Piece ids of `text`. with_dummy_prefix=false encodes as if the model's
  // normalizer added no leading "▁" (HF LlamaTokenizer legacy=False, for text
  // that follows a special token).
  std::vector<int32_t> Encode(std::string_view text, bool with_dummy_prefix) const;

  int32_t piece_size() const;
  std::string IdToPiece(int32_t id) const;
  // -1 when `piece` is not in the vocabulary.
  int32_t PieceToId(std::string_view piece) const;
  PieceKind Kind(int32_t id) const;
  int32_t bos_id() const;  // -1 if none
  int32_t eos_id() const;
  int32_t unk_id() const;

 private:
  struct Impl;
  explicit SentencePieceModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_MODELS_TOKENIZER_SENTENCEPIECE_MODEL_H_
