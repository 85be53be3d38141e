// The chat procedure (rwkv-reference §7) on a deterministic fake model: every
// command, snapshots, the newline-bias schedule, fix_tokens, AVOID_REPEAT,
// interrupts, +save/+load. The token-for-token comparison with the Python
// reference on real checkpoints is in test_chat_reference.cpp.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "corvid/chat/session.h"
#include "corvid/chat/text.h"
#include "corvid/plugins/registry.h"
#include "corvid/plugins/tokenizer_loader.h"
#include "corvid/sdk/error.h"
#include "fake_chat.h"

using namespace corvid;
using namespace corvid::chat;

namespace {

// The raven-chat format, written out here so these tests do not need plugins.
class Template final : public PromptTemplate {
 public:
  explicit Template(std::string init = "\nHello there.\n\nBob: hi\n\nAlice: hello\n\n", bool fix = true)
      : init_(std::move(init)), fix_(fix) {}
  std::string name() const override { return "test"; }
  std::string user_name() const override { return "Bob"; }
  std::string bot_name() const override { return "Alice"; }
  std::string interface_str() const override { return ":"; }
  std::string init_prompt() const override { return init_; }
  bool fix_trailing_double_newline() const override { return fix_; }
  std::string chat_turn(std::string_view m) const override { return "Bob: " + std::string(m) + "\n\nAlice:"; }
  std::string free_prompt(std::string_view kind, std::string_view t) const override {
    if (kind == "gen") return "\n" + std::string(t);
    if (kind == "qq") return "\nQ: " + std::string(t) + "\nA:";
    return "\nINSTRUCT[" + std::string(t) + "]\n";
  }
  std::string stop_text() const override { return "\n\n"; }

 private:
  std::string init_;
  bool fix_;
};

struct Captured final : ChatOutput {
  std::string text;
  std::vector<std::string> pieces;  // each write, to check that none splits a character
  void write(std::string_view s) override {
    text += s;
    pieces.emplace_back(s);
  }
  std::string take() {
    std::string t;
    t.swap(text);
    return t;
  }
};

ChatSettings greedy() {
  ChatSettings s;
  s.sampling = SamplingParams{1.0f, 0.0f, 0};
  s.seed = 1;
  return s;
}

struct Fixture {
  fake::Tokenizer tok;
  fake::Model model;
  Captured out;
  std::unique_ptr<ChatSession> s;
  explicit Fixture(ChatSettings st = greedy(), std::string kind = "hf_bpe",
                   std::shared_ptr<PromptTemplate> tpl = std::make_shared<Template>())
      : tok(std::move(kind)) {
    s = std::make_unique<ChatSession>(model, tok, std::move(tpl), st, out);
    EXPECT_TRUE(s->start());
    out.take();
  }
  std::vector<int32_t> enc(const std::string& t) const { return tok.encode(t); }
};

std::string tmpfile(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("corvid_chat_test_" + name)).string();
}

}  // namespace

TEST(ChatSession, StartFeedsTheInitPromptWithFixTokens) {
  Fixture f;
  // The prompt ends with "\n\n" = token 257, fed as two "\n" (11, 11) for non-World vocabularies.
  auto expect = f.enc("\nHello there.\n\nBob: hi\n\nAlice: hello");
  expect.push_back(11);
  expect.push_back(11);
  EXPECT_EQ(f.s->tokens(), expect);
  EXPECT_TRUE(f.s->snapshot(Snap::ChatInit).valid);
  EXPECT_TRUE(f.s->snapshot(Snap::Chat).valid);
  EXPECT_EQ(f.s->state_data(), f.s->snapshot_state_data(Snap::ChatInit));
}

TEST(ChatSession, NoFixTokensForWorldVocabularies) {
  Fixture f(greedy(), "rwkv_world");
  EXPECT_EQ(f.s->tokens(), f.enc("\nHello there.\n\nBob: hi\n\nAlice: hello\n\n"));
  EXPECT_EQ(f.s->tokens().back(), 257);
}

TEST(ChatSession, ChunkedPrefillEqualsOneCall) {
  ChatSettings st = greedy();
  st.chunk_len = 3;
  Fixture a(st), b;
  EXPECT_EQ(a.s->tokens(), b.s->tokens());
  EXPECT_EQ(a.s->state_data(), b.s->state_data());
  EXPECT_GT(a.model.forward_calls, b.model.forward_calls);
}

