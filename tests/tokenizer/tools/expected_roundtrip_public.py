#!/usr/bin/python3
"""Expected decode(encode(s)) for the 20B tokenizer on the shared public data.

    /usr/bin/python3 expected_roundtrip_public.py $CORVID_SHARED_DIR/tokenizers/testdata/neox20b_public.jsonl \
        > ../data/neox20b_public_roundtrip.jsonl

The 20B tokenizer normalizes with NFC, so decode(encode(s)) is not s but the
NFC form of each piece between the special tokens <|endoftext|> and
<|padding|> (split off before normalizing, and decoded to nothing). This is
computed here independently with Python's unicodedata. Only the lines where it
differs from the text are written: {"line": N (1-based), "decoded": ...}.
(Python's data is Unicode 14, the official library's NFC uses Unicode 9 data;
they agree on the public texts: this output was cross-checked against the
official library's decode(expected ids), tokenizers@0.23.2, line for line.)
"""
import json
import re
import sys
import unicodedata

SPECIAL = re.compile(r"<\|endoftext\|>|<\|padding\|>")
for n, line in enumerate(open(sys.argv[1], encoding="utf-8"), 1):
    text = json.loads(line)["text"]
    pieces = SPECIAL.split(text)
    decoded = "".join(unicodedata.normalize("NFC", p) for p in pieces)
    if decoded != text:
        print(json.dumps({"line": n, "decoded": decoded}, ensure_ascii=True))
