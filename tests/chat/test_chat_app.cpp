// corvid-chat as a program: a scripted session with piped stdin that runs every
// command, the demo model, one-line errors, and an interactive session under a
// pseudo-terminal (libedit active) with Ctrl-C mid-reply, Ctrl-C at the prompt
// and Ctrl-D.
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <fstream>
#include <nlohmann/json.hpp>

#include "../common/run_process.h"
#include "../common/v5_checkpoint.h"

namespace fs = std::filesystem;
using corvid_test::run_process;

namespace {

const std::string kBin = std::string(CORVID_BIN_DIR) + "/corvid-chat";
const std::string kData = std::string(CORVID_TEST_DATA_DIR) + "/chat/data";
const std::string kPlugins = std::string("--plugin-dir=") + CORVID_PLUGIN_DIR;

bool have_cpu_backend() {
  auto r = run_process({kBin, "--model", kData + "/chat_model.safetensors", "--tokenizer", kData + "/chat_vocab.txt", kPlugins}, "");
  return r.err.find("no plugin serves") == std::string::npos;
}

std::vector<std::string> fixture_args(const std::string& model = "chat_model.safetensors") {
  return {kBin, "--model", kData + "/" + model, "--tokenizer", kData + "/chat_vocab.txt", "--seed", "1", kPlugins};
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t k = s.find(what); k != std::string::npos; k = s.find(what, k + 1)) ++n;
  return n;
}

}  // namespace

TEST(ChatApp, PipedSessionRunsEveryCommand) {
  if (!have_cpu_backend()) GTEST_SKIP() << "no cpu fp32 backend plugin";
  const std::string session = (fs::temp_directory_path() / "corvid_chat_app.session").string();
  const std::string script = "Hello there\n+\n+gen Once upon a time\n+++\n++\n+qq What is tea?\n+i Write a poem.\n"
                             "+qa Who are you?\n+save " + session + "\nHow are you? -temp=0.8 -top_p=0.2\n+load " +
                             session + "\n+reset\n+stats\n+help\n\n+prompt " + kData + "/alt_prompt.py\nhi\n";
  auto r = run_process(fixture_args(), script);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("corvid-chat:"), std::string::npos) << r.err;
  for (const char* s : {"Alice: Chat reset.", "Session saved to", "Session loaded from", "Last turn: prefill",
                        "Commands:", "Error: please say something", "Loading prompt...", "Prompt set up.", "Bye."})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
  // Each input line is echoed after its prompt; after +prompt the user is "User".
  EXPECT_NE(r.out.find("Bob: Hello there\nAlice:"), std::string::npos);
  EXPECT_NE(r.out.find("User: hi\nBot:"), std::string::npos) << r.out;
  EXPECT_GE(count(r.out, "\nAlice:"), 4u);
  fs::remove(session);
}

// Greedy corvid-chat from an XML config prints exactly what the Python
// reference of chat.py prints for the same prompt file and messages.
TEST(ChatApp, GreedyRepliesFromAConfigEqualTheReference) {
  if (!have_cpu_backend()) GTEST_SKIP() << "no cpu fp32 backend plugin";
  std::ifstream f(kData + "/chat_expected.json");
  auto ref = nlohmann::json::parse(f);
  std::string script, expect;
  for (int i = 0; i < 3; ++i) {  // a message, "+", a message with per-message options
    const auto& c = ref["commands"][size_t(i)];
    script += c["input"].get<std::string>() + "\n";
    expect += "Bob: " + c["input"].get<std::string>() + "\n" + c["printed"].get<std::string>();
  }
  auto r = run_process({kBin, "--config", kData + "/chat_config.xml", kPlugins}, script);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(expect), std::string::npos) << "expected:\n" << expect << "\ngot:\n" << r.out;
}

