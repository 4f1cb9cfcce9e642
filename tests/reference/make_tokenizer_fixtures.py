#!/usr/bin/env python3
"""Builds the tokenizer test corpus and the Hugging Face / SentencePiece oracle
fixtures under tests/data/tokenizer/.

Run with the oracle environment (never by tests or CI):
  /root/.cache/alignserve/refvenv/bin/python tests/reference/make_tokenizer_fixtures.py

Outputs (all JSON):
  corpus.json                 >= 2,000 strings, deterministic (seeded RNG).
  smollm2_tokenizer.json      HF tokenizer.json built by transformers from the
                              SmolLM2 GGUF, with the pre-tokenizer set to the
                              one the released SmolLM2 tokenizer.json has
                              (Digits(individual) then ByteLevel); see below.
  smollm2_gguf_vocab.json     tokens / token_types / merges / pre / ids as
                              gguf-py reads them from the GGUF file.
  smollm2_expected.json       ids per corpus line (smollm pre-tokenizer) and
                              ids with the plain GPT-2 pattern (the
                              pre-tokenizer transformers' GGUF conversion
                              emits), plus decode cases.
  llama3_tokenizer.json,
  qwen2_tokenizer.json        small byte-level BPEs trained on the corpus with
                              those models' exact Split regexes + ByteLevel.
  llama3_expected.json,
  qwen2_expected.json         ids per line and decode cases.
  llama2_expected.json        python sentencepiece ids per line, ids with
                              special-token parsing, and HF decode results.

About SmolLM2's pre-tokenizer: the released tokenizer.json (and llama.cpp's
"smollm" pre type) isolates every digit, then applies the GPT-2 ByteLevel
regex. transformers' GGUF conversion (5.x) emits only ByteLevel(use_regex), so
it differs on text like "a  1" (two spaces before a digit). The fixture keeps
the model's real behaviour; the script prints how many corpus lines differ.
"""

import json
import os
import random
import sys
import tempfile

import gguf
import sentencepiece as spm
import tokenizers
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, LlamaTokenizer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "data", "tokenizer")
GGUF_PATH = os.environ.get(
    "ALIGNSERVE_GGUF",
    "/root/.cache/alignserve/models/SmolLM2-135M-Instruct.Q4_1.gguf")
SP_MODEL = os.path.join(ROOT, "..", "shared", "data", "llama2-tokenizer.model")

GPT2_PATTERN = (r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+"
                r"|\s+(?!\S)|\s+")
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+"
                  r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+"
                 r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# ---------------------------------------------------------------- corpus ----

WORDS = ("the quick brown fox jumps over lazy dog time person year way day "
         "thing man world life hand part child eye woman place work week case "
         "point government company number group problem fact be have do say "
         "get make go know take see come think look want give use find tell "
         "ask seem feel try leave call good new first last long great little "
         "own other old right big high different small large next early young "
         "important few public bad same able tokenizer server inference model "
         "attention cache kernel Hello World OpenAI McDonald iPhone USA NASA "
         "naïve café résumé façade coöperate Straße Ærøskøbing").split()
CONTRACTION_WORDS = ["it's", "don't", "we're", "they've", "I'm", "you'll",
                     "he'd", "IT'S", "DON'T", "We'RE", "THEY'VE", "I'M",
                     "YOU'LL", "HE'D", "rock'n'roll", "o'clock", "'tis",
                     "ma'am", "y'all", "'s", "'S", "'''", "can't've", "'x",
                     "l'amour", "d'Artagnan", "’s", "it’s"]
CJK = ["你好，世界！", "我爱自然语言处理。", "今天天气很好", "東京都は日本の首都です。",
       "ひらがなとカタカナ", "한국어 텍스트입니다", "中文标点：“引号”、《书名》",
       "漢字かな交じり文", "机器学习模型推理服务器", "第一章　总则", "ｆｕｌｌｗｉｄｔｈ",
       "ﾊﾝｶｸｶﾀｶﾅ", "𠀀𠀁𪚥 (supplementary CJK)"]
