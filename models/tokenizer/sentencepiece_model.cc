// The only file that includes sentencepiece_processor.h. It must include no
// Abseil header, directly or through our own headers (see the .h).
#include "models/tokenizer/sentencepiece_model.h"

#include <sentencepiece_processor.h>

#include <string>
#include <utility>

namespace alignserve {
namespace {

bool ReadVarint(const std::string& s, size_t* pos, uint64_t* value) {
  *value = 0;
  for (int shift = 0; shift < 64 && *pos < s.size(); shift += 7) {
    const auto b = static_cast<uint8_t>(s[(*pos)++]);
    *value |= static_cast<uint64_t>(b & 0x7F) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

void WriteVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// Copies protobuf fields of `in`, calling keep(field, wire_type) on each and
// dropping those it rejects; false if `in` is malformed.
template <typename Keep>
bool FilterFields(const std::string& in, std::string* out, Keep keep, std::string* nested_field3) {
  for (size_t pos = 0; pos < in.size();) {
    const size_t start = pos;
    uint64_t tag = 0, len = 0;
    if (!ReadVarint(in, &pos, &tag)) return false;
    switch (tag & 7) {
      case 0:
        if (!ReadVarint(in, &pos, &len)) return false;
        break;
      case 1:
        pos += 8;
        break;
      case 5:
        pos += 4;
        break;
      case 2:
        if (!ReadVarint(in, &pos, &len) || len > in.size() - pos) return false;
        if (nested_field3 != nullptr && (tag >> 3) == 3) {
          *nested_field3 = in.substr(pos, len);
          pos += len;
          continue;
        }
        pos += len;
        break;
      default:
        return false;
    }
    if (pos > in.size()) return false;
    if (keep(tag >> 3, tag & 7)) out->append(in, start, pos - start);
  }
  return true;
}

// ModelProto with normalizer_spec (field 3).add_dummy_prefix (field 3) set
// to false, edited on the wire because Debian ships no sentencepiece_model
// protobuf header. "" if the proto cannot be parsed.
std::string WithoutDummyPrefix(const std::string& model_proto) {
  std::string top, normalizer;
  if (!FilterFields(
          model_proto, &top, [](uint64_t, uint64_t) { return true; }, &normalizer)) {
    return "";
  }
  std::string edited;
  if (!FilterFields(
          normalizer, &edited, [](uint64_t field, uint64_t) { return field != 3; }, nullptr)) {
    return "";
  }
  edited += std::string("\x18\x00", 2);  // field 3, varint 0 (false)
  top.push_back('\x1A');                 // field 3, length-delimited
  WriteVarint(edited.size(), &top);
  top += edited;
  return top;
}

}  // namespace

struct SentencePieceModel::Impl {
  sentencepiece::SentencePieceProcessor with_prefix;
  sentencepiece::SentencePieceProcessor bare;  // add_dummy_prefix = false
};

SentencePieceModel::SentencePieceModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SentencePieceModel::~SentencePieceModel() = default;

std::unique_ptr<SentencePieceModel> SentencePieceModel::Load(const std::string& path,
                                                             std::string* error) {
  auto impl = std::make_unique<Impl>();
  const auto status = impl->with_prefix.Load(path);
  if (!status.ok()) {
    *error = "cannot load sentencepiece model " + path + ": " + status.ToString();
    return nullptr;
  }
  const std::string bare = WithoutDummyPrefix(impl->with_prefix.serialized_model_proto());
  if (bare.empty() || !impl->bare.LoadFromSerializedProto(bare).ok()) {
    *error = "cannot re-read the normalizer of sentencepiece model " + path;
    return nullptr;
  }
  return std::unique_ptr<SentencePieceModel>(new SentencePieceModel(std::move(impl)));
}

std::vector<int32_t> SentencePieceModel::Encode(std::string_view text,
                                                bool with_dummy_prefix) const {
  std::vector<int> ids;
  const auto& sp = with_dummy_prefix ? impl_->with_prefix : impl_->bare;
  // Encode only fails on an unloaded model; an empty result is right then.
  sp.Encode(std::string(text), &ids).IgnoreError();
  return std::vector<int32_t>(ids.begin(), ids.end());
}

int32_t SentencePieceModel::piece_size() const { return impl_->with_prefix.GetPieceSize(); }

std::string SentencePieceModel::IdToPiece(int32_t id) const {
  return impl_->with_prefix.IdToPiece(id);
}

int32_t SentencePieceModel::PieceToId(std::string_view piece) const {
  const std::string p(piece);
  const int id = impl_->with_prefix.PieceToId(p);
  return impl_->with_prefix.IdToPiece(id) == p ? id : -1;
}

SentencePieceModel::PieceKind SentencePieceModel::Kind(int32_t id) const {
  const auto& sp = impl_->with_prefix;
  if (sp.IsByte(id)) return PieceKind::kByte;
  if (sp.IsControl(id)) return PieceKind::kControl;
  if (sp.IsUnknown(id)) return PieceKind::kUnknown;
  if (sp.IsUnused(id)) return PieceKind::kUnused;
  return PieceKind::kNormal;
}

int32_t SentencePieceModel::bos_id() const { return impl_->with_prefix.bos_id(); }
int32_t SentencePieceModel::eos_id() const { return impl_->with_prefix.eos_id(); }
int32_t SentencePieceModel::unk_id() const { return impl_->with_prefix.unk_id(); }

}  // namespace alignserve
