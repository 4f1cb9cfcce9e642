// LoadSentencePiece: the Tokenizer over SentencePieceModel (Llama 2 style).
//
// Encode matches python sentencepiece's encode; with parse_special, the
// spellings of control and unknown pieces ("<s>", "</s>", "<unk>") become
// those tokens as HF's LlamaTokenizer (legacy=False) does: only text at the
// very start gets the dummy-prefix "▁", text after a special token none.
// Decode matches HF's Llama decoder (Tokenizer::TextRule::kSentencePiece),
// which equals sentencepiece's decode except for specials ("<s>" is kept
// unless skipped; "<unk>" instead of " ⁇ ") and for invalid byte runs.
#include <cstdlib>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "models/tokenizer/added_tokens.h"
#include "models/tokenizer/sentencepiece_model.h"
#include "models/tokenizer/tokenizer.h"
#include "models/tokenizer/utf8.h"

namespace alignserve {
namespace {

class SentencePieceTokenizer : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(std::unique_ptr<SentencePieceModel> model)
      : model_(std::move(model)) {
    const int32_t n = model_->piece_size();
    token_bytes_.resize(n);
    special_.assign(n, false);
    byte_.assign(n, false);
    std::vector<AddedToken> specials;
    for (int32_t id = 0; id < n; ++id) {
      const std::string piece = model_->IdToPiece(id);
      switch (model_->Kind(id)) {
        case SentencePieceModel::PieceKind::kByte:
          byte_[id] = true;
          token_bytes_[id] = std::string(1, static_cast<char>(ParseByte(piece)));
          break;
        case SentencePieceModel::PieceKind::kControl:
        case SentencePieceModel::PieceKind::kUnknown:
          special_[id] = true;
          token_bytes_[id] = piece;
          specials.push_back({piece, id, /*special=*/true});
          break;
        default:
          token_bytes_[id] = absl::StrReplaceAll(piece, {{"\xE2\x96\x81", " "}});
      }
    }
    specials_ = AddedTokenMatcher(std::move(specials));
    bos_id_ = model_->bos_id();
    eos_id_ = model_->eos_id();
    add_bos_by_default_ = bos_id_ >= 0;
  }

  std::vector<int32_t> Encode(std::string_view text, bool add_bos,
                              bool parse_special) const override {
    std::vector<int32_t> out;
    if (add_bos && bos_id_ >= 0) out.push_back(bos_id_);
    if (!parse_special) {
      std::vector<int32_t> ids = model_->Encode(text, /*with_dummy_prefix=*/true);
      out.insert(out.end(), ids.begin(), ids.end());
      return out;
    }
    for (const TextSegment& seg : specials_.Split(text, /*parse_special=*/true)) {
      if (seg.id >= 0) {
        out.push_back(seg.id);
        continue;
      }
      const bool at_start = seg.text.data() == text.data();
      std::vector<int32_t> ids = model_->Encode(seg.text, at_start);
      out.insert(out.end(), ids.begin(), ids.end());
    }
    return out;
  }

  std::string TokenBytes(int32_t id) const override { return InRange(id) ? token_bytes_[id] : ""; }

  std::string Decode(std::span<const int32_t> ids, bool skip_special) const override {
    std::string out, run;
    auto flush_run = [&] {
      if (IsValidUtf8(run)) {
        out += run;
      } else {
        for (size_t i = 0; i < run.size(); ++i) out += kReplacementChar;
      }
      run.clear();
    };
    for (int32_t id : ids) {
      if (!InRange(id) || (skip_special && special_[id])) continue;
      if (byte_[id]) {
        run += token_bytes_[id];
        continue;
      }
      flush_run();
      out += token_bytes_[id];
    }
    flush_run();
    if (!out.empty() && out[0] == ' ') out.erase(0, 1);
    return out;
  }

  int32_t vocab_size() const override { return static_cast<int32_t>(token_bytes_.size()); }
  bool IsSpecial(int32_t id) const override { return InRange(id) && special_[id]; }
  bool IsByteToken(int32_t id) const override { return InRange(id) && byte_[id]; }
  std::optional<int32_t> TokenId(std::string_view piece) const override {
    const int32_t id = model_->PieceToId(piece);
    if (id < 0) return std::nullopt;
    return id;
  }
  TextRule text_rule() const override { return TextRule::kSentencePiece; }

 private:
  bool InRange(int32_t id) const { return id >= 0 && id < vocab_size(); }

  // "<0xAB>" -> 0xAB.
  static int ParseByte(const std::string& piece) {
    if (piece.size() != 6) return 0;
    return static_cast<int>(std::strtol(piece.substr(3, 2).c_str(), nullptr, 16));
  }

  std::unique_ptr<SentencePieceModel> model_;
  std::vector<std::string> token_bytes_;  // [vocab_size]
  std::vector<bool> special_;             // [vocab_size] control / unknown
  std::vector<bool> byte_;                // [vocab_size] <0xNN> pieces
  AddedTokenMatcher specials_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePiece(const std::string& path) {
  std::string error;
  std::unique_ptr<SentencePieceModel> model = SentencePieceModel::Load(path, &error);
  if (model == nullptr) return absl::InvalidArgumentError(error);
  if (model->piece_size() <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, " has no pieces"));
  }
  return std::unique_ptr<Tokenizer>(new SentencePieceTokenizer(std::move(model)));
}

}  // namespace alignserve