SCRIPTS = ["مرحبا بالعالم", "اللغة العربية جميلة ١٢٣٤٥", "नमस्ते दुनिया",
           "हिन्दी में लिखा गया वाक्य १२३", "שלום עולם", "Привет, мир!",
           "Γειά σου Κόσμε", "สวัสดีชาวโลก", "Xin chào thế giới", "Բարեւ աշխարհ",
           "გამარჯობა მსოფლიო", "ሰላም ልዑል", "வணக்கம் உலகம்", "こんにちは世界",
           "Türkçe karakterler: ğüşıöç İ", "Ελληνικά ΣΊΣΥΦΟΣ ς"]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "🇯🇵", "1️⃣", "❤️", "🧑🏿‍💻",
         "👩🏻‍🦰", "🤷‍♂️", "✨", "🎉🎉🎉", "☃", "©®™", "🫠", "🐈‍⬛", "#️⃣"]
CODE = [
    "def f(x):\n    return x * 2\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
    "fn main() {\n    let v: Vec<u32> = (0..10).collect();\n    println!(\"{:?}\", v);\n}",
    "const add = (a, b) => a + b;\n// comment\nconsole.log(add(1, 2));",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
    "<div class=\"row\">\n  <span>{{ value }}</span>\n</div>",
    "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"hi\")\n}\n",
    "if x == None:\n        pass\n    elif x != 3:\n\t\traise ValueError('bad')",
    "#include <vector>\nstd::vector<int> v{1, 2, 3};\n",
    "    indented    with    spaces    ",
    "x=1;y=2;z=x+y*3/4-5%6",
    "a->b->c; p::q::r; $var @decorator &&  || !== ===",
    "class Foo(Bar):\r\n    \"\"\"Docstring.\"\"\"\r\n    x: int = 0\r\n",
    "{\"key\": [1, 2.5, -3e10, true, null], \"s\": \"\\n\\t\"}",
    "    \n\n\t\t    \n  ",
    "int main(){printf(\"%d\\n\",42);return 0;}",
]
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>",
            "<unk>", "<|begin_of_text|>", "<|eot_id|>", "<tool_call>",
            "<repo_name>", "<file_sep>", "<|im_start", "im_end|>", "<|",
            "|>", "<<|im_end|>>", "<s><s>", "</s ", "<|reserved|>"]
PUNCT = ["...", "!!!", "?!", "---", "***", "(((", ")))", "[]{}", "<>", "@#$%^&*",
         "…", "——", "«»", "¿¡", "・", "、。", "''", "\"\"", "``", "~~~", "///",
         "\\\\", "||", "::", ";;", ",,", ".,.,"]
COMBINING = ["e\u0301", "a\u0308o\u0308", "Z\u0336a\u0337l\u0335g\u0334o\u0338",
             "n\u0303", "\u0301alone", "ế", "Tiê\u0301ng Viê\u0323t",
             "q\u0307\u0323", "\u0915\u094d\u0937", "\u1100\u1161\u11a8"]
ESCAPES = ["\\xff\\xfe", "\\x00\\x01", "\\u00e9", "\\U0001F600", "\ufffd",
           "\ufffd\ufffd", "a\ufffdb", "bytes: b'\\xe4\\xbd'", "%E4%BD%A0",
           "&#x1F600;", "\\n\\r\\t"]
SPACES = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r\n\r\n", "\r",
          " \n", "\n ", " \t ", "\u00a0", "\u3000", "\u2028", "\u0085", "\u001c",
          "\u000b", "\u000c", "\u2009", "\u200b", "\u202f", "\u180e", "\ufeff"]
NUMBER_EXTRAS = ["１２３", "٣٤٥", "१२३", "²³", "½", "Ⅻ", "⑦", "3.14159",
                 "1,000,000", "-42", "+7", "1e-9", "0x1F", "v1.2.3", "2024-01-31",
                 "12:30:45", "$19.99", "50%", "#1", "1st", "2nd", "ab12cd345ef"]


def number(rng):
    n = rng.randint(1, 30)
    return "".join(rng.choice("0123456789") for _ in range(n))


def sentence(rng, n=None):
    n = n or rng.randint(3, 18)
    words = [rng.choice(WORDS) for _ in range(n)]
    words[0] = words[0].capitalize()
    return " ".join(words) + rng.choice([".", "!", "?", "", ",", ";"])


