// corvid-bench --questions / --lambada as a program, against the Python
// reference's outputs (tests/chat/data, see docs/chat.md).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "../common/run_process.h"

using corvid_test::run_process;
using nlohmann::json;

namespace {

const std::string kBin = std::string(CORVID_BIN_DIR) + "/corvid-bench";
const std::string kData = std::string(CORVID_TEST_DATA_DIR) + "/chat/data";
const std::string kConfigs = std::string(CORVID_TEST_DATA_DIR) + "/../configs";
const std::string kPlugins = std::string("--plugin-dir=") + CORVID_PLUGIN_DIR;

json load(const std::string& p) {
  std::ifstream f(p);
  return json::parse(f);
}

std::vector<std::string> args(const std::string& model, std::vector<std::string> more) {
  std::vector<std::string> a = {kBin, "--model", kData + "/" + model, "--tokenizer", kData + "/chat_vocab.txt", kPlugins};
  a.insert(a.end(), more.begin(), more.end());
  return a;
}

bool skip_no_backend(const corvid_test::ProcessResult& r) { return r.err.find("no plugin serves") != std::string::npos; }

}  // namespace

TEST(BenchApp, QuestionsPrintTheReferenceBlocks) {
  auto r = run_process(args("chat_model.safetensors", {"--questions", kConfigs + "/questions.txt"}));
  if (skip_no_backend(r)) GTEST_SKIP() << r.err;
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json ref = load(kData + "/questions_expected.json");
  size_t pos = 0;
  for (const json& q : ref["questions"]) {
    size_t k = r.out.find(q["printed"].get<std::string>(), pos);
    ASSERT_NE(k, std::string::npos) << "missing block:\n" << q["printed"].get<std::string>() << "\nin:\n" << r.out;
    pos = k + 1;
  }
  EXPECT_NE(r.out.find("tokens/s"), std::string::npos);
}

TEST(BenchApp, DefaultQuestionSetAndJson) {
  auto r = run_process(args("chat_model.safetensors", {"--questions", "--json"}));
  if (skip_no_backend(r)) GTEST_SKIP() << r.err;
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  json ref = load(kData + "/questions_expected.json");
  ASSERT_EQ(j["questions"].size(), ref["questions"].size());
  for (size_t i = 0; i < j["questions"].size(); ++i)
    EXPECT_EQ(j["questions"][i]["token_ids"], ref["questions"][i]["tokens"]) << i;
}

TEST(BenchApp, LambadaJsonMatchesTheReference) {
  const std::string file = std::string(CORVID_SHARED_DIR) + "/chatrwkv/lambada_test.jsonl";
  if (!std::filesystem::exists(file)) GTEST_SKIP() << "no " << file;
  auto r = run_process(args("chat_model_raw.safetensors", {"--lambada", file, "--limit", "30", "--json"}));
  if (skip_no_backend(r)) GTEST_SKIP() << r.err;
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out)["lambada"];
  json ref = load(kData + "/lambada_expected_raw.json");
  EXPECT_EQ(j["count"].get<int>(), 30);
  EXPECT_NEAR(std::log(j["ppl"].get<double>()), std::log(ref["ppl"].get<double>()), 1e-4);
  EXPECT_DOUBLE_EQ(j["acc"].get<double>(), ref["acc"].get<double>());
  // The text report prints "N ppl X acc Y" at the end.
  auto t = run_process(args("chat_model_raw.safetensors", {"--lambada", file, "--limit", "30"}));
  EXPECT_NE(t.out.find("30 ppl "), std::string::npos) << t.out;
}

TEST(BenchApp, BadInputIsAOneLineError) {
  const std::string bad = (std::filesystem::temp_directory_path() / "corvid_bad_lambada.jsonl").string();
  std::ofstream(bad) << "{\"text\": \"a b\"}\n{\"txt\": 1}\n";
  struct Case {
    std::vector<std::string> a;
    std::string expect;
  };
  std::vector<Case> cases = {
      {args("chat_model.safetensors", {"--lambada", bad}), bad + ":2:"},
      {args("chat_model.safetensors", {"--lambada", "/nonexistent.jsonl"}), "/nonexistent.jsonl"},
      {args("chat_model.safetensors", {"--questions", "/nonexistent.txt"}), "/nonexistent.txt"},
      {args("chat_model.safetensors", {"--questions", "--limit", "3"}), "--limit"},
  };
  for (const Case& c : cases) {
    auto r = run_process(c.a);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  std::filesystem::remove(bad);
}