TEST(ChatSession, ChatTurnFormatReplyAndStop) {
  Fixture f;
  const size_t init = f.s->tokens().size();
  f.s->handle("how are you?");
  const auto& t = f.s->tokens();
  auto turn = f.enc("Bob: how are you?\n\nAlice:");
  ASSERT_GT(t.size(), init + turn.size());
  EXPECT_TRUE(std::equal(turn.begin(), turn.end(), t.begin() + std::ptrdiff_t(init)));
  std::string text = f.out.take();
  EXPECT_EQ(text.rfind("Alice:", 0), 0u) << text;
  // The reply ends after "\n\n" (printed and fed) or after 999 tokens.
  std::string reply = f.tok.decode(std::span<const int32_t>(t).subspan(init + turn.size()));
  size_t n_reply = t.size() - init - turn.size();
  EXPECT_TRUE(reply.find("\n\n") == reply.size() - 2 || n_reply == 999) << n_reply;
  EXPECT_TRUE(f.s->snapshot(Snap::ChatPre).valid);
  EXPECT_EQ(f.s->snapshot(Snap::ChatPre).tokens.size(), init + turn.size());
  EXPECT_EQ(f.s->state_data(), f.s->snapshot_state_data(Snap::Chat));
  // END_OF_TEXT is banned in the logits after every reply step.
  EXPECT_EQ(f.s->logits()[0], -1e9f);
}

TEST(ChatSession, NewlineBiasScheduleExactly) {
  // Constant logits: "x" = 0, "\n" = 2.05, the rest far below; penalties off.
  // Step i samples with the bias of step i-1 (the prompt feed used -1e9), so
  // "\n" first wins at i = 21 ((20 - 40)/10 = -2.0 > -2.05), then again at 22.
  ChatSettings st = greedy();
  st.penalty = PenaltyParams{0, 0, 1};
  Fixture f(st);
  f.model.fixed.assign(fake::Model::V, -10.0f);
  f.model.fixed[size_t(fake::id_of('x'))] = 0.0f;
  f.model.fixed[11] = 2.05f;
  const size_t before = f.s->tokens().size();
  f.s->handle("go");
  const size_t start = before + f.enc("Bob: go\n\nAlice:").size();
  std::vector<int32_t> reply(f.s->tokens().begin() + std::ptrdiff_t(start), f.s->tokens().end());
  std::vector<int32_t> expect(21, fake::id_of('x'));
  expect.push_back(11);
  expect.push_back(11);
  EXPECT_EQ(reply, expect);
  EXPECT_EQ(f.s->last_stats().decode_tokens, 23u);
}

TEST(ChatSession, ReplyStopsAt999WhenNewlineCannotWin) {
  ChatSettings st = greedy();
  st.penalty = PenaltyParams{0, 0, 1};
  Fixture f(st);
  f.model.fixed.assign(fake::Model::V, -10.0f);
  f.model.fixed[size_t(fake::id_of('y'))] = 0.0f;
  f.model.fixed[11] = -20.0f;  // the bias tops out at +3
  f.s->handle("go");
  EXPECT_EQ(f.s->last_stats().decode_tokens, 999u);
}

TEST(ChatSession, PlusRegeneratesFromChatPre) {
  ChatSettings st;
  st.seed = 5;  // sampling (T 1.2, top_p 0.5): different draws, same starting point
  Fixture f(st);
  f.s->handle("tell me something");
  auto pre = f.s->snapshot(Snap::ChatPre).tokens;
  auto first = f.s->tokens();
  f.s->handle("+");
  auto second = f.s->tokens();
  ASSERT_GE(second.size(), pre.size());
  EXPECT_TRUE(std::equal(pre.begin(), pre.end(), second.begin()));
  EXPECT_EQ(f.s->snapshot(Snap::ChatPre).tokens, pre);
  // Greedy: "+" gives exactly the same reply again.
  Fixture g;
  g.s->handle("tell me something");
  auto a = g.s->tokens();
  auto sa = g.s->state_data();
  g.s->handle("+");
  EXPECT_EQ(g.s->tokens(), a);
  EXPECT_EQ(g.s->state_data(), sa);
}

