// corvid-convert and corvid-inspect as programs: exit codes, one-line errors,
// plain progress lines when stderr is not a terminal, and what a signal in the
// middle of a conversion leaves behind.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "../common/run_process.h"
#include "convert_test_util.h"
#include "corvid/convert/inspect.h"

using namespace convert_test;
namespace fs = std::filesystem;

namespace {

const std::string kConvert = std::string(CORVID_BIN_DIR) + "/corvid-convert";
const std::string kInspect = std::string(CORVID_BIN_DIR) + "/corvid-inspect";
const std::string kPluginArg = std::string("--plugin-dir=") + CORVID_PLUGIN_DIR;

int count_lines(const std::string& s) { return int(std::count(s.begin(), s.end(), '\n')); }

TEST(ConvertCli, ConvertsAndReports) {
  ScratchDir dir;
  const std::string out = dir.file("m.safetensors");
  auto r = corvid_test::run_process({kConvert, "--in", fixture("rwkv4_small_bf16.pth"), "--out", out, "--strategy", "cpu fp32i8",
                                     kPluginArg});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Wrote " + out), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("for strategy \"cpu fp32i8\""), std::string::npos) << r.out;
  // Not a terminal: plain lines, the last one at 100%, no carriage returns.
  EXPECT_NE(r.err.find("(100%)"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\r'), std::string::npos);
  EXPECT_EQ(dir.listing(), std::vector<std::string>{"m.safetensors"});

  auto q = corvid_test::run_process({kConvert, "--in", fixture("rwkv4_small_bf16.pth"), "--out", dir.file("q.safetensors"),
                                     "--strategy", "cpu fp32", "--quiet", kPluginArg});
  ASSERT_EQ(q.exit_code, 0) << q.err;
  EXPECT_EQ(q.out, "");
  EXPECT_EQ(q.err, "");

  auto i = corvid_test::run_process({kInspect, out});
  ASSERT_EQ(i.exit_code, 0) << i.err;
  EXPECT_EQ(i.out, corvid::inspect_checkpoint(out));
}

TEST(ConvertCli, ConfigFileGivesTheStrategy) {
  ScratchDir dir;
  const std::string cfg = dir.file("p.xml");
  {
    std::ofstream f(cfg);
    f << "<corvid>\n  <pipeline>\n    <stage device=\"cpu\" dtype=\"fp32i8\" layers=\"0-1\"/>\n"
         "    <stage device=\"cpu\" dtype=\"fp32\" layers=\"2-head\"/>\n  </pipeline>\n</corvid>\n";
  }
  const std::string out = dir.file("m.safetensors");
  auto r = corvid_test::run_process({kConvert, "--in", fixture("rwkv4_deep_bf16.pth"), "--out", out, "--config", cfg, kPluginArg});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string info = corvid::inspect_checkpoint(out);
  EXPECT_NE(info.find("slots 0-1"), std::string::npos) << info;
  EXPECT_NE(info.find("slots 2-7 (head)"), std::string::npos) << info;
}

TEST(ConvertCli, ErrorsAreOneLineAndLeaveNothing) {
  ScratchDir dir;
  const std::string out = dir.file("m.safetensors");
  struct Bad {
    std::vector<std::string> args;
    std::string expect;
  };
  const std::string chat = std::string(CORVID_TEST_DATA_DIR) + "/convert/data/chatrwkv_converted_tiny.pth";
  const Bad bad[] = {
      {{"--in", fixture("rwkv4_small_bf16.pth"), "--out", out, "--strategy", "cpu fp32 *x"}, "column"},
      {{"--in", fixture("rwkv4_small_bf16.pth"), "--out", out}, "no strategy"},
      {{"--in", dir.file("nope.pth"), "--out", out, "--strategy", "cpu fp32"}, "nope.pth"},
      {{"--in", chat, "--out", out, "--strategy", "cpu fp32"}, "ChatRWKV-converted"},
      {{"--out", out, "--strategy", "cpu fp32"}, "no input"},
      {{"--in", fixture("rwkv4_small_bf16.pth"), "--strategy", "cpu fp32"}, "no output"},
      {{"--bogus"}, "see --help"},
  };
  for (const Bad& b : bad) {
    std::vector<std::string> argv = {kConvert};
    argv.insert(argv.end(), b.args.begin(), b.args.end());
    argv.push_back(kPluginArg);
    auto r = corvid_test::run_process(argv);
    EXPECT_EQ(r.exit_code, 1) << b.expect;
    EXPECT_EQ(count_lines(r.err), 1) << r.err;
    EXPECT_EQ(r.err.rfind("corvid-convert: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(b.expect), std::string::npos) << r.err;
    EXPECT_TRUE(dir.listing().empty()) << b.expect;
  }
  auto i = corvid_test::run_process({kInspect, dir.file("nope.safetensors")});
  EXPECT_EQ(i.exit_code, 1);
  EXPECT_EQ(count_lines(i.err), 1) << i.err;
}

// ---------------------------------------------------------------------------
// Signals. The input is a synthetic checkpoint big enough that converting it
// takes a while (~450 MB of bf16 weights), generated once per run.

class ConvertSignal : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    in_dir_ = new ScratchDir();
    input_ = in_dir_->file("big.safetensors");
    write_random_rwkv4_safetensors(input_, 8, 1024, 50277);
  }
  static void TearDownTestSuite() {
    delete in_dir_;
    in_dir_ = nullptr;
  }

  // Starts a conversion into `out`, waits until its temporary file appears in
  // out's folder, sends `sig`, and returns the wait status.
  static int convert_and_signal(const ScratchDir& dir, const std::string& out, int sig, bool* sent) {
    pid_t pid = fork();
    if (pid == 0) {
      int devnull = ::open("/dev/null", O_WRONLY);
      dup2(devnull, 1);
      dup2(devnull, 2);
      execl(kConvert.c_str(), kConvert.c_str(), "--in", input_.c_str(), "--out", out.c_str(), "--strategy", "cpu fp32i8",
            kPluginArg.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    *sent = false;
    int status = 0;
    const auto t0 = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(120)) {
      if (waitpid(pid, &status, WNOHANG) == pid) return status;  // finished before we could interrupt
      if (!dir.listing().empty()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let it write some tensors
        kill(pid, sig);
        *sent = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    if (!*sent) kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return status;
  }

  static ScratchDir* in_dir_;
  static std::string input_;
};
ScratchDir* ConvertSignal::in_dir_ = nullptr;
std::string ConvertSignal::input_;

TEST_F(ConvertSignal, SigintRemovesTheTemporaryFile) {
  ScratchDir dir;
  const std::string out = dir.file("m.safetensors");
  bool sent = false;
  int status = convert_and_signal(dir, out, SIGINT, &sent);
  ASSERT_TRUE(sent) << "the conversion ended before it could be interrupted (status " << status << ")";
  ASSERT_TRUE(WIFEXITED(status)) << "corvid-convert should exit, not die of the signal";
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGINT);
  EXPECT_FALSE(fs::exists(out));
  EXPECT_TRUE(dir.listing().empty()) << "left behind: " << (dir.listing().empty() ? "" : dir.listing()[0]);
}

TEST_F(ConvertSignal, SigtermRemovesTheTemporaryFile) {
  ScratchDir dir;
  const std::string out = dir.file("m.safetensors");
  bool sent = false;
  int status = convert_and_signal(dir, out, SIGTERM, &sent);
  ASSERT_TRUE(sent);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGTERM);
  EXPECT_TRUE(dir.listing().empty());
}

TEST_F(ConvertSignal, SigkillNeverLeavesAnOutputFile) {
  // SIGKILL cannot be handled: what must hold is that FILE itself never exists
  // half-written (it only appears by rename once complete).
  ScratchDir dir;
  const std::string out = dir.file("m.safetensors");
  bool sent = false;
  int status = convert_and_signal(dir, out, SIGKILL, &sent);
  ASSERT_TRUE(sent);
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(ConvertSignal, UninterruptedBigConversionLoads) {
  // The same input converted to the end: proves the signal tests interrupted
  // a conversion that would otherwise have succeeded.
  ScratchDir dir;
  const std::string out = dir.file("m.safetensors");
  auto r = corvid_test::run_process({kConvert, "--in", input_, "--out", out, "--strategy", "cpu fp32i8", "--quiet", kPluginArg});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto o = engine_options(out, "cpu fp32i8");
  auto eng = corvid::Engine::load(o);
  EXPECT_EQ(eng->hparams().n_layer, 8);
  EXPECT_EQ(eng->hparams().n_vocab, 50277);
}

}  // namespace
