// corvid-tokenize: encode, --count, --decode, --jsonl, --kind, and one-line
// errors with exit code 1.
#include <gtest/gtest.h>

#include "../common/run_process.h"
#include "tokenizer_test_util.h"

using namespace tok_test;
using corvid_test::run_process;

namespace {
const std::string kBin = std::string(CORVID_BIN_DIR) + "/corvid-tokenize";
std::vector<std::string> args(std::initializer_list<std::string> extra) {
  std::vector<std::string> a{kBin, "--plugin-dir", CORVID_PLUGIN_DIR};
  a.insert(a.end(), extra);
  return a;
}
bool one_line_error(const corvid_test::ProcessResult& r) {
  return r.exit_code == 1 && r.out.empty() && !r.err.empty() && r.err.find('\n') == r.err.size() - 1;
}
}  // namespace

TEST(TokenizeCli, EncodeCountDecodeNeox) {
  if (!exists(neox_path())) GTEST_SKIP() << "20B_tokenizer.json not found (shared data)";
  auto r = run_process(args({"--tokenizer", neox_path()}), "\nThe following is a");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "187 510 1563 310 247\n");
  r = run_process(args({"--tokenizer", neox_path(), "--count"}), "\nThe following is a");
  EXPECT_EQ(r.out, "5\n");
  r = run_process(args({"--tokenizer", neox_path(), "--decode"}), "187 510 1563\n310 247");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "\nThe following is a");
}

TEST(TokenizeCli, JsonlWorldMatchesPublicData) {
  std::string pub = shared_tokenizers_dir() + "/testdata/world_public.jsonl";
  if (!exists(world_path()) || !exists(pub)) GTEST_SKIP() << "World files not found (shared data)";
  auto r = run_process(args({"--tokenizer", world_path(), "--jsonl"}), read_file(pub));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto expected = read_jsonl(pub);
  std::istringstream out(r.out);
  std::string line;
  size_t n = 0;
  while (std::getline(out, line)) {
    auto j = nlohmann::json::parse(line);
    ASSERT_LT(n, expected.size());
    EXPECT_EQ(j["text"], expected[n]["text"]);
    EXPECT_EQ(j["ids"], expected[n]["ids"]) << "line " << n + 1;
    ++n;
  }
  EXPECT_EQ(n, expected.size());
  r = run_process(args({"--tokenizer", world_path(), "--kind", "rwkv_world", "--count"}), "\n\n");
  EXPECT_EQ(r.out, "1\n");
}

TEST(TokenizeCli, ErrorsAreOneLineWithExitCode1) {
  EXPECT_TRUE(one_line_error(run_process(args({}), "x")));
  auto r = run_process(args({"--tokenizer", "/nonexistent/tok.json"}), "x");
  EXPECT_TRUE(one_line_error(r)) << r.err;
  EXPECT_NE(r.err.find("/nonexistent/tok.json"), std::string::npos);
  EXPECT_TRUE(one_line_error(run_process(args({"--bogus"}), "x")));
  if (!exists(world_path())) GTEST_SKIP() << "World vocabulary not found (shared data)";
  EXPECT_TRUE(one_line_error(run_process(args({"--tokenizer", world_path(), "--kind", "sentencepiece"}), "x")));
  // A bad line in --jsonl input: named, and no partial output.
  r = run_process(args({"--tokenizer", world_path(), "--jsonl"}), "{\"text\": \"ok\"}\n{\"text\": 5}\n");
  EXPECT_TRUE(one_line_error(r)) << r.err << r.out;
  EXPECT_NE(r.err.find("stdin:2"), std::string::npos) << r.err;
  r = run_process(args({"--tokenizer", world_path(), "--jsonl"}), "{\"text\": \"ok\"}\n{bad\n");
  EXPECT_TRUE(one_line_error(r)) << r.err;
  r = run_process(args({"--tokenizer", world_path(), "--decode"}), "11 abc 12");
  EXPECT_TRUE(one_line_error(r)) << r.err;
  EXPECT_NE(r.err.find("'abc'"), std::string::npos) << r.err;
  r = run_process(args({"--tokenizer", world_path(), "--decode"}), "99999999");
  EXPECT_TRUE(one_line_error(r)) << r.err;
  if (exists(neox_path())) {
    r = run_process(args({"--tokenizer", neox_path()}), "bad \xff utf8");
    EXPECT_TRUE(one_line_error(r)) << r.err;
  }
}
