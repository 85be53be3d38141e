// Tokenizer files: kind detection, small hand-made vocabularies whose results
// follow from the algorithm's definition, and malformed files (each error names
// the file and the line, and nothing crashes).
#include <gtest/gtest.h>

#include "corvid/sdk/error.h"
#include "tokenizer_test_util.h"

using namespace tok_test;
using nlohmann::json;

namespace {

// GPT-2's byte -> character map, written from its definition for the tests.
std::string byte_char(int b) {
  static std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    int next = 256;
    for (int i = 0; i < 256; ++i) {
      bool printable = (i >= 33 && i <= 126) || (i >= 161 && i <= 172) || (i >= 174 && i <= 255);
      int cp = printable ? i : next++;
      std::string s;
      if (cp < 0x80) s += char(cp);
      else { s += char(0xC0 | (cp >> 6)); s += char(0x80 | (cp & 0x3F)); }
      t[i] = s;
    }
    return t;
  }();
  return table[b];
}

std::string bl(const std::string& bytes) {
  std::string s;
  for (unsigned char c : bytes) s += byte_char(c);
  return s;
}

// A small byte-level BPE tokenizer.json: ids 0..255 are the bytes, then merges.
json tiny_hf() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
  json merges = json::array();
  int next = 256;
  auto merge = [&](const std::string& a, const std::string& b) {
    merges.push_back(bl(a) + " " + bl(b));
    vocab[bl(a + b)] = next++;
  };
  merge("b", "c");    // 256, rank 0
  merge("a", "b");    // 257, rank 1 (loses to "b c" in "abc")
  merge("h", "e");    // 258
  merge("l", "l");    // 259
  merge("he", "ll");  // 260
  merge("hell", "o"); // 261
  merge(" ", "w");    // 262
  json added = json::array();
  added.push_back({{"id", 263}, {"content", "<|endoftext|>"}, {"special", true}, {"single_word", false},
                   {"lstrip", false}, {"rstrip", false}, {"normalized", false}});
  added.push_back({{"id", 264}, {"content", "  "}, {"special", false}, {"single_word", false},
                   {"lstrip", false}, {"rstrip", false}, {"normalized", true}});
  json bytelevel = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}};
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", added},
          {"normalizer", {{"type", "NFC"}}},
          {"pre_tokenizer", bytelevel},
          {"post_processor", bytelevel},
          {"decoder", bytelevel},
          {"model",
           {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
            {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"vocab", vocab}, {"merges", merges}}}};
}

std::shared_ptr<corvid::Tokenizer> load_text(const std::string& text, const std::string& suffix,
                                             std::unique_ptr<TempFile>& keep) {
  keep = std::make_unique<TempFile>(text, suffix);
  return corvid::load_tokenizer(registry(), keep->path);
}

// Loading `text` must fail with an Error starting "<path>:<line>" (line 0 =
// no line) and containing `needle`.
void expect_load_error(const std::string& text, const std::string& suffix, size_t line, const std::string& needle,
                       const std::string& kind = "") {
  TempFile f(text, suffix);
  try {
    corvid::load_tokenizer(registry(), f.path, kind);
    ADD_FAILURE() << "loaded without error; expected: " << needle;
  } catch (const corvid::Error& e) {
    std::string msg = e.what();
    std::string prefix = f.path + (line ? ":" + std::to_string(line) + ":" : std::string(":"));
    EXPECT_EQ(msg.rfind(prefix, 0), 0u) << "message: " << msg << "\nexpected prefix: " << prefix;
    EXPECT_NE(msg.find(needle), std::string::npos) << "message: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
  }
}

size_t line_of(const std::string& text, const std::string& needle) {
  size_t pos = text.find(needle);
  EXPECT_NE(pos, std::string::npos) << needle;
  return 1 + std::count(text.begin(), text.begin() + static_cast<long>(pos), '\n');
}

// A small World vocabulary: ids 1..256 are the bytes, then a few words.
std::string world_byte_line(int b) {
  char buf[64];
  if (b >= 0x20 && b < 0x7F && b != '\'' && b != '\\') snprintf(buf, sizeof buf, "%d '%c' 1\n", b + 1, b);
  else snprintf(buf, sizeof buf, "%d b'\\x%02x' 1\n", b + 1, b);
  return buf;
}
std::string tiny_world(const std::string& extra = "") {
  std::string s;
  for (int b = 0; b < 256; ++b) s += world_byte_line(b);
  return s + "300 'he' 2\n301 'hello' 5\n302 \"it's\" 4\n" + extra;
}

}  // namespace

