#!/usr/bin/python3
"""Writes ../data/corpus.jsonl: Corvid's own tokenizer test strings.

Every text here was written for Corvid (hand-written sentences, plus
deterministic combinations of them). The expected ids for each tokenizer are
made from this file by expected_neox20b.js (the official HF tokenizers, npm)
and expected_world.py (ChatRWKV's reference World tokenizer); see README.md.
"""
import json
import os
import random

texts = []


def add(*items):
    for t in items:
        texts.append(t)


# --- whitespace ----------------------------------------------------------
for n in list(range(1, 30)) + [31, 47, 48, 49, 50, 64, 100, 129]:
    add(" " * n, "x" + " " * n + "y", " " * n + "lead", "trail" + " " * n)
for ws in ["\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2028", "\u2029", "\u0085", "\u1680", "\u2003",
           "\u202f", "\u205f", "\u200b", "\u180e", "\ufeff", "\u000b", "\u000c", "\u001c", "\u001f"]:
    add(ws, "a" + ws + "b", "a " + ws + " b", ws * 3 + "word" + ws * 2, "  " + ws + "  x")
add("\t\tindented with tabs\n\t\t\tand deeper\n", " \t \t mixed \t\t  ", "\n\n\n\nfour newlines",
    "line one\n  line two\n    line three\n", "end with spaces   \n   ", "\r\r\n\n\r", "  \n  \n  ")

# --- contractions --------------------------------------------------------
add("I'm sure you'll see they've gone, but we'd stay if it's fine and you're in.",
    "DON'T SHOUT, IT'S LATE. I'LL WAIT. WE'D GO. THEY'RE HERE. YOU'VE WON. I'M OK.",
    "the cat's toy, the cats' toys, 'quoted', 'tis, 'twas, rock 'n' roll",
    "can't won't shan't ain't y'all'd've o'clock ma'am",
    "Curly apostrophes: it’s, you’re, we’ll, they’d, I’m, I’ve.",
    "'s't're've'm'll'd", "''s '' 's'", "x'sy x'Ty x'LL", "Ok's 5's 3'll ?'d")

# --- numbers -------------------------------------------------------------
add("0", "7", "42", "123", "1234", "12345", "1234567890", "3.14159265358979", "-0.001", "+1e-10", "6.022e23",
    "1,000,000 and 1.000.000 and 1 000 000", "2024-02-29T23:59:60Z", "+49 (0)30 1234-5678",
    "version 10.4.2-rc1 build 20240101", "0xDEADBEEF 0b1011 0o777", "99% of 1/3 is 33⅓",
    "١٢٣٤٥٦٧٨٩٠ ۱۲۳ १२३४ ০১২ ๑๒๓", "１２３４５ fullwidth", "x² + y³ = z⁴, H₂O", "½ ¼ ¾ ⅞", "Ⅻ ⅻ Ⅳ",
    "page 12 of 345, item #6789", "$1,299.99 €45,00 ¥10000 £3.50")

# --- punctuation and symbols ----------------------------------------------
add("Hello, world! How are you? Fine; thanks: really...", "—dash– and - hyphen ‐ ‑ ‒ ―",
    "«guillemets» „low“ \"straight\" 'single' ‹one›", "!!!???...,,,;;;:::", "@#$%^&*()_+-=[]{}|\\/<>~`",
    "∀x∈ℝ: x²≥0 ⇒ √(x²)=|x|", "→ ← ↑ ↓ ⇔ ⟹ ∞ ≠ ≈ ≤ ≥", "© ® ™ § ¶ † ‡ • … ‰", "|||||| ------ ====== ******")

