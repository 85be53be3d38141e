#!/usr/bin/python3
"""Expected ids for ../data/corpus.jsonl from ChatRWKV's reference World tokenizer.

    git -C /work/.mirror/BlinkDL+ChatRWKV/repo show HEAD:tokenizer/rwkv_tokenizer.py > /tmp/rwkv_tokenizer.py
    /usr/bin/python3 expected_world.py /tmp/rwkv_tokenizer.py rwkv_vocab_v20230424.txt \
        < ../data/corpus.jsonl > ../data/world_expected.jsonl

The reference file is read at run time and never copied into Corvid. Only its
class definitions are executed (the module's demo and benchmark code after the
"Demo" banner is skipped). Every text is encoded with TRIE_TOKENIZER and
cross-checked against the naive RWKV_TOKENIZER of the same file; both must
agree and round-trip exactly.
"""
import contextlib
import io
import json
import sys

ref_path, vocab_path = sys.argv[1], sys.argv[2]
source = open(ref_path, encoding="utf-8").read()
classes = source.split("# Demo")[0]
ns = {}
with contextlib.redirect_stdout(io.StringIO()):  # the module prints a banner
    exec(compile(classes, ref_path, "exec"), ns)
trie = ns["TRIE_TOKENIZER"](vocab_path)
naive = ns["RWKV_TOKENIZER"](vocab_path)
for line in sys.stdin:
    if not line.strip():
        continue
    text = json.loads(line)["text"]
    ids = trie.encode(text)
    assert ids == naive.encode(text), text
    assert trie.decode(ids) == text, text
    print(json.dumps({"ids": ids}))
