#!/usr/bin/python3
"""Writes ../data/added_flags_tokenizer.json: a tiny byte-level BPE tokenizer.json
whose added tokens use lstrip / rstrip / normalized / special in combination,
and ../data/added_flags_texts.jsonl: texts that exercise them. Expected ids are
made with the official library by expected_neox20b.js (any tokenizer.json):

  NODE_PATH=/tmp/hf/node_modules node expected_neox20b.js ../data/added_flags_tokenizer.json \
      < ../data/added_flags_texts.jsonl > ../data/added_flags_expected.jsonl
"""
import json
import os


def byte_chars():
    out, nxt = [], 256
    for b in range(256):
        printable = 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255
        out.append(chr(b) if printable else chr(nxt))
        if not printable:
            nxt += 1
    return out


bc = byte_chars()
bl = lambda s: "".join(bc[b] for b in s.encode("utf-8"))
vocab = {bc[b]: b for b in range(256)}
merges = []
for a, b in [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), (" ", "w"), ("o", "r"), (" w", "or")]:
    merges.append(bl(a) + " " + bl(b))
    vocab[bl(a + b)] = len(vocab)
added = []
def tok(content, special, lstrip=False, rstrip=False, normalized=None):
    added.append({"id": len(vocab) + len(added), "content": content, "single_word": False, "lstrip": lstrip,
                  "rstrip": rstrip, "normalized": (not special) if normalized is None else normalized,
                  "special": special})
tok("<mask>", True, lstrip=True, rstrip=True)
tok("[L]", True, lstrip=True)
tok("[R]", False, rstrip=True, normalized=False)
tok("caf\u00e9", False)                       # normalized: matches "cafe\u0301" after NFC
tok("na\u0308ive", True, normalized=False)   # raw: matches only the decomposed spelling
tok("   ", False)
bytelevel = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True}
j = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
     "normalizer": {"type": "NFC"}, "pre_tokenizer": bytelevel, "post_processor": bytelevel, "decoder": bytelevel,
     "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
               "end_of_word_suffix": None, "fuse_unk": False, "vocab": vocab, "merges": merges}}
here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")
with open(os.path.join(here, "added_flags_tokenizer.json"), "w", encoding="utf-8") as f:
    json.dump(j, f, ensure_ascii=True, indent=1)
texts = ["hello <mask> world", "hello\t <mask>\u3000 world", "<mask><mask>", " <mask> <mask> ", "x<mask>y",
         "a  [L]b", "a[L]  b", "\u2028[L]", "[R]   x", "[R]\u00a0\u0085x", "[R][R]", "  [R]  ",
         "cafe\u0301 caf\u00e9", "na\u0308ive na\u00efve", "x   y    z", "<mask>   [R]   [L]   ",
         "hello world", "   hello", "<mask>\n\n[L]\n[R]\nend", "\u3000\u3000<mask>\u3000\u3000"]
with open(os.path.join(here, "added_flags_texts.jsonl"), "w", encoding="utf-8") as f:
    for t in texts:
        f.write(json.dumps({"text": t}, ensure_ascii=True) + "\n")