# --- code ----------------------------------------------------------------
add('int main(int argc, char** argv) {\n  for (int i = 0; i < argc; ++i) printf("%s\\n", argv[i]);\n  return 0;\n}\n',
    "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
    '{"name": "corvid", "layers": 24, "dims": [768, 3072], "ok": true, "none": null}',
    "#!/bin/sh\nset -eu\nfor f in *.txt; do wc -l \"$f\" | awk '{print $1}'; done\n",
    "<div class=\"box\" id='x1'><p>Text &amp; more&nbsp;</p></div>",
    "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%son' ORDER BY id DESC;",
    "regex: ^(?:[a-z0-9._%+-]+)@(?:[a-z0-9-]+\\.)+[a-z]{2,}$",
    "--- a/file.c\n+++ b/file.c\n@@ -1,3 +1,4 @@\n-old line\n+new line\n context\n",
    "const f = async (x) => { await g(x?.y ?? 0); return `t=${x}`; };",
    "    if x:\n\t\treturn y  # mixed indent\n        else:\n            pass",
    "fn main() -> Result<(), Box<dyn Error>> { let v: Vec<u8> = vec![1, 2, 3]; Ok(()) }",
    "https://example.org/path/to/page?query=a%20b&x=1#frag", "mailto:someone@example.com",
    "C:\\Users\\name\\Documents\\file (1).txt", "a_b_c __init__ ___ snake_case camelCaseWord PascalCase")

# --- emoji ---------------------------------------------------------------
add("😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇩🇪🇯🇵🇧🇷", "1️⃣ #️⃣ *️⃣", "❤️ vs ❤", "🧑🏿‍🚀 and 👩🏻‍💻",
    "I love it 😍😍😍!!", "🫠🫶🪿 newer emoji", "text🙂text", " 🙂 ", "\u200d", "a\u200db", "\u200c\u200d\u200c",
    "🐈‍⬛ black cat, 🐻‍❄️ polar bear")

# --- CJK -----------------------------------------------------------------
add("今天的天气很好，我们去公园散步吧。", "机器学习模型需要大量的数据来训练。",
    "東京駅から新幹線に乗って、京都へ向かいました。", "ひらがなとカタカナ、そして漢字。ｶﾀｶﾅ半角",
    "오늘은 날씨가 맑고 따뜻합니다. 한국어 문장입니다.", "中文English混合text和数字123。",
    "「かぎかっこ」『二重』【隅付き】〈山括弧〉", "𠀀𠀁𪚥 rare ideographs 𰀀", "〇一二三四五六七八九十百千万億")

# --- other scripts -------------------------------------------------------
add("مرحبا بالعالم، هذه جملة عربية قصيرة.", "السَّلَامُ عَلَيْكُمْ وَرَحْمَةُ اللَّهِ", "كتاب 123 كتب",
    "שלום עולם, זה משפט בעברית.", "בְּרֵאשִׁית בָּרָא", "Привет, мир! Это русский текст.",
    "Ελληνικά: καλημέρα κόσμε", "नमस्ते दुनिया, यह हिंदी वाक्य है।", "สวัสดีครับ ภาษาไทย", "ქართული ენა",
    "Հայերեն լեզու", "አማርኛ ቋንቋ", "தமிழ் மொழி", "ᠮᠣᠩᠭᠣᠯ mongolian", "\u202eRTL override\u202c and \u200fmarks\u200e")

# --- combining marks and NFC ---------------------------------------------
add("cafe\u0301", "re\u0301sume\u0301", "A\u030a vs \u00c5 vs \u212b", "\u2126 ohm sign", "n\u0303 o\u0308 u\u0308",
    "Tie\u0302\u0301ng Vie\u0323\u0302t", "q\u0307\u0323 and q\u0323\u0307", "a\u0301\u0301\u0301",
    "\u1100\u1161\u11a8 \u1112\u1161\u11ab\u1100\u1173\u11af", "e\u0301\u0327", "\u0301 starts with a mark",
    "\ufb01 ligature stays", "\u00e9 precomposed", "x\u0338 \u2260", "\u0958 \u0915\u093c", "\u05e9\u05c1\u05bc",
    "a\u1df6\u0301 newer mark", "\U00011935\U00011930 vs \U00011938", "o\u0328\u0304 \u01ed", "\u0041\u030b\u0323")