TEST(ChatSession, ResetRestoresTheInitStateExactly) {
  Fixture f;
  auto init_tokens = f.s->tokens();
  auto init_state = f.s->state_data();
  auto init_logits = f.s->logits();
  f.s->handle("first message");
  f.s->handle("second message");
  ASSERT_NE(f.s->state_data(), init_state);
  f.out.take();
  f.s->handle("+reset");
  EXPECT_EQ(f.out.take(), "Alice: Chat reset.\n\n");
  EXPECT_EQ(f.s->tokens(), init_tokens);
  EXPECT_EQ(f.s->state_data(), init_state);  // bit for bit
  EXPECT_EQ(f.s->logits(), init_logits);
  EXPECT_EQ(f.s->snapshot_state_data(Snap::Chat), init_state);
  // And the next turn is the same as the first turn of a fresh session.
  Fixture g;
  f.s->handle("hello");
  g.s->handle("hello");
  EXPECT_EQ(f.s->tokens(), g.s->tokens());
}

TEST(ChatSession, FreeGenerationCommands) {
  Fixture f;
  f.s->handle("+gen Once upon");
  auto gen = f.s->tokens();
  auto prompt = f.enc("\nOnce upon");
  ASSERT_GE(gen.size(), prompt.size());
  EXPECT_TRUE(std::equal(prompt.begin(), prompt.end(), gen.begin()));  // from an empty state
  EXPECT_EQ(f.s->snapshot(Snap::Gen0).tokens, prompt);
  EXPECT_LE(gen.size() - prompt.size(), size_t(256 + 100));
  std::string text = f.out.take();
  EXPECT_EQ(text.substr(text.size() - 2), "\n\n");
  // ++ retries from gen_0: greedy, so the same tokens.
  f.s->handle("++");
  EXPECT_EQ(f.s->tokens(), gen);
  // +++ continues from gen_1 and saves it as gen_0.
  f.s->handle("+++");
  EXPECT_GE(f.s->tokens().size(), gen.size());
  EXPECT_TRUE(std::equal(gen.begin(), gen.end(), f.s->tokens().begin()));
  EXPECT_EQ(f.s->snapshot(Snap::Gen0).tokens, gen);

  f.s->handle("+qq What is it?");
  auto qq = f.enc("\nQ: What is it?\nA:");
  EXPECT_TRUE(std::equal(qq.begin(), qq.end(), f.s->tokens().begin()));
  f.s->handle("+i Do\\n\\n\\n\\nthis");  // cleaned like chat text: "\n\n" -> "\n" in one pass
  auto ins = f.enc("\nINSTRUCT[Do\n\nthis]\n");
  EXPECT_TRUE(std::equal(ins.begin(), ins.end(), f.s->tokens().begin()));
  // +qa: from chat_init, the chat format.
  f.s->handle("+qa who?");
  auto init = f.s->snapshot(Snap::ChatInit).tokens;
  auto qa = f.enc("Bob: who?\n\nAlice:");
  EXPECT_TRUE(std::equal(init.begin(), init.end(), f.s->tokens().begin()));
  EXPECT_TRUE(std::equal(qa.begin(), qa.end(), f.s->tokens().begin() + std::ptrdiff_t(init.size())));
}

TEST(ChatSession, FreeGenerationStopsAtEndOfText) {
  Fixture f;
  f.model.fixed.assign(fake::Model::V, 0.0f);
  f.model.fixed[0] = 5.0f;
  f.s->handle("+gen abc");
  EXPECT_EQ(f.s->tokens(), f.enc("\nabc"));
  EXPECT_EQ(f.out.take(), "\n\n");
}

TEST(ChatSession, PlusPlusWithoutGenerationDoesNothing) {
  Fixture f;
  auto t = f.s->tokens();
  f.s->handle("++");
  f.s->handle("+++");
  f.s->handle("+");  // no chat_pre yet
  EXPECT_EQ(f.s->tokens(), t);
  EXPECT_EQ(f.out.take(), "");
}

TEST(ChatSession, BareCommandWordsAreChatMessages) {
  Fixture f;
  const size_t init = f.s->tokens().size();
  f.s->handle("+gen");
  auto turn = f.enc("Bob: +gen\n\nAlice:");
  EXPECT_TRUE(std::equal(turn.begin(), turn.end(), f.s->tokens().begin() + std::ptrdiff_t(init)));
}

