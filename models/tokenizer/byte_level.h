// GPT-2's byte-level alphabet: every byte is spelled as one printable code
// point (bytes_to_unicode: '!'..'~', U+00A1..U+00AC and U+00AE..U+00FF stand
// for themselves, the other 68 bytes map to U+0100.. in order), so BPE
// vocabularies hold strings like "Ġworld" for " world". Immutable tables
// built once: thread-safe.
#ifndef ALIGNSERVE_MODELS_TOKENIZER_BYTE_LEVEL_H_
#define ALIGNSERVE_MODELS_TOKENIZER_BYTE_LEVEL_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace alignserve {

// The UTF-8 spelling of byte b in the byte-level alphabet.
const std::string& ByteLevelChar(uint8_t b);

// Maps a vocabulary string back to bytes as HF's ByteLevel decoder does:
// when every code point of `token` is in the alphabet, the bytes they stand
// for; otherwise (e.g. an added token such as "<|é|>" with a code point
// outside it) the token's own UTF-8 bytes.
std::string ByteLevelToBytes(std::string_view token);

// Spells raw bytes in the byte-level alphabet.
std::string BytesToByteLevel(std::string_view bytes);

}  // namespace alignserve

#endif  // ALIGNSERVE_MODELS_TOKENIZER_BYTE_LEVEL_H_
