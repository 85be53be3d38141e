// corvid-bench --perf runs end to end on a fixture and reports every key the
// issue asks for, with values that are consistent with each other; bad
// options are one-line errors with exit code 1. (Speed itself is shown by
// running the benchmark, never asserted here.)
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/fixtures.h"
#include "common/run_process.h"

using namespace corvid_test;

namespace {
std::string bench() { return std::string(CORVID_BIN_DIR) + "/corvid-bench"; }
}  // namespace

TEST(CorvidBenchPerf, JsonHasEveryKeyAndConsistentValues) {
  const Fixture fx = load_fixtures().front();
  for (const char* strategy : {"cpu fp32", "cpu fp32i8", "cpu bf16"}) {
    SCOPED_TRACE(strategy);
    ProcessResult r = run_process({bench(), "--perf", "--model", fx.files[0], "--strategy", strategy, "--threads", "2",
                                   "--prompt-tokens", "20", "--chunk", "8", "--decode-tokens", "9", "--warmup-tokens", "2",
                                   "--bandwidth-mib", "16", "--plugin-dir", CORVID_PLUGIN_DIR, "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    nlohmann::json j = nlohmann::json::parse(r.out);
    for (const char* k : {"load_s", "prefill_tokens_per_s", "decode_ms_per_token", "peak_rss_bytes",
                          "weight_bytes_per_token", "bandwidth_gb_per_s", "roofline_ms_per_token", "threads", "strategy",
                          "model"})
      EXPECT_TRUE(j.contains(k)) << k;
    EXPECT_EQ(j["threads"], 2);
    EXPECT_EQ(j["strategy"], strategy);
    EXPECT_EQ(j["model"], fx.files[0]);
    EXPECT_GT(j["prefill_tokens_per_s"].get<double>(), 0);
    EXPECT_GT(j["decode_ms_per_token"].get<double>(), 0);
    EXPECT_LE(j["decode_ms_per_token_min"].get<double>(), j["decode_ms_per_token"].get<double>());
    EXPECT_GT(j["bandwidth_gb_per_s"].get<double>(), 0);
    EXPECT_GT(j["peak_rss_bytes"].get<double>(), 0);
    // weight bytes per token: the 7 matrices of each block and the head, in the
    // stage's weight type (int8: one byte per weight plus the scale vectors).
    const double L = fx.L, C = fx.C, V = fx.V, wb = std::string(strategy) == "cpu fp32" ? 4 : std::string(strategy) == "cpu bf16" ? 2 : 1;
    const double matrices = L * (3 * C * C + C * C + 4 * C * C * 2 + C * C) + V * C;  // A = C, F = 4C
    EXPECT_GE(j["weight_bytes_per_token"].get<double>(), matrices * wb);
    EXPECT_NEAR(j["roofline_ms_per_token"].get<double>(),
                j["weight_bytes_per_token"].get<double>() / (j["bandwidth_gb_per_s"].get<double>() * 1e9) * 1e3, 1e-6);
  }
}

TEST(CorvidBenchPerf, BadInputIsOneLineAndExitOne) {
  const Fixture fx = load_fixtures().front();
  const std::vector<std::vector<std::string>> cases = {
      {bench(), "--perf"},                                                      // no model
      {bench(), "--perf", "--model", "/nonexistent/model.pth"},                 // missing file
      {bench(), "--perf", "--model", fx.files[0], "--decode-tokens", "0"},      // bad count
      {bench(), "--perf", "--model", fx.files[0], "--strategy", "cpu fp64"},    // bad strategy
      {bench(), "--perf", "--model", fx.files[0], "--no-such-option"},
      {bench(), "--model", fx.files[0]},                                        // no mode
  };
  for (const auto& argv : cases) {
    ProcessResult r = run_process(argv);
    EXPECT_EQ(r.exit_code, 1) << argv.back() << ": " << r.err;
    EXPECT_EQ(r.signal, 0);
    ASSERT_FALSE(r.err.empty()) << argv.back();
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}
