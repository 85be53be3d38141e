// corvid-run as a user meets it: exit codes, one-line errors, plan output,
// and logits dumped for fixture checkpoints against the Python reference.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/run_process.h"
#include "corvid/io/npy.h"

using corvid_test::run_process;
namespace fs = std::filesystem;

static const std::string kRun = std::string(CORVID_BIN_DIR) + "/corvid-run";

static int count_lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

TEST(CorvidRun, MissingModelIsOneLineErrorExit1) {
  auto r = run_process({kRun, "--model", "/nonexistent/model.pth", "--tokens", "1,2"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.signal, 0);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("/nonexistent/model.pth"), std::string::npos) << r.err;
}

TEST(CorvidRun, BadStrategyPointsAtTheColumn) {
  auto r = run_process({kRun, "--n-layer", "12", "--strategy", "cuda fp16 *x", "--print-plan"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("column"), std::string::npos) << r.err;
}

TEST(CorvidRun, UnknownOptionIsAnError) {
  auto r = run_process({kRun, "--frobnicate"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
}

TEST(CorvidRun, BadTokenListNamesThePosition) {
  fs::path m = fs::path(CORVID_TEST_DATA_DIR) / "fixtures/models";
  auto r = run_process({kRun, "--n-layer", "2", "--tokens", "1,x", "--model", "/nonexistent.pth"});
  EXPECT_EQ(r.exit_code, 1);
}

TEST(CorvidRun, PrintPlanJsonForSplitCpuPipeline) {
  auto r = run_process({kRun, "--n-layer", "24", "--n-embd", "1024", "--vocab", "50277", "--strategy",
                        "cpu fp32i8 *10 -> cpu fp32", "--print-plan", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["n_layer"], 24);
  EXPECT_EQ(j["slots"], 25);
  ASSERT_EQ(j["stages"].size(), 2u);
  EXPECT_EQ(j["stages"][0]["slots"], nlohmann::json::array({0, 9}));
  EXPECT_EQ(j["stages"][1]["slots"], nlohmann::json::array({10, 24}));
  EXPECT_EQ(j["stages"][0]["dtype"], "fp32i8");
  EXPECT_EQ(j["stages"][0]["device"], "cpu");
  EXPECT_TRUE(j["stages"][0]["streamed"].is_null());
  EXPECT_EQ(j["rescale_layer"], 0);
  EXPECT_GT(j["stages"][1]["weight_bytes"].get<uint64_t>(), j["stages"][0]["weight_bytes"].get<uint64_t>());
}

TEST(CorvidRun, DeviceWithoutPluginIsAClearError) {
  auto r = run_process({kRun, "--n-layer", "12", "--strategy", "mps fp16", "--print-plan"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no plugin serves"), std::string::npos) << r.err;
}

// Every hostile checkpoint ends with one line naming the file and exit code 1:
// no crash, no hang, no huge allocation.
TEST(CorvidRun, HostileCheckpointsAreRefusedCleanly) {
  fs::path dir = fs::path(CORVID_TEST_DATA_DIR) / "fixtures/hostile";
  int n = 0;
  for (const auto& ent : fs::directory_iterator(dir)) {
    const std::string ext = ent.path().extension().string();
    if (ext != ".pth" && ext != ".safetensors" && ext != ".bin" && ext != ".pkl") continue;
    auto r = run_process({kRun, "--model", ent.path().string(), "--tokens", "1"});
    SCOPED_TRACE(ent.path().filename().string());
    EXPECT_EQ(r.signal, 0) << r.err;
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_EQ(count_lines(r.err), 1) << r.err;
    EXPECT_NE(r.err.find(ent.path().filename().string()), std::string::npos) << r.err;
    ++n;
  }
  EXPECT_GT(n, 20);
}

// A real RWKV fixture cut short anywhere is an error, never a crash.
TEST(CorvidRun, TruncatedModelIsRefusedCleanly) {
  fs::path src = fs::path(CORVID_TEST_DATA_DIR) / "fixtures/models/rwkv4_small_bf16.pth";
  std::ifstream in(src, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  fs::path tmp = fs::temp_directory_path() / "corvid_truncated_test.pth";
  for (size_t cut : {size_t(10), bytes.size() / 3, bytes.size() / 2, bytes.size() - 100, bytes.size() - 1}) {
    { std::ofstream(tmp, std::ios::binary).write(bytes.data(), std::streamsize(cut)); }
    auto r = run_process({kRun, "--model", tmp.string(), "--tokens", "1"});
    EXPECT_EQ(r.signal, 0) << cut;
    EXPECT_EQ(r.exit_code, 1) << cut << ": " << r.err;
    EXPECT_EQ(count_lines(r.err), 1) << r.err;
  }
  fs::remove(tmp);
}

// --dump-logits writes float32 [T, V] matching the independent reference.
TEST(CorvidRun, DumpLogitsMatchesReference) {
  fs::path m = fs::path(CORVID_TEST_DATA_DIR) / "fixtures/models";
  fs::path out = fs::temp_directory_path() / "corvid_dump_test.npy";
  const std::string tokens = "0,63,55,13,33,66,48,32,45,45,34,12,1,37,24,17";  // fixtures.json, rwkv4_tiny_fp32
  for (const char* mode : {"step", "chunk:5"}) {
    auto r = run_process({kRun, "--model", (m / "rwkv4_tiny_fp32.pth").string(), "--strategy", "cpu fp32", "--tokens", tokens,
                          "--dump-logits", out.string(), "--prefill", mode});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    corvid::NpyArray got = corvid::read_npy(out.string());
    corvid::NpyArray want = corvid::read_npy((m / "expected/rwkv4_tiny_fp32/cpu_fp32/logits_step.npy").string());
    ASSERT_EQ(got.shape, want.shape);
    for (size_t i = 0; i < got.data.size(); ++i) ASSERT_NEAR(got.data[i], want.data[i], 1e-4) << mode << " at " << i;
  }
  fs::remove(out);
}

// corvid-chat shows the same resolved plan as corvid-run, without loading weights.
TEST(CorvidChat, PrintPlanJsonEqualsCorvidRunAndBench) {
  const std::string chat = std::string(CORVID_BIN_DIR) + "/corvid-chat";
  const std::string model = std::string(CORVID_TEST_DATA_DIR) + "/fixtures/models/rwkv4_deep_bf16.pth";
  const char* strategy = "cpu fp32i8 *3 -> cpu fp32";
  auto a = run_process({chat, "--model", model, "--strategy", strategy, "--print-plan", "--json"});
  auto b = run_process({kRun, "--model", model, "--strategy", strategy, "--print-plan", "--json"});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(nlohmann::json::parse(a.out), nlohmann::json::parse(b.out));
  auto c = run_process({std::string(CORVID_BIN_DIR) + "/corvid-bench", "--model", model, "--strategy", strategy, "--print-plan", "--json"});
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(nlohmann::json::parse(c.out), nlohmann::json::parse(b.out));
  auto j = nlohmann::json::parse(a.out);
  EXPECT_EQ(j["stages"][0]["slots"], nlohmann::json::array({0, 2}));
  EXPECT_EQ(j["stages"][1]["slots"], nlohmann::json::array({3, 7}));
}