def mixed(rng):
    pools = [WORDS, CONTRACTION_WORDS, CJK, SCRIPTS, EMOJI, SPECIALS, PUNCT,
             COMBINING, ESCAPES, SPACES, NUMBER_EXTRAS]
    parts = []
    for _ in range(rng.randint(2, 10)):
        pool = rng.choice(pools)
        parts.append(number(rng) if rng.random() < 0.1 else rng.choice(pool))
        parts.append(rng.choice(["", " ", " ", "  ", "\n", "\t", ""]))
    return "".join(parts)


def random_chars(rng):
    # Code points from assigned, long-stable blocks only, so that the Unicode
    # version of the oracle and of our tables cannot disagree.
    ranges = [(0x20, 0x7e), (0xa0, 0x24f), (0x300, 0x36f), (0x370, 0x3ff),
              (0x400, 0x4ff), (0x590, 0x5ff), (0x600, 0x6ff), (0x900, 0x97f),
              (0xe00, 0xe5b), (0x2000, 0x206f), (0x2070, 0x218b),
              (0x2190, 0x23ff), (0x2460, 0x24ff), (0x3000, 0x303f),
              (0x3040, 0x30ff), (0x4e00, 0x4fff), (0xac00, 0xad00),
              (0xff01, 0xff5e), (0x1f300, 0x1f64f), (0x9, 0xd)]
    out = []
    for _ in range(rng.randint(1, 40)):
        lo, hi = rng.choice(ranges)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def build_corpus():
    rng = random.Random(20240531)
    lines = ["", " ", "  ", "\n", "\r\n", "\t", "a", "Hello world",
             "Hello, world! It's a test.", "<|im_start|>user\nHi<|im_end|>\n",
             "<s>[INST] Hi [/INST]</s>"]
    gens = [
        (350, lambda: sentence(rng) + (" " + sentence(rng) if rng.random() < .4 else "")),
        (150, lambda: " ".join(rng.choice(CONTRACTION_WORDS + WORDS) for _ in range(rng.randint(1, 8)))),
        (200, lambda: rng.choice(CODE) if rng.random() < .5 else
              rng.choice(CODE).replace("    ", rng.choice(["\t", "  ", "        "]))),
        (120, lambda: rng.choice(CJK) + rng.choice(["", " ", "\n"]) + rng.choice(CJK)),
        (150, lambda: rng.choice(SCRIPTS) + rng.choice([" ", "\n", ""]) + rng.choice(SCRIPTS)),
        (120, lambda: "".join(rng.choice(EMOJI) + rng.choice(["", " ", "!"]) for _ in range(rng.randint(1, 5)))),
        (200, lambda: rng.choice(["", "x", "a ", "Total: ", " ", "  ", "\t", "id"]) +
              (number(rng) if rng.random() < .7 else rng.choice(NUMBER_EXTRAS)) +
              rng.choice(["", " ", "  items", ".", "abc", "\n", " 7"])),
        (180, lambda: "".join(rng.choice(["a", "b", " ", "1"]) + rng.choice(SPACES) for _ in range(rng.randint(1, 6)))),
        (80, lambda: "".join(rng.choice(PUNCT) + rng.choice(["", " ", "a"]) for _ in range(rng.randint(1, 5)))),
        (150, lambda: rng.choice(["", "Hi ", "text", " "]) + rng.choice(SPECIALS) +
              rng.choice(["", "user\n", " assistant", "x"]) + rng.choice(SPECIALS + [""]) +
              rng.choice(["", " ", "\n"])),
        (80, lambda: rng.choice(WORDS) + rng.choice(COMBINING) + " " + rng.choice(COMBINING)),
        (60, lambda: rng.choice(ESCAPES) + rng.choice(["", " ", "x"]) + rng.choice(ESCAPES)),
        (250, lambda: mixed(rng)),
        (150, lambda: random_chars(rng)),
    ]
    for count, gen in gens:
        lines.extend(gen() for _ in range(count))
    # One long line so the priority-queue BPE sees long words.
    lines.append("a" * 300 + " " + "ab" * 200 + " " + "9" * 100 + " " * 50 + "x")
    for s in lines:
        s.encode("utf-8")  # no lone surrogates
    return lines


# -------------------------------------------------------------- helpers ----

