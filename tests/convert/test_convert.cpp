// corvid-convert end to end, in process: convert the fixture checkpoints for
// CPU strategies, load the converted files through Engine::load, and require
// the logits and the final state to be bit-identical (memcmp) to loading the
// original checkpoint with the same strategy. Both paths run the same
// Backend::prepare/create_stage, so any difference is a bug in the file
// format, the writer, the reader or the loading branch — no tolerance.
// The converted runs are also checked against the fixtures' expected logits
// (numpy reference, tests/reference) with fixtures.json's tolerances, so a
// path that is consistently wrong on both sides cannot pass.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "convert_test_util.h"
#include "corvid/convert/converted.h"
#include "corvid/convert/convert.h"
#include "corvid/convert/inspect.h"
#include "corvid/convert/xxhash64.h"
#include "corvid/io/checkpoint.h"
#include "corvid/io/npy.h"
#include "corvid/sdk/error.h"

using namespace convert_test;
namespace fs = std::filesystem;

namespace {

struct Case {
  const char* fixture;   // fixtures.json name
  const char* file;      // file in tests/fixtures/models
  const char* strategy;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.file << " / " << c.strategy; }

std::string case_name(const ::testing::TestParamInfo<Case>& i) {
  std::string s = std::string(i.param.file) + "__" + i.param.strategy;
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

class ConvertedMatchesUnconverted : public ::testing::TestWithParam<Case> {};

// Expected logits from the numpy reference for chunk_len 5, when the fixture has them.
void check_against_reference(const Case& c, const std::vector<float>& logits) {
  std::ifstream f(fixtures_dir() + "/fixtures.json");
  nlohmann::json j = nlohmann::json::parse(f);
  for (const auto& fx : j.at("fixtures")) {
    if (fx.at("name") != c.fixture) continue;
    if (!fx.contains("expected") || !fx.at("expected").contains(c.strategy)) return;  // e.g. split pipelines
    const auto& e = fx.at("expected").at(c.strategy);
    if (!e.at("logits").contains("chunk:5")) return;
    // fixtures.json: |actual - expected| <= atol + rtol * |expected| (tolerances per strategy there).
    const auto& tol = j.at("tolerances").at(c.strategy).at("logits");
    const double atol = tol.at("atol").get<double>(), rtol = tol.at("rtol").get<double>();
    corvid::NpyArray ref = corvid::read_npy(fixtures_dir() + "/" + e.at("logits").at("chunk:5").get<std::string>());
    ASSERT_EQ(ref.data.size(), logits.size());
    size_t bad = 0;
    for (size_t i = 0; i < logits.size(); ++i)
      if (!(std::fabs(double(ref.data[i]) - logits[i]) <= atol + rtol * std::fabs(double(ref.data[i])))) ++bad;
    EXPECT_EQ(bad, 0u) << "converted run vs numpy reference, " << c.file << " " << c.strategy;
  }
}

TEST_P(ConvertedMatchesUnconverted, LogitsAndStateBitIdentical) {
  const Case& c = GetParam();
  ScratchDir dir;
  const std::string src = fixture(c.file);
  const std::string out = dir.file("converted.safetensors");
  const auto tokens = fixture_tokens(c.fixture);
  ASSERT_FALSE(tokens.empty());

  corvid::ConvertResult r = corvid::convert_checkpoint(convert_options(src, out, c.strategy));
  EXPECT_EQ(r.plan.strategy, c.strategy);
  EXPECT_EQ(dir.listing(), std::vector<std::string>{"converted.safetensors"}) << "temporary files left behind";

  RunOutput raw = run_engine(engine_options(src, c.strategy), tokens);
  RunOutput conv = run_engine(engine_options(out, c.strategy), tokens);
  expect_same_bits(raw, conv);
  if (HasFatalFailure()) return;
  for (float v : conv.logits) ASSERT_TRUE(std::isfinite(v));
  check_against_reference(c, conv.logits);
}

const Case kCases[] = {
    {"rwkv4_small_bf16", "rwkv4_small_bf16.pth", "cpu fp32"},
    {"rwkv4_small_bf16", "rwkv4_small_bf16.pth", "cpu bf16"},
    {"rwkv4_small_bf16", "rwkv4_small_bf16.pth", "cpu fp32i8"},
    {"rwkv4_small_bf16", "rwkv4_small_bf16.pth", "cpu fp32i8 *1 -> cpu fp32"},
    {"rwkv4_small_bf16", "rwkv4_small_bf16.safetensors", "cpu fp32i8"},
    {"rwkv4_small_bf16", "rwkv4_small_bf16.safetensors", "cpu fp32i8 *1 -> cpu fp32"},
    {"rwkv4_tiny_fp32", "rwkv4_tiny_fp32.pth", "cpu fp32"},
    {"rwkv4_tiny_fp32", "rwkv4_tiny_fp32.pth", "cpu fp32i8"},
    {"rwkv4_small_fp16", "rwkv4_small_fp16.pth", "cpu fp32"},
    {"rwkv4_small_fp16", "rwkv4_small_fp16.pth", "cpu bf16"},
    {"rwkv4_deep_bf16", "rwkv4_deep_bf16.pth", "cpu fp32"},
    {"rwkv4_deep_bf16", "rwkv4_deep_bf16.pth", "cpu bf16"},
    {"rwkv4_deep_bf16", "rwkv4_deep_bf16.pth", "cpu fp32i8"},
    {"rwkv4_deep_bf16", "rwkv4_deep_bf16.pth", "cpu fp32i8 *1 -> cpu fp32"},
    {"rwkv4_deep_bf16", "rwkv4_deep_bf16.pth", "cpu bf16 *3 -> cpu fp32i8 *2 -> cpu fp32"},
};
INSTANTIATE_TEST_SUITE_P(Fixtures, ConvertedMatchesUnconverted, ::testing::ValuesIn(kCases), case_name);

// ---------------------------------------------------------------------------
// Strategy and setting mismatches

class ConvertedFile : public ::testing::Test {
 protected:
  void SetUp() override {
    out_ = dir_.file("m.safetensors");
    corvid::convert_checkpoint(convert_options(src_, out_, "cpu fp32i8 *2 -> cpu fp32"));
  }
  ScratchDir dir_;
  std::string src_ = fixture("rwkv4_deep_bf16.pth");
  std::string out_;
};

std::string load_error(const corvid::EngineOptions& o) {
  try {
    corvid::Engine::load(o);
  } catch (const corvid::Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST_F(ConvertedFile, OtherStrategyIsRefusedNamingBoth) {
  EXPECT_EQ(load_error(engine_options(out_, "cpu fp32")),
            out_ + " was converted for strategy \"cpu fp32i8 *2 -> cpu fp32\"; requested \"cpu fp32\" — re-convert or run "
                   "with --strategy \"cpu fp32i8 *2 -> cpu fp32\"");
  // Same stages, other split point.
  EXPECT_NE(load_error(engine_options(out_, "cpu fp32i8 *3 -> cpu fp32")).find("requested \"cpu fp32i8 *3 -> cpu fp32\""),
            std::string::npos);
  // Same split, other precision.
  EXPECT_NE(load_error(engine_options(out_, "cpu bf16 *2 -> cpu fp32")).find("was converted for strategy"), std::string::npos);
}

TEST_F(ConvertedFile, SameStrategyWrittenDifferentlyIsAccepted) {
  // Normalisation: spaces around "->" do not matter; the plan is what is compared.
  const auto tokens = fixture_tokens("rwkv4_deep_bf16");
  RunOutput a = run_engine(engine_options(out_, "cpu fp32i8 *2->cpu fp32"), tokens);
  RunOutput b = run_engine(engine_options(src_, "cpu fp32i8 *2 -> cpu fp32"), tokens);
  EXPECT_EQ(0, std::memcmp(a.logits.data(), b.logits.data(), a.logits.size() * sizeof(float)));
}

TEST_F(ConvertedFile, EmptyStrategyMeansTheStoredOne) {
  const auto tokens = fixture_tokens("rwkv4_deep_bf16");
  auto o = engine_options(out_, "");
  auto eng = corvid::Engine::load(o);
  EXPECT_EQ(eng->plan().strategy, "cpu fp32i8 *2 -> cpu fp32");
}

TEST_F(ConvertedFile, RescaleSettingMustMatch) {
  auto o = engine_options(out_, "cpu fp32i8 *2 -> cpu fp32");
  o.rescale_override = 2;
  std::string e = load_error(o);
  EXPECT_NE(e.find("converted with RESCALE_LAYER 0; this run uses 2"), std::string::npos) << e;
}

TEST(ConvertRescale, StoredRescaleLoadsWithTheSameSetting) {
  ScratchDir dir;
  const std::string src = fixture("rwkv4_deep_bf16.pth"), out = dir.file("r.safetensors");
  auto co = convert_options(src, out, "cpu fp32");
  co.rescale_override = 2;
  corvid::convert_checkpoint(co);
  const auto tokens = fixture_tokens("rwkv4_deep_bf16");
  auto raw_o = engine_options(src, "cpu fp32");
  raw_o.rescale_override = 2;
  auto conv_o = engine_options(out, "cpu fp32");
  conv_o.rescale_override = 2;
  RunOutput a = run_engine(raw_o, tokens), b = run_engine(conv_o, tokens);
  EXPECT_EQ(0, std::memcmp(a.logits.data(), b.logits.data(), a.logits.size() * sizeof(float)));
  EXPECT_NE(load_error(engine_options(out, "cpu fp32")).find("converted with RESCALE_LAYER 2; this run uses 0"), std::string::npos);
}

// ---------------------------------------------------------------------------
// Inputs that are refused

TEST(ConvertInput, ChatRwkvConvertedPthIsRefused) {
  // tests/convert/data/make_chatrwkv_converted.py: torch.save of the tiny
  // fixture's dict plus _strategy/_rescale_layer/_version, as convert_model.py writes.
  ScratchDir dir;
  const std::string in = std::string(CORVID_TEST_DATA_DIR) + "/convert/data/chatrwkv_converted_tiny.pth";
  try {
    corvid::convert_checkpoint(convert_options(in, dir.file("x.safetensors"), "cpu fp32"));
    FAIL() << "no error";
  } catch (const corvid::Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("ChatRWKV-converted"), std::string::npos) << m;
    EXPECT_NE(m.find("convert the original checkpoint"), std::string::npos) << m;
  }
  EXPECT_TRUE(dir.listing().empty());
}

TEST(ConvertInput, ConvertedFileIsNotConvertedAgain) {
  ScratchDir dir;
  corvid::convert_checkpoint(convert_options(fixture("rwkv4_tiny_fp32.pth"), dir.file("a.safetensors"), "cpu fp32"));
  try {
    corvid::convert_checkpoint(convert_options(dir.file("a.safetensors"), dir.file("b.safetensors"), "cpu fp32"));
    FAIL() << "no error";
  } catch (const corvid::Error& e) {
    EXPECT_NE(std::string(e.what()).find("already a Corvid-converted file"), std::string::npos) << e.what();
  }
  EXPECT_EQ(dir.listing(), std::vector<std::string>{"a.safetensors"});
}

TEST(ConvertInput, BadInputsLeaveNothing) {
  ScratchDir dir;
  const std::string out = dir.file("o.safetensors");
  EXPECT_THROW(corvid::convert_checkpoint(convert_options(dir.file("missing.pth"), out, "cpu fp32")), corvid::Error);
  EXPECT_THROW(corvid::convert_checkpoint(convert_options(fixture("rwkv4_tiny_fp32.pth"), out, "cpu fp32 *x")), corvid::Error);
  EXPECT_THROW(corvid::convert_checkpoint(convert_options(fixture("fixtures.json"), out, "cpu fp32")), corvid::Error);
  EXPECT_THROW(corvid::convert_checkpoint(convert_options(fixture("rwkv4_tiny_fp32.pth"), dir.file("no/such/dir/o"), "cpu fp32")),
               corvid::Error);
  EXPECT_TRUE(dir.listing().empty());
}

// ---------------------------------------------------------------------------
// Interrupted conversions leave nothing (and keep an older file intact)

TEST(ConvertInterrupted, StopSignalMidwayRemovesTheTemporaryFile) {
  ScratchDir dir;
  std::atomic<int> stop{0};
  auto o = convert_options(fixture("rwkv4_deep_bf16.pth"), dir.file("o.safetensors"), "cpu fp32i8");
  o.stop_signal = &stop;
  int calls = 0;
  std::string temp_seen;
  o.temp_file_changed = [&](const std::string& p) { if (!p.empty()) temp_seen = p; };
  o.progress = [&](uint64_t, uint64_t) {
    if (++calls == 5) stop = SIGINT;  // a few tensors in
    if (calls == 5) {
      EXPECT_TRUE(fs::exists(temp_seen)) << "the temporary file should exist while writing";
    }
  };
  try {
    corvid::convert_checkpoint(o);
    FAIL() << "no error";
  } catch (const corvid::Error& e) {
    EXPECT_NE(std::string(e.what()).find("interrupted by SIGINT"), std::string::npos) << e.what();
  }
  EXPECT_GE(calls, 5);
  EXPECT_FALSE(temp_seen.empty());
  EXPECT_TRUE(dir.listing().empty());
}

TEST(ConvertInterrupted, FailingWriteMidwayRemovesTheTemporaryFile) {
  // Stands for any error while streaming (disk full, a backend throwing).
  ScratchDir dir;
  auto o = convert_options(fixture("rwkv4_deep_bf16.pth"), dir.file("o.safetensors"), "cpu fp32 *3 -> cpu bf16");
  int calls = 0;
  o.progress = [&](uint64_t, uint64_t) {
    if (++calls == 20) throw corvid::Error("simulated: No space left on device");
  };
  try {
    corvid::convert_checkpoint(o);
    FAIL() << "no error";
  } catch (const corvid::Error& e) {
    EXPECT_NE(std::string(e.what()).find("No space left on device"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(dir.listing().empty());
}

TEST(ConvertInterrupted, OlderOutputSurvivesAFailedReconversion) {
  ScratchDir dir;
  const std::string out = dir.file("o.safetensors");
  corvid::convert_checkpoint(convert_options(fixture("rwkv4_tiny_fp32.pth"), out, "cpu fp32"));
  const std::string before = slurp(out);
  auto o = convert_options(fixture("rwkv4_deep_bf16.pth"), out, "cpu fp32");
  o.progress = [&](uint64_t, uint64_t) { throw corvid::Error("simulated failure"); };
  EXPECT_THROW(corvid::convert_checkpoint(o), corvid::Error);
  EXPECT_EQ(slurp(out), before);
  EXPECT_EQ(dir.listing(), std::vector<std::string>{"o.safetensors"});
}

// ---------------------------------------------------------------------------
// Damaged or edited converted files are refused with one clean error

class DamagedFile : public ConvertedFile {
 protected:
  // Replaces `from` (which must occur in the header) by `to` of the same length.
  void edit_header(const std::string& from, const std::string& to) {
    ASSERT_EQ(from.size(), to.size());
    std::string d = slurp(out_);
    uint64_t hl;
    std::memcpy(&hl, d.data(), 8);
    size_t pos = d.find(from, 8);
    ASSERT_NE(pos, std::string::npos) << from;
    ASSERT_LT(pos, 8 + hl) << "not in the header: " << from;
    d.replace(pos, from.size(), to);
    spit(out_, d);
  }
  std::string error() { return load_error(engine_options(out_, "cpu fp32i8 *2 -> cpu fp32")); }
};

TEST_F(DamagedFile, Truncated) {
  std::string d = slurp(out_);
  spit(out_, d.substr(0, d.size() * 6 / 10));
  std::string e = error();
  EXPECT_NE(e.find(out_), std::string::npos) << e;
  EXPECT_NE(e, "(no error)");
}

TEST_F(DamagedFile, TruncatedInsideTheHeader) {
  spit(out_, slurp(out_).substr(0, 100));
  std::string e = error();
  EXPECT_NE(e.find(out_), std::string::npos) << e;
}

TEST_F(DamagedFile, LayoutIdChanged) {
  auto ck = corvid::Checkpoint::open(out_);
  corvid::ConvertedInfo info = corvid::read_converted_info(*ck);
  ck.reset();
  std::string id = info.stages[0].layout_id;
  std::string edited = id;
  edited.back() = edited.back() == 'x' ? 'y' : 'x';
  edit_header("\\\"layout_id\\\":\\\"" + id + "\\\"", "\\\"layout_id\\\":\\\"" + edited + "\\\"");
  std::string e = error();
  EXPECT_NE(e.find("holds layout \"" + edited + "\""), std::string::npos) << e;
  EXPECT_NE(e.find("re-convert"), std::string::npos) << e;
}

TEST_F(DamagedFile, TensorsSwappedInTheHeader) {
  // Two tensors of the same dtype and shape swap names: a valid safetensors
  // file, wrong weights. The tensor-index fingerprint catches it.
  auto ck = corvid::Checkpoint::open(out_);
  std::string a, b;
  for (const auto& n : ck->names()) {
    for (const auto& m : ck->names()) {
      const auto *x = ck->find(n), *y = ck->find(m);
      if (n < m && n.size() == m.size() && x->dtype == y->dtype && x->ndim == y->ndim &&
          std::equal(x->shape, x->shape + x->ndim, y->shape) && a.empty()) {
        a = n;
        b = m;
      }
    }
  }
  ck.reset();
  ASSERT_FALSE(a.empty());
  std::string d = slurp(out_);
  const std::string qa = "\"" + a + "\"", qb = "\"" + b + "\"";
  size_t pa = d.find(qa), pb = d.find(qb);
  ASSERT_NE(pa, std::string::npos);
  ASSERT_NE(pb, std::string::npos);
  d.replace(pa, qa.size(), qb);
  d.replace(pb, qb.size(), qa);
  spit(out_, d);
  std::string e = error();
  EXPECT_NE(e.find("does not match its fingerprint"), std::string::npos) << e;
}

TEST_F(DamagedFile, FormatVersionFromTheFuture) {
  edit_header("\"corvid.format\":\"1\"", "\"corvid.format\":\"9\"");
  std::string e = error();
  EXPECT_NE(e.find("format version \"9\""), std::string::npos) << e;
}

TEST_F(DamagedFile, HeaderNotJson) {
  std::string d = slurp(out_);
  d[8] = 'x';
  spit(out_, d);
  std::string e = error();
  EXPECT_NE(e.find(out_), std::string::npos) << e;
}

TEST(ConvertInfo, CheckpointHparamsForBothKinds) {
  ScratchDir dir;
  const std::string src = fixture("rwkv4_deep_bf16.pth"), out = dir.file("c.safetensors");
  auto co = convert_options(src, out, "cpu fp32");
  co.rescale_override = 3;
  corvid::convert_checkpoint(co);
  auto raw = corvid::Checkpoint::open(src);
  auto conv = corvid::Checkpoint::open(out);
  corvid::ModelHParams a = corvid::checkpoint_hparams(*raw), b = corvid::checkpoint_hparams(*conv);
  EXPECT_EQ(a.n_layer, 7);
  EXPECT_EQ(b.n_layer, 7);
  EXPECT_EQ(a.n_embd, b.n_embd);
  EXPECT_EQ(a.n_ffn, b.n_ffn);
  EXPECT_EQ(a.n_vocab, b.n_vocab);
  EXPECT_EQ(a.arch, b.arch);
  EXPECT_EQ(a.rescale_layer, 0);
  EXPECT_EQ(b.rescale_layer, 3);
}

// ---------------------------------------------------------------------------
// Inspect

TEST(Inspect, RawAndConverted) {
  ScratchDir dir;
  const std::string src = fixture("rwkv4_small_bf16.pth"), out = dir.file("c.safetensors");
  std::string raw = corvid::inspect_checkpoint(src);
  EXPECT_NE(raw.find("raw weights"), std::string::npos) << raw;
  EXPECT_NE(raw.find("RWKV v4, 3 layers, n_embd 40"), std::string::npos) << raw;
  EXPECT_NE(raw.find("BF16"), std::string::npos) << raw;

  corvid::ConvertResult r = corvid::convert_checkpoint(convert_options(src, out, "cpu fp32i8 *1 -> cpu fp32"));
  std::string conv = corvid::inspect_checkpoint(out);
  EXPECT_NE(conv.find("Corvid-converted (format 1)"), std::string::npos) << conv;
  EXPECT_NE(conv.find("RWKV v4, 3 layers, n_embd 40"), std::string::npos) << conv;
  EXPECT_NE(conv.find("Stored strategy: \"cpu fp32i8 *1 -> cpu fp32\""), std::string::npos) << conv;
  EXPECT_NE(conv.find("U8"), std::string::npos) << conv;  // the int8 matrices
  const std::string hex = corvid::Xxh64::hex(corvid::xxh64_file(src));
  EXPECT_EQ(r.source_xxh64, hex);
  EXPECT_NE(conv.find("rwkv4_small_bf16.pth, " + std::to_string(fs::file_size(src)) + " bytes, xxh64 " + hex), std::string::npos) << conv;
  EXPECT_NE(conv.find("slots 0 "), std::string::npos) << conv;
  EXPECT_NE(conv.find("slots 1-3 (head)"), std::string::npos) << conv;
}

}  // namespace