TEST(ChatApp, DemoModelByDefault) {
  if (!have_cpu_backend()) GTEST_SKIP() << "no cpu fp32 backend plugin";
  auto r = run_process({kBin, "--seed", "3", kPlugins}, "Hello!\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("DEMO model"), std::string::npos);
  EXPECT_NE(r.out.find("huggingface.co/BlinkDL/rwkv-4-raven"), std::string::npos);
  EXPECT_NE(r.out.find("20B_tokenizer.json"), std::string::npos);
  EXPECT_NE(r.out.find("Bob: Hello!\nAlice:"), std::string::npos) << r.out;
}

TEST(ChatApp, BadInputIsAOneLineErrorAndExitOne) {
  struct Case {
    std::vector<std::string> args;
    std::string expect;
  };
  std::vector<Case> cases = {
      {{kBin, "--model", "/nonexistent/model.pth", kPlugins}, "/nonexistent/model.pth"},
      {{kBin, "--temp", "-1", kPlugins}, "must not be negative"},
      {{kBin, "--penalty-decay", "2", kPlugins}, "--penalty-decay"},
      {{kBin, "--template", "nope", kPlugins}, "nope"},
      {{kBin, "--template-option", "novalue", kPlugins}, "KEY=VALUE"},
      {{kBin, "--bogus-flag"}, "bogus"},
  };
  if (have_cpu_backend()) {
    const std::string bad = (fs::temp_directory_path() / "corvid_bad_prompt.py").string();
    FILE* f = std::fopen(bad.c_str(), "w");
    std::fputs("user = 'Bob'\nbot = 'Alice'\ninterface = ':'\ninit_prompt = open('x')\n", f);
    std::fclose(f);
    cases.push_back({{kBin, "--prompt-file", bad, kPlugins}, bad + ":4:"});
    cases.push_back({{kBin, "--tokenizer", "/nonexistent/vocab.txt", kPlugins}, "/nonexistent/vocab.txt"});
  }
  for (const Case& c : cases) {
    auto r = run_process(c.args, "");
    EXPECT_EQ(r.exit_code, 1) << c.expect << "\n" << r.err;
    EXPECT_EQ(r.signal, 0);
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

namespace {

// A child under a pseudo-terminal, read until a marker appears.
struct Pty {
  pid_t pid = -1;
  int fd = -1;
  std::string seen;

  explicit Pty(const std::vector<std::string>& argv) {
    pid = forkpty(&fd, nullptr, nullptr, nullptr);
    if (pid == 0) {
      std::vector<char*> a;
      for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
      a.push_back(nullptr);
      execv(a[0], a.data());
      _exit(127);
    }
  }
  ~Pty() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    if (fd >= 0) close(fd);
  }
  // Reads until `marker` appears after position `from` (or timeout); returns its position.
  size_t wait_for(const std::string& marker, size_t from = 0, int timeout_ms = 60000) {
    auto t0 = std::chrono::steady_clock::now();
    while (true) {
      size_t k = seen.find(marker, from);
      if (k != std::string::npos) return k;
      int left = timeout_ms - int(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count());
      if (left <= 0) return std::string::npos;
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, left) <= 0) return std::string::npos;
      char buf[4096];
      ssize_t n = read(fd, buf, sizeof buf);
      if (n <= 0) return std::string::npos;
      seen.append(buf, size_t(n));
    }
  }
  void send(const std::string& s) { (void)!write(fd, s.data(), s.size()); }
  // Like a person: a moment after the prompt shows before typing (libedit
  // switches the terminal mode right after printing it).
  void settle() {
    pollfd p{fd, POLLIN, 0};
    auto t0 = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(300)) {
      if (poll(&p, 1, 50) > 0) {
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0) seen.append(buf, size_t(n));
      }
    }
  }
  int wait_exit(int timeout_ms = 20000) {
    auto t0 = std::chrono::steady_clock::now();
    while (true) {
      int st = 0;
      pid_t r = waitpid(pid, &st, WNOHANG);
      if (r == pid) {
        pid = -1;
        // Drain what the child wrote before it exited.
        pollfd p{fd, POLLIN, 0};
        char buf[4096];
        while (poll(&p, 1, 200) > 0) {
          ssize_t n = read(fd, buf, sizeof buf);
          if (n <= 0) break;
          seen.append(buf, size_t(n));
        }
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      }
      // Keep draining the terminal so the child never blocks on output.
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 50) > 0) {
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0) seen.append(buf, size_t(n));
      }
      if (std::chrono::steady_clock::now() - t0 > std::chrono::milliseconds(timeout_ms)) return -1;
    }
  }
};

}  // namespace