def write_json(name, obj):
    path = os.path.join(OUT, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
    print(f"wrote {path}: {os.path.getsize(path)} bytes")


def split_sequences(rng, vocab_size, lines_ids):
    """Arbitrary id sequences, many of them splitting multibyte characters."""
    seqs = []
    for ids in lines_ids:
        if len(ids) >= 2 and rng.random() < 0.15:
            a = rng.randrange(len(ids))
            b = rng.randrange(a, min(len(ids), a + 6) + 1)
            seqs.append(ids[a:b])
    for _ in range(150):
        seqs.append([rng.randrange(vocab_size) for _ in range(rng.randint(1, 8))])
    return seqs


def decode_cases(decode, seqs):
    cases = []
    for ids in seqs:
        for skip in (False, True):
            cases.append({"ids": ids, "skip": skip, "text": decode(ids, skip)})
    return cases


# -------------------------------------------------------------- SmolLM2 ----

def smollm2(corpus):
    d = os.path.dirname(GGUF_PATH)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=os.path.basename(GGUF_PATH))
    with tempfile.TemporaryDirectory() as tmp:
        tok.save_pretrained(tmp)
        with open(os.path.join(tmp, "tokenizer.json"), encoding="utf-8") as f:
            tj = json.load(f)
    converted_pre = tj["pre_tokenizer"]
    assert converted_pre["type"] == "ByteLevel" and converted_pre["use_regex"], converted_pre
    gpt2_tok = tokenizers.Tokenizer.from_str(json.dumps(tj))
    tj["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True}, converted_pre]}
    write_json("smollm2_tokenizer.json", tj)
    real = tokenizers.Tokenizer.from_str(json.dumps(tj))

    ids = [real.encode(s, add_special_tokens=False).ids for s in corpus]
    gpt2_ids = [gpt2_tok.encode(s, add_special_tokens=False).ids for s in corpus]
    differ = sum(a != b for a, b in zip(ids, gpt2_ids))
    print(f"SmolLM2: {differ} corpus lines differ between Digits+ByteLevel "
          f"and transformers' GGUF conversion (ByteLevel only)")
    # transformers' own decode (TokenizersBackend) is the oracle for Decode.
    roundtrip = [tok.decode(x, skip_special_tokens=False) for x in ids]
    bad = sum(r != s for r, s in zip(roundtrip, corpus))
    print(f"SmolLM2: {bad} lines do not round-trip through HF decode")
    rng = random.Random(7)
    seqs = split_sequences(rng, len(tok), ids)
    cases = decode_cases(lambda x, s: tok.decode(x, skip_special_tokens=s), seqs)
    # parse_special=false: HF's split_special_tokens=True.
    real.encode_special_tokens = True
    no_special = [real.encode(s, add_special_tokens=False).ids for s in corpus]
    write_json("smollm2_expected.json", {
        "ids": ids, "gpt2_ids": gpt2_ids, "ids_no_special": no_special,
        "decoded": roundtrip, "decode_cases": cases})

    reader = gguf.GGUFReader(GGUF_PATH)
    f = reader.fields
    write_json("smollm2_gguf_vocab.json", {
        "tokens": f["tokenizer.ggml.tokens"].contents(),
        "token_types": [int(t) for t in f["tokenizer.ggml.token_type"].contents()],
        "merges": f["tokenizer.ggml.merges"].contents(),
        "pre": f["tokenizer.ggml.pre"].contents(),
        "bos_id": int(f["tokenizer.ggml.bos_token_id"].contents()),
        "eos_id": int(f["tokenizer.ggml.eos_token_id"].contents()),
        "unk_id": int(f["tokenizer.ggml.unknown_token_id"].contents()),
        "add_bos": bool(f["tokenizer.ggml.add_bos_token"].contents()),
    })


# ------------------------------------------------------- trained BPEs ----

def trained(name, corpus, pattern, specials, added, ignore_merges):
    tok = tokenizers.Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True,
                                 use_regex=False)])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True,
                                     use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=3000, min_frequency=2, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus * 3, trainer=trainer)
    tok.add_special_tokens([AddedToken(s, normalized=False, special=True)
                            for s in specials])
    tok.add_tokens([AddedToken(s, normalized=False, special=False) for s in added])
    tj = json.loads(tok.to_str())
    write_json(f"{name}_tokenizer.json", tj)
    ids = [tok.encode(s, add_special_tokens=False).ids for s in corpus]
    tok.encode_special_tokens = True
    no_special = [tok.encode(s, add_special_tokens=False).ids for s in corpus]
    tok.encode_special_tokens = False
    roundtrip = [tok.decode(x, skip_special_tokens=False) for x in ids]
    bad = sum(r != s for r, s in zip(roundtrip, corpus))
    print(f"{name}: vocab {tok.get_vocab_size()}, {bad} lines do not round-trip")
    rng = random.Random(11)
    seqs = split_sequences(rng, tok.get_vocab_size(), ids)
    cases = decode_cases(lambda x, s: tok.decode(x, skip_special_tokens=s), seqs)
    write_json(f"{name}_expected.json", {
        "ids": ids, "ids_no_special": no_special, "decoded": roundtrip,
        "decode_cases": cases})