TEST(TokenizerKind, DetectedFromTheFile) {
  TempFile j(tiny_hf().dump(), ".json"), w(tiny_world()), junk("hello world\n"), empty("");
  EXPECT_EQ(corvid::detect_tokenizer_kind(j.path), "hf_bpe");
  EXPECT_EQ(corvid::detect_tokenizer_kind(w.path), "rwkv_world");
  EXPECT_THROW(corvid::detect_tokenizer_kind(junk.path), corvid::Error);
  EXPECT_THROW(corvid::detect_tokenizer_kind(empty.path), corvid::Error);
  try {
    corvid::detect_tokenizer_kind("/nonexistent/tok.json");
    ADD_FAILURE();
  } catch (const corvid::Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/tok.json"), std::string::npos);
  }
  if (exists(neox_path())) {
    EXPECT_EQ(corvid::detect_tokenizer_kind(neox_path()), "hf_bpe");
  }
  if (exists(world_path())) {
    EXPECT_EQ(corvid::detect_tokenizer_kind(world_path()), "rwkv_world");
  }
  EXPECT_THROW(corvid::load_tokenizer(registry(), j.path, "no_such_kind"), corvid::Error);
}

TEST(HfBpeTiny, MergesFollowRankNotPosition) {
  std::unique_ptr<TempFile> f;
  auto tok = load_text(tiny_hf().dump(2), ".json", f);
  EXPECT_EQ(tok->encode("abc"), (std::vector<int32_t>{'a', 256}));  // "b c" (rank 0) before "a b"
  EXPECT_EQ(tok->encode("ab"), (std::vector<int32_t>{257}));
  EXPECT_EQ(tok->encode("hello"), (std::vector<int32_t>{261}));
  EXPECT_EQ(tok->encode("hellohello"), (std::vector<int32_t>{261, 261}));
  // " w" merges inside the regex piece " world"; "!" is its own piece.
  EXPECT_EQ(tok->encode("hello world!"), (std::vector<int32_t>{261, 262, 'o', 'r', 'l', 'd', '!'}));
  // Added tokens: the special one is cut from the raw text, the two-space one
  // (normalized=true) from each NFC-normalized piece.
  EXPECT_EQ(tok->encode("ab<|endoftext|>ab"), (std::vector<int32_t>{257, 263, 257}));
  EXPECT_EQ(tok->encode("a  b"), (std::vector<int32_t>{'a', 264, 'b'}));
  EXPECT_EQ(tok->encode("a   b"), (std::vector<int32_t>{'a', 264, ' ', 'b'}));
  EXPECT_EQ(tok->decode(tok->encode("ab<|endoftext|>ab")), "abab");
  EXPECT_EQ(tok->token_bytes(262), " w");
  EXPECT_EQ(tok->vocab_size(), 265u);
  EXPECT_EQ(tok->eot_id(), 263);
}

