// Pre-tokenizers: split text into the "words" that BPE encodes one at a time,
// exactly as the regexes of the HF tokenizers they stand for, hand-written
// because no regex engine with \p{..} classes is available here:
//   kGpt2    's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+
//            |\s+(?!\S)|\s+                       (GPT-2 ByteLevel use_regex)
//   kLlama3  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}
//            | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   kQwen2   as kLlama3 with \p{N} (one digit per word)
//   kSmolLm  every \p{N} isolated (HF Digits(individual_digits)), then kGpt2
//            on each remaining piece (llama.cpp's "smollm").
// Bytes that are not valid UTF-8 (which HF never sees) count as one
// punctuation-like character each. Pure functions: thread-safe.
#ifndef ALIGNSERVE_MODELS_TOKENIZER_PRE_TOKENIZER_H_
#define ALIGNSERVE_MODELS_TOKENIZER_PRE_TOKENIZER_H_

#include <string_view>
#include <vector>

namespace alignserve {

enum class PreTokenizerKind { kGpt2, kLlama3, kQwen2, kSmolLm };

// Appends the words of `text` to *words, in order; they tile `text` exactly
// (each is a non-empty substring view of it).
void PreTokenize(PreTokenizerKind kind, std::string_view text,
                 std::vector<std::string_view>* words);

}  // namespace alignserve

#endif  // ALIGNSERVE_MODELS_TOKENIZER_PRE_TOKENIZER_H_