# --- special-token text inside text ---------------------------------------
add("<|endoftext|>", "<|endoftext|><|endoftext|>", "before<|endoftext|>after", "x <|endoftext|> y",
    "   <|endoftext|>   ", "<|endoftext", "endoftext|>", "<|padding|> pad", "<|endoftext|>\n\nNew doc",
    "<|ENDOFTEXT|>", "<<|endoftext|>>", "<|endoftext|> <|padding|>  <|endoftext|>", "caf\u0065<|endoftext|>\u0301",
    "User: hi<|endoftext|>Assistant:", "<|end", "<|", "|>")

# --- chat formats ------------------------------------------------------------
add("User: What is the capital of France?\n\nAssistant: The capital of France is Paris.\n\nUser:",
    "Bob: hello there\n\nAlice: hi! how can I help?\n\n", "Question: 2+2?\n\nAnswer: 4",
    "Instruction: translate to German\n\nInput: good morning\n\nResponse:")

# --- long paragraphs (written for Corvid) ------------------------------------
para1 = ("The lighthouse keeper kept a ledger of every ship that passed, noting the hour, the wind, and the "
         "colour of the sails. Over forty years the ledger grew into eleven volumes, each bound in oilcloth "
         "against the damp. Nobody asked to read them until a historian arrived one October, carrying a "
         "thermos of tea and a question about a schooner that had vanished in 1911. The keeper's grandson, "
         "who now ran the place as a museum, fetched the seventh volume; there, in a steady hand, was the "
         "entry: \"Two-masted, grey canvas, running north before a stiff sou'westerly, 4:40 p.m.\" It was "
         "the last time anyone had seen her. ")
para2 = ("Tokenizers look simple from the outside: text goes in, numbers come out. Inside, though, every "
         "detail matters - whether a space belongs to the word after it, how a run of tabs is grouped, "
         "what happens to an accent typed as a separate mark, and which of two equally long matches wins. "
         "A model trained on one convention sees a subtly foreign language when fed another, and its "
         "answers degrade in ways that are hard to trace back to the cause.\n\n")
para3 = ("春の朝、川沿いの道を歩くと、桜の花びらが風に舞っていた。小さな喫茶店の前で足を止め、"
         "温かいコーヒーを注文した。店主は笑顔で「今日はいい天気ですね」と言った。")
add(para1, para2, para1 + para2, para2 * 3, para3, para3 * 4, (para1 + para3 + para2) * 2,
    "\n".join([para1[:200], "    " + para2[:150], "\t" + para3[:60]]))

# --- odd but valid UTF-8 ------------------------------------------------------
add("\u0000", "a\u0000b", "\ufffd replacement", "\U0010ffff max", "\ufffe\uffff nonchars", "\ue000\uf8ff private",
    "\U000f0000 plane 15", "\u00ad soft hyphen", "\u2060 word joiner", "\ufeffBOM at start", "mid\ufeffBOM",
    "\u0007\u0008\u001b[31mred\u001b[0m", "\u007f del", "\u0080\u0081\u009f C1")

# --- deterministic mixtures -----------------------------------------------------
pool = [t for t in texts if len(t) < 120]
rng = random.Random(20240601)
for _ in range(160):
    k = rng.randint(2, 6)
    parts = [rng.choice(pool) for _ in range(k)]
    seps = [rng.choice(["", " ", "  ", "\n", "\t", "   ", "\u00a0", "<|endoftext|>", "\u0301", "'s"]) for _ in range(k)]
    add("".join(p + s for p, s in zip(parts, seps)))

here = os.path.dirname(os.path.abspath(__file__))
seen = set()
with open(os.path.join(here, "..", "data", "corpus.jsonl"), "w", encoding="utf-8") as f:
    for t in texts:
        if t in seen:
            continue
        seen.add(t)
        f.write(json.dumps({"text": t}, ensure_ascii=True) + "\n")
print(len(seen), "texts")