TEST(ChatSession, MessageCleanupAndPerMessageOptions) {
  Fixture f;
  const size_t init = f.s->tokens().size();
  f.s->handle("  a\\n\\n\\n\\nb -temp=0.9 -top_p=0.3  ");
  auto turn = f.enc("Bob: a\n\nb\n\nAlice:");  // four newlines become two; options removed
  EXPECT_TRUE(std::equal(turn.begin(), turn.end(), f.s->tokens().begin() + std::ptrdiff_t(init)));
  f.out.take();
  EXPECT_EQ(f.s->handle("hi -temp=abc"), ChatSession::Result::Error);
  EXPECT_NE(f.out.take().find("-temp= needs a number"), std::string::npos);
  EXPECT_EQ(f.s->handle("   "), ChatSession::Result::Empty);
  EXPECT_EQ(f.out.take(), "Error: please say something\n");
  // -temp=1.0 removes the whole option text (the reference left ".0" behind).
  Fixture g;
  const size_t gi = g.s->tokens().size();
  g.s->handle("x -temp=1.0");
  auto gt = g.enc("Bob: x\n\nAlice:");
  EXPECT_TRUE(std::equal(gt.begin(), gt.end(), g.s->tokens().begin() + std::ptrdiff_t(gi)));
}

TEST(ChatSession, AvoidRepeatMarksAndNewlineBiasOnPromptFeed) {
  Fixture f;
  f.s->handle("+gen a\xEF\xBC\x8C");  // ends with "，" (one token): its logit is disabled
  EXPECT_EQ(f.s->snapshot(Snap::Gen0).logits[258], -1e9f);
  // The chat turn is fed with newline bias -999999999.
  Fixture g;
  g.model.fixed.assign(fake::Model::V, 1.0f);
  g.s->handle("+reset");
  g.s->handle("hello");
  EXPECT_EQ(g.s->snapshot(Snap::ChatPre).logits[11], 1.0f + float(-999999999.0));
}

TEST(ChatSession, InterruptKeepsThePartialReplyAndCompletesTheSeparator) {
  ChatSettings st = greedy();
  st.penalty = PenaltyParams{0, 0, 1};
  Fixture f(st);
  f.model.fixed.assign(fake::Model::V, -10.0f);
  f.model.fixed[size_t(fake::id_of('z'))] = 0.0f;
  f.model.fixed[11] = -20.0f;
  const int calls0 = f.model.forward_calls;
  f.model.on_forward = [&] {
    if (f.model.forward_calls == calls0 + 1 + 5) f.s->interrupt_flag() = true;  // after 5 reply tokens
  };
  const size_t init = f.s->tokens().size();
  f.s->handle("go");
  EXPECT_TRUE(f.s->last_turn_interrupted());
  std::string text = f.out.take();
  EXPECT_NE(text.find("zzzzz [stopped]"), std::string::npos) << text;
  auto turn = f.enc("Bob: go\n\nAlice:");
  std::vector<int32_t> expect(f.s->tokens().begin() + std::ptrdiff_t(init + turn.size()), f.s->tokens().end());
  EXPECT_EQ(expect, (std::vector<int32_t>{fake::id_of('z'), fake::id_of('z'), fake::id_of('z'), fake::id_of('z'),
                                          fake::id_of('z'), 11, 11}));
  EXPECT_EQ(f.s->state_data(), f.s->snapshot_state_data(Snap::Chat));
  // The session goes on normally.
  f.model.on_forward = nullptr;
  f.model.fixed.clear();
  EXPECT_EQ(f.s->handle("again"), ChatSession::Result::Done);
  EXPECT_FALSE(f.s->last_turn_interrupted());
}

TEST(ChatSession, SaveAndLoadRoundTripBitExactly) {
  Fixture f;
  f.s->handle("first");
  f.s->handle("+gen story");
  f.s->handle("second");
  const std::string path = tmpfile("roundtrip.session");
  f.out.take();
  f.s->handle("+save " + path);
  EXPECT_NE(f.out.take().find("Session saved"), std::string::npos);
  auto tokens = f.s->tokens();
  auto state = f.s->state_data();
  auto logits = f.s->logits();
  auto pre = f.s->snapshot_state_data(Snap::ChatPre);
  // The continuation right after saving...
  f.s->handle("third");
  auto after_third = f.s->tokens();
  // ...equals the continuation after loading, in this session and in a new one.
  f.s->handle("+load " + path);
  EXPECT_EQ(f.s->tokens(), tokens);
  EXPECT_EQ(f.s->state_data(), state);
  EXPECT_EQ(f.s->logits(), logits);
  EXPECT_EQ(f.s->snapshot_state_data(Snap::ChatPre), pre);
  f.s->handle("third");
  EXPECT_EQ(f.s->tokens(), after_third);

  Fixture g;
  g.s->load(path);
  EXPECT_EQ(g.s->tokens(), tokens);
  EXPECT_EQ(g.s->state_data(), state);
  g.s->handle("third");
  EXPECT_EQ(g.s->tokens(), after_third);
  // +reset after loading goes back to the saved chat_init.
  g.s->handle("+reset");
  EXPECT_EQ(g.s->state_data(), f.s->snapshot_state_data(Snap::ChatInit));
  std::filesystem::remove(path);
}