TEST(HfBpeTiny, MalformedFilesNameFileAndLine) {
  const std::string good = tiny_hf().dump(2);
  // Bad JSON: cut in the middle of the merges.
  {
    std::string bad = good.substr(0, good.find(bl("he") + " " + bl("ll")) + 3);
    expect_load_error(bad, ".json", std::count(bad.begin(), bad.end(), '\n') + 1, "invalid JSON");
  }
  // A merge naming a token that is not in the vocab.
  {
    json j = tiny_hf();
    j["model"]["merges"].push_back("zz qq");
    std::string t = j.dump(2);
    expect_load_error(t, ".json", line_of(t, "\"zz qq\""), "not in the vocab");
  }
  {
    json j = tiny_hf();
    j["model"]["merges"].push_back("a zq");
    std::string t = j.dump(2);
    expect_load_error(t, ".json", line_of(t, "\"a zq\""), "token \"zq\" is not in the vocab");
  }
  // A merge whose result is not in the vocab.
  {
    json j = tiny_hf();
    j["model"]["merges"].push_back("x y");
    std::string t = j.dump(2);
    expect_load_error(t, ".json", line_of(t, "\"x y\""), "merged token \"xy\"");
  }
  // Two vocab entries with one id.
  {
    json j = tiny_hf();
    j["model"]["vocab"]["dup_token"] = 5;
    std::string t = j.dump(2);
    // Reported at the later of the two entries (keys are dumped sorted).
    size_t later = std::max(line_of(t, "\"dup_token\""), line_of(t, "\"" + byte_char(5) + "\""));
    expect_load_error(t, ".json", later, "duplicate id 5");
  }
  // Parts of the format that are not implemented are refused, not ignored.
  auto refuse = [&](const std::function<void(json&)>& edit, const std::string& needle) {
    json j = tiny_hf();
    edit(j);
    expect_load_error(j.dump(2), ".json", 0, needle);
  };
  refuse([](json& j) { j["normalizer"] = {{"type", "Lowercase"}}; }, "normalizer");
  refuse([](json& j) { j["normalizer"] = {{"type", "NFKC"}}; }, "only NFC");
  refuse([](json& j) { j["model"]["type"] = "WordPiece"; }, "model type \"WordPiece\"");
  refuse([](json& j) { j["model"]["dropout"] = 0.1; }, "dropout");
  refuse([](json& j) { j["model"]["unk_token"] = "<unk>"; }, "unk_token");
  refuse([](json& j) { j["model"]["byte_fallback"] = true; }, "byte_fallback");
  refuse([](json& j) { j["model"]["continuing_subword_prefix"] = "##"; }, "continuing_subword_prefix");
  refuse([](json& j) { j["pre_tokenizer"] = {{"type", "Whitespace"}}; }, "pre_tokenizer");
  refuse([](json& j) { j["pre_tokenizer"]["add_prefix_space"] = true; }, "add_prefix_space");
  refuse([](json& j) { j["pre_tokenizer"]["use_regex"] = false; }, "use_regex");
  refuse([](json& j) { j["decoder"] = {{"type", "WordPiece"}}; }, "decoder");
  refuse([](json& j) { j["post_processor"] = {{"type", "TemplateProcessing"}}; }, "post_processor");
  refuse([](json& j) { j["truncation"] = {{"max_length", 5}}; }, "truncation");
  refuse([](json& j) { j["padding"] = {{"strategy", "BatchLongest"}}; }, "padding");
  refuse([](json& j) { j["version"] = "2.0"; }, "version");
  refuse([](json& j) { j["added_tokens"][0]["single_word"] = true; }, "single_word");
  refuse([](json& j) { j["added_tokens"][1]["id"] = 300; }, "would give it id 264");
  refuse([](json& j) { j["added_tokens"][0]["content"] = 5; }, "\"content\"");
  refuse([](json& j) { j["model"]["vocab"]["a"] = -3; }, "non-negative integer id");
  refuse([](json& j) { j["model"]["merges"][0] = "a b c"; }, "two tokens");
  expect_load_error("[1, 2]", ".json", 0, "expected a JSON object", "hf_bpe");
  expect_load_error("[1, 2]", ".json", 1, "not a known tokenizer file");
  expect_load_error("{}", ".json", 0, "pre_tokenizer");
  expect_load_error("{\"a\": }", ".json", 1, "invalid JSON");
  try {
    corvid::load_tokenizer(registry(), "/nonexistent/x.json", "hf_bpe");
    ADD_FAILURE();
  } catch (const corvid::Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/x.json"), std::string::npos) << e.what();
  }
}

TEST(WorldTiny, GreedyLongestMatch) {
  std::unique_ptr<TempFile> f;
  auto tok = load_text(tiny_world(), ".txt", f);
  EXPECT_EQ(tok->encode("hello"), (std::vector<int32_t>{301}));
  EXPECT_EQ(tok->encode("helo"), (std::vector<int32_t>{300, 'l' + 1, 'o' + 1}));   // falls back to "he"
  EXPECT_EQ(tok->encode("hellhello"), (std::vector<int32_t>{300, 'l' + 1, 'l' + 1, 301}));
  EXPECT_EQ(tok->encode("it's"), (std::vector<int32_t>{302}));
  EXPECT_EQ(tok->vocab_size(), 303u);
  EXPECT_TRUE(tok->added_tokens().empty());
}