# -------------------------------------------------------------- Llama 2 ----

def sp_without_dummy_prefix(sp):
    """A processor whose normalizer adds no leading "▁" (HF legacy=False)."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    proto = pb.ModelProto.FromString(sp.serialized_model_proto())
    proto.normalizer_spec.add_dummy_prefix = False
    out = spm.SentencePieceProcessor()
    out.LoadFromSerializedProto(proto.SerializeToString())
    return out


def llama2(corpus):
    sp = spm.SentencePieceProcessor(model_file=SP_MODEL)
    sp_bare = sp_without_dummy_prefix(sp)
    specials = ["<unk>", "<s>", "</s>"]

    def encode_special(text):
        # HF LlamaTokenizer (legacy=False): split at special spellings
        # (leftmost, longest); only the start of the text gets the dummy
        # prefix; text after a special token is encoded without it.
        out, pos, first = [], 0, True
        while pos <= len(text):
            hits = [(text.find(s, pos), -len(s), s) for s in specials]
            hits = [h for h in hits if h[0] >= 0]
            end = min(hits)[0] if hits else len(text)
            seg = text[pos:end]
            if seg:
                out += (sp if first else sp_bare).encode(seg)
            if not hits:
                break
            _, neg, s = min(hits)
            out.append(sp.piece_to_id(s))
            pos, first = end - neg, False
        return out

    ids = [sp.encode(s) for s in corpus]
    ids_special = [encode_special(s) for s in corpus]
    with tempfile.TemporaryDirectory() as tmp:
        with open(SP_MODEL, "rb") as src, open(os.path.join(tmp, "tokenizer.model"), "wb") as dst:
            dst.write(src.read())
        hf = LlamaTokenizer.from_pretrained(tmp)
    dec = lambda x, s: hf.decode(x, skip_special_tokens=s)
    decoded = [dec(x, False) for x in ids]
    decoded_special = [dec(x, False) for x in ids_special]
    sp_decoded = [sp.decode(x) for x in ids]
    differ = sum(a != b for a, b in zip(decoded, sp_decoded))
    print(f"Llama2: HF decode differs from sentencepiece decode on {differ} lines")
    rng = random.Random(13)
    seqs = split_sequences(rng, sp.get_piece_size(), ids)
    seqs += [[1, 15043, 2], [29871, 15043], [1, 29871, 15043], [231, 192, 163, 258],
             [231, 192, 163, 258, 15043], [0], [29871], [13, 29871, 13]]
    write_json("llama2_expected.json", {
        "ids": ids, "ids_special": ids_special, "decoded": decoded,
        "decoded_special": decoded_special, "decode_cases": decode_cases(dec, seqs)})


def main():
    os.makedirs(OUT, exist_ok=True)
    corpus = build_corpus()
    print(f"corpus: {len(corpus)} lines")
    write_json("corpus.json", corpus)
    smollm2(corpus)
    trained("llama3", corpus, LLAMA3_PATTERN,
            ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"],
            ["<tool_call>"], ignore_merges=True)
    trained("qwen2", corpus, QWEN2_PATTERN,
            ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
            ["<tool_call>", "</tool_call>"], ignore_merges=False)
    llama2(corpus)


if __name__ == "__main__":
    sys.exit(main())