TEST(ChatSession, SamplerStateIsSaved) {
  ChatSettings st;
  st.seed = 77;
  Fixture f(st);
  f.s->handle("hello");
  const std::string path = tmpfile("rng.session");
  f.s->save(path);
  f.s->handle("more");
  auto a = f.s->tokens();
  Fixture g(st);
  g.s->load(path);
  g.s->handle("more");
  EXPECT_EQ(g.s->tokens(), a);  // same draws: the RNG state came with the file
  std::filesystem::remove(path);
}

TEST(ChatSession, LoadRefusesOtherModelsCorruptionAndNarrowing) {
  Fixture f;
  f.s->handle("hello");
  const std::string path = tmpfile("refuse.session");
  f.s->save(path);
  auto before = f.s->tokens();

  fake::Tokenizer tok;
  Captured out;
  fake::Model other(43);  // another fingerprint
  ChatSession s2(other, tok, std::make_shared<Template>(), greedy(), out);
  s2.start();
  try {
    s2.load(path);
    FAIL() << "loaded a session of another model";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("another model"), std::string::npos) << e.what();
  }

  fake::Model narrow;  // same weights, but this "strategy" keeps the state in fp16
  narrow.dtypes = {DType::F16};
  ChatSession s3(narrow, tok, std::make_shared<Template>(), greedy(), out);
  s3.start();
  try {
    s3.load(path);
    FAIL() << "loaded an fp32 state into an fp16 state";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fp16"), std::string::npos) << e.what();
  }

  // Corrupt one payload byte: the checksum catches it, and nothing changes.
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  bytes[bytes.size() / 2] ^= 0x40;
  const std::string bad = tmpfile("corrupt.session");
  std::ofstream(bad, std::ios::binary) << bytes;
  f.out.take();
  EXPECT_EQ(f.s->handle("+load " + bad), ChatSession::Result::Error);
  EXPECT_NE(f.out.take().find("checksum"), std::string::npos);
  EXPECT_EQ(f.s->tokens(), before);
  // Not a session file at all; a missing file; a truncated one.
  std::ofstream(bad, std::ios::binary) << "hello";
  EXPECT_THROW(f.s->load(bad), Error);
  EXPECT_THROW(f.s->load(tmpfile("does-not-exist")), Error);
  std::ofstream(bad, std::ios::binary) << bytes.substr(0, 30);
  EXPECT_THROW(f.s->load(bad), Error);
  EXPECT_EQ(f.s->tokens(), before);
  EXPECT_EQ(f.s->handle("+save"), ChatSession::Result::Error);
  std::filesystem::remove(path);
  std::filesystem::remove(bad);
}