TEST(WorldTiny, PythonLiteralEscapes) {
  // Each line: the literal as written in the file, and the bytes it stands for.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"('\n\t\r')", "\n\t\r"},
      {R"('\\')", "\\"},
      {R"('\'')", "'"},
      {R"("\"")", "\""},
      {R"("it's")", "it's"},
      {R"('say "hi"')", "say \"hi\""},
      {R"('\x41\x7a')", "Az"},
      {R"('\x80')", "\xC2\x80"},          // a str: U+0080 in UTF-8
      {R"(b'\x80')", "\x80"},             // bytes: the byte itself
      {R"(b'\xe4\xb8')", "\xE4\xB8"},
      {R"('\u00e9')", "\xC3\xA9"},
      {R"('\u4e2d\u6587')", "\xE4\xB8\xAD\xE6\x96\x87"},
      {R"('\U0001F600')", "\xF0\x9F\x98\x80"},
      {R"('é中')", "\xC3\xA9\xE4\xB8\xAD"},
      {R"('\101\0')", std::string("A\0", 2)},
      {R"('\a\b\f\v')", "\a\b\f\v"},
      {R"('\q')", "\\q"},                 // unknown escapes keep the backslash
      {R"(b'\u00e9')", "\\u00e9"},        // no \u escape in bytes literals
      {R"(B"x")", "x"},
      {R"(u'y')", "y"},
  };
  std::string extra;
  int id = 400;
  for (auto& [lit, bytes] : cases) extra += std::to_string(id++) + " " + lit + " " + std::to_string(bytes.size()) + "\n";
  std::unique_ptr<TempFile> f;
  auto tok = load_text(tiny_world(extra), ".txt", f);
  id = 400;
  for (auto& [lit, bytes] : cases) EXPECT_EQ(tok->token_bytes(id++), bytes) << lit;
}

TEST(WorldTiny, MalformedFilesNameFileAndLine) {
  const size_t next = 260;  // tiny_world() has 259 lines
  expect_load_error(tiny_world("400 'abc 3\n"), ".txt", next, "unterminated");
  expect_load_error(tiny_world("400 abc 3\n"), ".txt", next, "expected a Python string literal");
  expect_load_error(tiny_world("400 '\\x4' 1\n"), ".txt", next, "two hex digits");
  expect_load_error(tiny_world("400 '\\u12' 1\n"), ".txt", next, "hex digits");
  expect_load_error(tiny_world("400 '\\ud800' 3\n"), ".txt", next, "surrogate");
  expect_load_error(tiny_world("400 b'\xc3\xa9' 2\n"), ".txt", next, "non-ASCII");
  expect_load_error(tiny_world("400 r'x' 1\n"), ".txt", next, "raw");
  expect_load_error(tiny_world("400 'abc' 4\n"), ".txt", next, "stated byte length 4 but the literal has 3 bytes");
  expect_load_error(tiny_world("400 '\\u00e9' 1\n"), ".txt", next, "literal has 2 bytes");
  expect_load_error(tiny_world("300 'xy' 2\n"), ".txt", next, "duplicate token id 300 (first defined on line 257)");
  expect_load_error(tiny_world("\n"), ".txt", next, "empty line");
  expect_load_error(tiny_world("x 'a' 1\n"), ".txt", next, "token id");
  expect_load_error(tiny_world("400  'a' 1\n"), ".txt", next, "expected a Python string literal");
  expect_load_error(tiny_world("400 'a'1\n"), ".txt", next, "byte length");
  expect_load_error(tiny_world("400 'a' 1 extra\n"), ".txt", next, "unexpected text");
  expect_load_error(tiny_world("400 'a' x\n"), ".txt", next, "byte length");
  expect_load_error(tiny_world("400 'ab' 'cd' 4\n"), ".txt", next, "byte length");
  expect_load_error(tiny_world("400 '' 0\n"), ".txt", next, "empty token");
  // Every byte needs a token: drop the line for byte 0x41.
  std::string no_a = tiny_world();
  size_t p = no_a.find("66 'A' 1\n");
  no_a.erase(p, 9);
  expect_load_error(no_a, ".txt", 0, "single byte 0x41", "rwkv_world");
  // Kind forced on a file that is not World.
  expect_load_error(tiny_hf().dump(), ".json", 1, "token id", "rwkv_world");
  try {
    corvid::load_tokenizer(registry(), "/nonexistent/v.txt", "rwkv_world");
    ADD_FAILURE();
  } catch (const corvid::Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/v.txt"), std::string::npos) << e.what();
  }
}

TEST(WorldTiny, CrlfLinesAreAccepted) {
  std::string s = tiny_world();
  std::string crlf;
  for (char c : s) crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
  std::unique_ptr<TempFile> f;
  auto tok = load_text(crlf, ".txt", f);
  EXPECT_EQ(tok->encode("hello"), std::vector<int32_t>{301});
}
