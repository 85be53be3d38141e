// The ChatRWKV prompt-file reader (no Python executed), ChatRWKV's init-prompt
// normalisation (rwkv-reference §7.1) and the prompt_templates plugin.
//
// Expected values for ChatRWKV's own prompt files come from Python running
// chat.py's load_prompt (exec + normalisation) on ../shared/chatrwkv/prompts,
// stored as FNV-1a hashes in tests/chat/data/prompt_files_expected.json (the
// prompt texts themselves are not committed).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "corvid/chat/prompt_file.h"
#include "corvid/chat/template_setup.h"
#include "corvid/chat/text.h"
#include "corvid/plugins/registry.h"
#include "corvid/sdk/error.h"
#include "prompt_text.h"

using namespace corvid;
using namespace corvid::chat;
namespace fs = std::filesystem;

namespace {

uint64_t fnv(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string error_of(std::string_view src) {
  try {
    parse_chat_prompt(src, "p.py");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const PluginRegistry& registry() {
  static PluginRegistry reg({CORVID_PLUGIN_DIR});
  return reg;
}

const std::string kShared = std::string(CORVID_SHARED_DIR) + "/chatrwkv";

}  // namespace

TEST(PromptFile, EveryChatRWKVPromptFileMatchesPython) {
  if (!fs::exists(kShared + "/prompts")) GTEST_SKIP() << "no " << kShared << "/prompts (ChatRWKV data for tests)";
  std::ifstream f(std::string(CORVID_TEST_DATA_DIR) + "/chat/data/prompt_files_expected.json");
  ASSERT_TRUE(f);
  auto j = nlohmann::json::parse(f);
  int n = 0;
  for (const auto& entry : fs::directory_iterator(kShared + "/prompts")) {
    std::string name = entry.path().filename().string();
    SCOPED_TRACE(name);
    ASSERT_TRUE(j["files"].contains(name)) << "no expected values for " << name;
    const auto& e = j["files"][name];
    ChatPromptFile p = read_chat_prompt_file(entry.path().string());
    EXPECT_EQ(fnv(p.user), e["user"].get<uint64_t>()) << p.user;
    EXPECT_EQ(fnv(p.bot), e["bot"].get<uint64_t>()) << p.bot;
    EXPECT_EQ(fnv(p.interface), e["interface"].get<uint64_t>()) << p.interface;
    std::string norm = prompt_text::normalize_init_prompt(p.init_prompt);
    EXPECT_EQ(norm.size(), e["init_prompt_bytes"].get<size_t>());
    EXPECT_EQ(fnv(norm), e["init_prompt"].get<uint64_t>());
    // And through the plugin, as corvid-chat creates it.
    auto t = make_prompt_template(registry(), "raven-chat", {{"prompt_file", entry.path().string()}});
    EXPECT_EQ(fnv(t->init_prompt()), e["init_prompt"].get<uint64_t>());
    EXPECT_EQ(t->user_name(), p.user);
    ++n;
  }
  EXPECT_EQ(n, int(j["files"].size()));
}

TEST(PromptFile, EnglishThreeKeepsItsPrintAsANoteAndAppends) {
  if (!fs::exists(kShared + "/prompts/English-3.py")) GTEST_SKIP() << "no ChatRWKV prompts in " << kShared;
  ChatPromptFile p = read_chat_prompt_file(kShared + "/prompts/English-3.py");
  ASSERT_EQ(p.notes.size(), 1u);
  EXPECT_EQ(p.user, "Bob");  // reassigned after the first part
  std::vector<std::string> notes;
  make_prompt_template(registry(), "raven-chat", {{"prompt_file", kShared + "/prompts/English-3.py"}}, &notes);
  EXPECT_EQ(notes, p.notes);
}

TEST(PromptFile, CorvidDefaultPromptEqualsThePluginDefault) {
  // configs/prompts/default-en.py and the plugin's built-in text must agree.
  const std::string path = std::string(CORVID_TEST_DATA_DIR) + "/../configs/prompts/default-en.py";
  auto from_file = make_prompt_template(registry(), "raven-chat", {{"prompt_file", path}});
  auto builtin = make_prompt_template(registry(), "raven-chat", {});
  EXPECT_EQ(from_file->init_prompt(), builtin->init_prompt());
  EXPECT_EQ(from_file->user_name(), "Bob");
  EXPECT_EQ(from_file->bot_name(), "Alice");
  // Same structure as English-2: an intro paragraph and 8 alternating turns.
  std::string t = builtin->init_prompt();
  ASSERT_EQ(t.substr(0, 1), "\n");
  std::vector<std::string> paras;
  size_t pos = 1;
  while (pos < t.size()) {
    size_t e = t.find("\n\n", pos);
    paras.push_back(t.substr(pos, e - pos));
    pos = e + 2;
  }
  ASSERT_EQ(paras.size(), 9u);
  for (int i = 1; i < 9; ++i) EXPECT_EQ(paras[size_t(i)].rfind(i % 2 ? "Bob: " : "Alice: ", 0), 0u) << paras[size_t(i)];
}

TEST(PromptFile, SyntaxSubset) {
  auto p = parse_chat_prompt(
      "# comment\n"
      "interface = ':'  # trailing comment\n"
      "user = \"B\" \"ob\"\n"
      "bot = ('Al'\n"
      "       + \"ice\")\n"
      "x = r'a\\nb'\n"
      "y = \"tab\\there \\x41\\u00e9 \\q\"\n"
      "z = \"\"\"multi\nline\"\"\"\n"
      "init_prompt = f'''\n{user}{interface} hi {{not}} \\\ncontinued\n{bot}{ interface } yo'''\n"
      "init_prompt += \"!\"\n",
      "p.py");
  EXPECT_EQ(p.user, "Bob");
  EXPECT_EQ(p.bot, "Alice");
  EXPECT_EQ(p.interface, ":");
  EXPECT_EQ(p.variables.at("x"), "a\\nb");
  EXPECT_EQ(p.variables.at("y"), "tab\there A\xC3\xA9 \\q");
  EXPECT_EQ(p.variables.at("z"), "multi\nline");
  EXPECT_EQ(p.init_prompt, "\nBob: hi {not} continued\nAlice: yo!");
  // CRLF files read as LF (as Python's universal newlines do).
  auto q = parse_chat_prompt("user='a'\r\nbot='b'\r\ninterface=':'\r\ninit_prompt='''x\r\ny'''\r\n", "q.py");
  EXPECT_EQ(q.init_prompt, "x\ny");
}

TEST(PromptFile, ErrorsNameFileLineAndColumn) {
  EXPECT_EQ(error_of("import os\n"), "p.py:1:1: 'import' statements are not supported (only string assignments; the file is never executed)");
  EXPECT_NE(error_of("user = 'a'\nbot = open('x')\n").find("p.py:2:"), std::string::npos);
  EXPECT_NE(error_of("user = 'abc\n").find("p.py:1:8: string literal not closed before the end of its line"), std::string::npos);
  EXPECT_NE(error_of("user = '''abc\n").find("unterminated string literal"), std::string::npos);
  EXPECT_NE(error_of("user = f'{bot}'\n").find("refers to a name not assigned before"), std::string::npos);
  EXPECT_NE(error_of("bot='b'\nuser = f'{bot!r}'\n").find("p.py:2:"), std::string::npos);
  EXPECT_NE(error_of("user = b'x'\n").find("bytes literals"), std::string::npos);
  EXPECT_NE(error_of("user = 'a' 'b' x\n").find("expected the end of the line"), std::string::npos);
  EXPECT_NE(error_of("user='a'\nbot='b'\ninterface=':'\n").find("no assignment to 'init_prompt'"), std::string::npos);
  EXPECT_NE(error_of("x += 'a'\n").find("before 'x' is assigned"), std::string::npos);
  try {
    read_chat_prompt_file("/nonexistent/prompt.py");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "/nonexistent/prompt.py: cannot open the prompt file");
  }
}

TEST(PromptText, NormalisationAsChatPy) {
  using prompt_text::normalize_init_prompt;
  EXPECT_EQ(normalize_init_prompt("\n  a  \r\n\n\xE3\x80\x80 b\xE3\x80\x80\n\n  "), "\na\n\nb\n\n");
  EXPECT_EQ(normalize_init_prompt("x"), "\nx\n\n");
  EXPECT_EQ(normalize_init_prompt(" \n\t "), "");
  // Python's str.strip() set, both implementations.
  for (std::string s : {std::string(" \t\v\f\r\n\x1c x \xC2\xA0\xE2\x80\x80\xE2\x80\xA8\xE3\x80\x80"), std::string("\xC2\x85y\xC2\x85"),
                        std::string("\xE2\x80\x8Bz"), std::string("\xFF a \xFF")}) {
    EXPECT_EQ(chat::py_strip(s), prompt_text::py_strip(s)) << s;
  }
  EXPECT_EQ(chat::py_strip(" \t\v\f\r\n\x1c x \xC2\xA0\xE2\x80\x80\xE2\x80\xA8\xE3\x80\x80"), "x");
  EXPECT_EQ(chat::py_strip("\xE2\x80\x8Bz"), "\xE2\x80\x8Bz");  // ZWSP is not whitespace in Python
}

TEST(Templates, RavenChatWorldChatQaInstruct) {
  auto raven = registry().create_prompt_template("raven-chat", {});
  EXPECT_EQ(raven->chat_turn("hi"), "Bob: hi\n\nAlice:");
  EXPECT_TRUE(raven->fix_trailing_double_newline());
  EXPECT_EQ(raven->stop_text(), "\n\n");
  EXPECT_EQ(raven->free_prompt("gen", "Once"), "\nOnce");
  EXPECT_EQ(raven->free_prompt("qq", "Why?"), "\nQ: Why?\nA:");
  auto world = registry().create_prompt_template("world-chat", {});
  EXPECT_EQ(world->chat_turn("hi"), "User: hi\n\nAssistant:");
  EXPECT_FALSE(world->fix_trailing_double_newline());
  EXPECT_EQ(world->init_prompt(), "");
  auto named = registry().create_prompt_template("raven-chat", {{"user", "Ann"}, {"bot", "Max"}, {"interface", ">"},
                                                                {"init_prompt", "  {user} meets {bot}.  "}});
  EXPECT_EQ(named->chat_turn("yo"), "Ann> yo\n\nMax>");
  EXPECT_EQ(named->init_prompt(), "\nAnn meets Max.\n\n");
  auto raw = registry().create_prompt_template("raven-chat", {{"init_prompt", " x "}, {"normalize", "false"}, {"fix_tokens", "false"}});
  EXPECT_EQ(raw->init_prompt(), " x ");
  EXPECT_FALSE(raw->fix_trailing_double_newline());
  auto qa = registry().create_prompt_template("qa", {});
  EXPECT_EQ(qa->chat_turn("Why?"), "\nQ: Why?\nA:");
  auto ins = registry().create_prompt_template("instruct", {});
  EXPECT_EQ(ins->chat_turn("Do it"), ins->free_prompt("instruct", "Do it"));
  EXPECT_THROW(registry().create_prompt_template("raven-chat", {{"colour", "red"}}), Error);
  EXPECT_THROW(registry().create_prompt_template("raven-chat", {{"fix_tokens", "maybe"}}), Error);
  EXPECT_THROW(registry().create_prompt_template("no-such-template", {}), Error);
  EXPECT_THROW(raven->free_prompt("poem", "x"), Error);
  const std::string alt = std::string(CORVID_TEST_DATA_DIR) + "/chat/data/alt_prompt.py";
  EXPECT_THROW(make_prompt_template(registry(), "raven-chat", {{"prompt_file", alt}, {"user", "X"}}), Error);
  EXPECT_THROW(make_prompt_template(registry(), "raven-chat", {{"prompt_file", alt}, {"init_prompt", "x"}}), Error);
  EXPECT_EQ(make_prompt_template(registry(), "raven-chat", {{"prompt_file", alt}, {"user", "User"}})->user_name(), "User");
}

TEST(Templates, InstructFormatIsTheAlpacaTemplateByteForByte) {
  const std::string path = kShared + "/alpaca_preamble.txt";
  if (!fs::exists(path)) GTEST_SKIP() << "no " << path;
  std::string tmpl = read(path);
  size_t k = tmpl.find("{msg}");
  ASSERT_NE(k, std::string::npos);
  std::string expect = tmpl.substr(0, k) + "Write a haiku." + tmpl.substr(k + 5);  // the file starts with its "\n"
  auto t = registry().create_prompt_template("raven-chat", {});
  EXPECT_EQ(t->free_prompt("instruct", "Write a haiku."), expect);
}