TEST(ChatApp, CtrlCStopsTheReplyAndTheProgramLivesOn) {
  if (!have_cpu_backend()) GTEST_SKIP() << "no cpu fp32 backend plugin";
  // The raw fixture's replies run to 999 tokens: long enough to interrupt.
  Pty p(fixture_args("chat_model_raw.safetensors"));
  ASSERT_NE(p.wait_for("Bob: "), std::string::npos) << p.seen;
  p.settle();
  size_t mark = p.seen.size();
  p.send("Tell me a long story\r");
  ASSERT_NE(p.wait_for("Alice:", mark), std::string::npos) << p.seen;
  p.send("\x03");
  size_t stopped = p.wait_for("[stopped]", mark);
  ASSERT_NE(stopped, std::string::npos) << p.seen.substr(mark);
  ASSERT_NE(p.wait_for("Bob: ", stopped), std::string::npos) << p.seen.substr(mark);
  p.settle();
  // Still alive: another turn, then the history is there (up arrow) and +stats works.
  mark = p.seen.size();
  p.send("+stats\r");
  size_t stats = p.wait_for("Last turn:", mark);
  ASSERT_NE(stats, std::string::npos) << p.seen.substr(mark);
  ASSERT_NE(p.wait_for("Bob: ", stats), std::string::npos);
  p.settle();
  // Ctrl-C at the prompt quits cleanly.
  mark = p.seen.size();
  p.send("\x03");
  EXPECT_EQ(p.wait_exit(), 0) << p.seen.substr(mark);
  EXPECT_NE(p.seen.find("Bye.", mark), std::string::npos) << p.seen.substr(mark);
}

TEST(ChatApp, CtrlDQuits) {
  if (!have_cpu_backend()) GTEST_SKIP() << "no cpu fp32 backend plugin";
  auto args = fixture_args();
  args.push_back("--temp=0");  // greedy: a short reply on this fixture
  Pty p(args);
  ASSERT_NE(p.wait_for("Bob: "), std::string::npos) << p.seen;
  p.settle();
  size_t mark = p.seen.size();
  p.send("hello\r");
  size_t reply = p.wait_for("Alice:", mark);
  ASSERT_NE(reply, std::string::npos) << p.seen.substr(mark);
  ASSERT_NE(p.wait_for("Bob: ", reply), std::string::npos) << p.seen.substr(mark);
  p.settle();
  p.send("\x04");
  EXPECT_EQ(p.wait_exit(), 0) << p.seen;
  EXPECT_NE(p.seen.find("Bye."), std::string::npos);
}

// A World (RWKV-5+) model without --template chats in the world-chat format
// (User/Assistant), and says so; RWKV-4 keeps raven-chat (the tests above).
// The model is a small random RWKV-6 written here with the chat fixtures'
// 320-token World vocabulary (a World vocabulary needs all 256 single bytes).
TEST(ChatApp, WorldModelsDefaultToTheWorldChatTemplate) {
  if (!have_cpu_backend()) GTEST_SKIP() << "no cpu fp32 backend plugin";
  const std::string model = (fs::temp_directory_path() / ("corvid_world_chat_" + std::to_string(::getpid()) + ".safetensors")).string();
  corvid_test::write_safetensors(model, corvid_test::v5_tensors(corvid::Arch::V6_0, /*L*/ 2, /*C*/ 64, /*H*/ 2, /*F*/ 224,
                                                                /*V*/ 320, /*Dm*/ 8, /*Dd*/ 8));
  const std::string vocab = kData + "/chat_vocab.txt";
  auto r = run_process({kBin, "--model", model, "--tokenizer", vocab, "--temp", "0", kPlugins}, "Hi\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Prompt template world-chat (RWKV v6.0 is a World model"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("User: Hi\nAssistant:"), std::string::npos) << r.out;
  // --template still wins.
  auto q = run_process({kBin, "--model", model, "--tokenizer", vocab, "--temp", "0", "--template", "raven-chat", kPlugins},
                       "Hi\n");
  EXPECT_EQ(q.exit_code, 0) << q.err;
  EXPECT_EQ(q.out.find("Prompt template world-chat"), std::string::npos) << q.out;
  EXPECT_NE(q.out.find("Bob: Hi\nAlice:"), std::string::npos) << q.out;
  fs::remove(model);
}
