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
