// Expected ids for ../data/corpus.jsonl from the official Hugging Face
// tokenizers library (Rust core, npm binding), as used for the shared public
// data, and the library's decode(ids) where it differs from the text. Run from a folder OUTSIDE the repository that has the package:
//   mkdir -p /tmp/hf && cd /tmp/hf && npm install tokenizers@0.23.2
//   NODE_PATH=/tmp/hf/node_modules node expected_neox20b.js 20B_tokenizer.json \
//       < ../data/corpus.jsonl > ../data/neox20b_expected.jsonl
const { Tokenizer } = require('tokenizers');
const readline = require('readline');
(async () => {
  const tok = Tokenizer.fromFile(process.argv[2]);
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  const out = [];
  for await (const line of rl) {
    if (!line.trim()) continue;
    const { text } = JSON.parse(line);
    const enc = await tok.encode(text, null, { addSpecialTokens: false });
    const ids = Array.from(enc.getIds());
    // The official round trip (special tokens skipped, NFC applied), written
    // only where it differs from the text.
    const decoded = await tok.decode(ids, true);
    out.push(JSON.stringify(decoded === text ? { ids } : { ids, decoded }));
  }
  process.stdout.write(out.join('\n') + '\n');
})();
