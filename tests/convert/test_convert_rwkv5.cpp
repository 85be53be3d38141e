// corvid-convert for RWKV-5.x/6 checkpoints: a converted file loads and gives
// logits and a final state bit-identical (memcmp) to the raw checkpoint with
// the same strategy (both run the same Backend::prepare/create_stage), for
// fp32, bf16 and int8 stages, a v6 file with its LoRA matrices and one with a
// trained initial state (att.time_state). The converted run is also checked
// against the numpy reference (tests/fixtures/models_v5plus) with the
// manifest's tolerances, so a path wrong on both sides cannot pass.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "convert_test_util.h"
#include "corvid/convert/convert.h"
#include "corvid/io/npy.h"

using namespace convert_test;

namespace {

std::string v5_dir() { return std::string(CORVID_TEST_DATA_DIR) + "/fixtures/models_v5plus"; }

nlohmann::json v5_manifest() {
  std::ifstream f(v5_dir() + "/fixtures.json");
  return nlohmann::json::parse(f);
}

struct Case {
  const char* fixture;
  const char* strategy;
};

class ConvertedV5MatchesUnconverted : public ::testing::TestWithParam<Case> {};

TEST_P(ConvertedV5MatchesUnconverted, LogitsAndStateBitIdentical) {
  const Case& c = GetParam();
  const nlohmann::json j = v5_manifest();
  const nlohmann::json* fx = nullptr;
  for (const auto& f : j.at("fixtures"))
    if (f.at("name") == c.fixture) fx = &f;
  ASSERT_NE(fx, nullptr) << c.fixture << " not in models_v5plus/fixtures.json";
  const std::string src = v5_dir() + "/" + fx->at("files")[0].at("file").get<std::string>();
  const std::vector<int32_t> tokens = fx->at("tokens").get<std::vector<int32_t>>();

  ScratchDir dir;
  const std::string out = dir.file("converted.safetensors");
  corvid::convert_checkpoint(convert_options(src, out, c.strategy));
  EXPECT_EQ(dir.listing(), std::vector<std::string>{"converted.safetensors"});

  RunOutput raw = run_engine(engine_options(src, c.strategy), tokens);
  RunOutput conv = run_engine(engine_options(out, c.strategy), tokens);
  expect_same_bits(raw, conv);
  if (HasFatalFailure()) return;

  // Against the reference (chunk:5 logits, the manifest's tolerance).
  const auto& e = fx->at("expected").at(c.strategy);
  const auto& tol = j.at("tolerances").at(c.strategy).at("logits");
  const double atol = tol.at("atol").get<double>(), rtol = tol.at("rtol").get<double>();
  corvid::NpyArray ref = corvid::read_npy(v5_dir() + "/" + e.at("logits").at("chunk:5").get<std::string>());
  ASSERT_EQ(ref.data.size(), conv.logits.size());
  size_t bad = 0;
  for (size_t i = 0; i < ref.data.size(); ++i)
    if (!(std::fabs(double(ref.data[i]) - conv.logits[i]) <= atol + rtol * std::fabs(double(ref.data[i])))) ++bad;
  EXPECT_EQ(bad, 0u) << "converted run vs numpy reference";
}

const Case kCases[] = {
    {"rwkv6_small_bf16", "cpu fp32"},   {"rwkv6_small_bf16", "cpu bf16"},
    {"rwkv6_small_bf16", "cpu fp32i8"}, {"rwkv6_state_fp16", "cpu bf16"},
    {"rwkv5_2_small_bf16", "cpu fp32i8"}, {"rwkv5_0_tiny_bf16", "cpu fp32"},
};
INSTANTIATE_TEST_SUITE_P(Fixtures, ConvertedV5MatchesUnconverted, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& i) {
                           std::string s = std::string(i.param.fixture) + "__" + i.param.strategy;
                           for (char& ch : s)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });

}  // namespace