TEST(ChatSession, SaveToAnUnwritablePathFailsCleanly) {
  Fixture f;
  f.out.take();
  EXPECT_EQ(f.s->handle("+save /nonexistent-dir/x.session"), ChatSession::Result::Error);
  EXPECT_NE(f.out.take().find("cannot write"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists("/nonexistent-dir/x.session.tmp"));
}

TEST(ChatSession, HelpStatsAndPrompt) {
  Fixture f;
  f.s->handle("+help");
  std::string help = f.out.take();
  for (const char* c : {"+reset", "+gen", "+i ", "+qq", "+qa", "+++", "++", "+prompt", "+save", "+load", "+stats", "-temp="})
    EXPECT_NE(help.find(c), std::string::npos) << c;
  f.s->handle("hello");
  f.out.take();
  f.s->handle("+stats");
  std::string stats = f.out.take();
  EXPECT_NE(stats.find("prefill"), std::string::npos);
  EXPECT_NE(stats.find("tokens/s"), std::string::npos);
  // +prompt without a loader reports the error and keeps the session.
  f.s->handle("+prompt /some/file.py");
  EXPECT_NE(f.out.take().find("Path error"), std::string::npos);
}

TEST(ChatSession, PromptCommandStartsOverWithTheNewPrompt) {
  fake::Tokenizer tok;
  fake::Model model;
  Captured out;
  PromptLoader loader = [](const std::string& path) -> std::shared_ptr<PromptTemplate> {
    if (path != "other.py") throw Error(path + ": cannot open the prompt file");
    return std::make_shared<Template>("\nOther prompt.\n\n", true);
  };
  ChatSession s(model, tok, std::make_shared<Template>(), greedy(), out, loader);
  s.start();
  s.handle("hello");
  out.take();
  s.handle("+prompt missing.py");
  EXPECT_NE(out.take().find("Path error: missing.py"), std::string::npos);
  s.handle("+prompt other.py");
  EXPECT_NE(out.text.find("Prompt set up."), std::string::npos);
  auto expect = tok.encode("\nOther prompt.");
  expect.push_back(11);
  expect.push_back(11);
  EXPECT_EQ(s.tokens(), expect);
  EXPECT_EQ(s.snapshot(Snap::ChatInit).tokens, expect);
  s.handle("x");
  s.handle("+reset");
  EXPECT_EQ(s.tokens(), expect);
}

TEST(ChatSession, InitDisplayShowsTheBotLineTight) {
  Fixture f;
  EXPECT_EQ(f.s->init_display(), "\nHello there.\n\nBob: hi\nAlice: hello\n\n");
}

TEST(ChatSession, OutputNeverSplitsAUtf8Character) {
  // Steer greedy decoding through "é" as two byte tokens, then "!" and "\n\n".
  ChatSettings st = greedy();
  st.penalty = PenaltyParams{0, 0, 1};
  Fixture f(st);
  const std::vector<int32_t> script = {0xC3 + 1, 0xA9 + 1, fake::id_of('!'), 257};
  // Logits are computed before on_forward runs: set up the first one now, and
  // after each call the one for the next call.
  auto favour = [&](size_t k) {
    f.model.fixed.assign(fake::Model::V, -10.0f);
    if (k < script.size()) f.model.fixed[size_t(script[k])] = 10.0f;
  };
  favour(0);
  size_t calls = 0;
  f.model.on_forward = [&] { favour(++calls); };
  f.s->handle("go");
  f.model.on_forward = nullptr;
  EXPECT_EQ(calls, script.size() + 1);  // the prompt, then one call per reply token
  EXPECT_NE(f.out.text.find("Alice:\xC3\xA9!\n\n"), std::string::npos) << f.out.text;
  for (const std::string& p : f.out.pieces) EXPECT_TRUE(chat::utf8_valid(p)) << p;
}

// With the real 20B tokenizer (../shared): END_OF_LINE is 187, the init prompt's
// final "\n\n" (535) is fed as 187, 187, and the four AVOID_REPEAT marks are
// single tokens (chat.py asserts it).
TEST(ChatSession, NeoxTokenizerFixTokensAndAvoidRepeat) {
  const std::string path = std::string(CORVID_SHARED_DIR) + "/tokenizers/20B_tokenizer.json";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "no " << path;
  PluginRegistry reg({CORVID_PLUGIN_DIR});
  auto tok = load_tokenizer(reg, path);
  fake::Model model(42, 50277);
  Captured out;
  ChatSession s(model, *tok, std::make_shared<Template>(), greedy(), out);
  ASSERT_TRUE(s.start());
  EXPECT_EQ(s.end_of_line(), 187);
  ASSERT_EQ(tok->encode("\n\n"), std::vector<int32_t>{535});
  auto plain = tok->encode("\nHello there.\n\nBob: hi\n\nAlice: hello\n\n");
  ASSERT_EQ(plain.back(), 535);
  plain.back() = 187;
  plain.push_back(187);
  EXPECT_EQ(s.tokens(), plain);
  for (const char* mark : {"\xEF\xBC\x8C", "\xEF\xBC\x9A", "\xEF\xBC\x9F", "\xEF\xBC\x81"}) {
    auto t = tok->encode(mark);
    ASSERT_EQ(t.size(), 1u) << mark;
    s.handle(std::string("+gen x") + mark);
    EXPECT_EQ(s.snapshot(Snap::Gen0).logits[size_t(t[0])], -1e9f) << mark;
  }
}
