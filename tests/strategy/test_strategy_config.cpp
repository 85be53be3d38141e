// XML run configs: every validation error with its file:line, the values of a
// full config, and DSL/XML plan equality.
//
// Each file in data/bad/ starts with a comment stating what loading it must
// report:   <!-- expect [n_layer=L] LINE: part of the message -->
// Without n_layer the error comes from load_run_config; with it, the file
// loads and validate_config_against_model(cfg, L) reports it.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "corvid/sdk/error.h"
#include "corvid/strategy/config.h"
#include "corvid/strategy/plan.h"

using namespace corvid;
namespace fs = std::filesystem;

namespace {

const std::string kData = std::string(CORVID_TEST_DATA_DIR) + "/strategy/data";

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct NoRescaleEnv {
  std::optional<std::string> saved;
  NoRescaleEnv() {
    if (const char* v = std::getenv("RWKV_RESCALE_LAYER")) saved = v;
    unsetenv("RWKV_RESCALE_LAYER");
  }
  ~NoRescaleEnv() {
    if (saved) setenv("RWKV_RESCALE_LAYER", saved->c_str(), 1);
  }
};

// A temporary file removed at the end of the test.
struct TempFile {
  std::string path;
  explicit TempFile(const std::string& name, const std::string& text) {
    path = (fs::temp_directory_path() / ("corvid_strategy_test_" + std::to_string(::getpid()) + "_" + name)).string();
    std::ofstream(path, std::ios::binary) << text;
  }
  ~TempFile() { fs::remove(path); }
};

}  // namespace

TEST(ConfigErrors, EveryBadFileReportsItsLineAndReason) {
  NoRescaleEnv env;
  const std::regex expect_re(R"(<!-- expect (?:n_layer=(\d+) )?(\d+): (.*) -->)");
  int n_files = 0;
  for (const auto& entry : fs::directory_iterator(kData + "/bad")) {
    if (entry.path().extension() != ".xml") continue;
    ++n_files;
    const std::string path = entry.path().string();
    std::string text = read_all(path);
    std::string first_line = text.substr(0, text.find('\n'));
    std::smatch m;
    ASSERT_TRUE(std::regex_match(first_line, m, expect_re)) << path << ": no expect comment on line 1";
    const std::string want_prefix = path + ":" + m[2].str() + ": ";
    const std::string want_text = m[3].str();

    std::string e;
    if (m[1].matched) {
      RunConfig cfg;
      ASSERT_EQ(error_of([&] { cfg = load_run_config(path); }), "") << path << " should load";
      e = error_of([&] { validate_config_against_model(cfg, std::stoi(m[1].str())); });
    } else {
      e = error_of([&] { load_run_config(path); });
    }
    ASSERT_FALSE(e.empty()) << path << " was accepted";
    EXPECT_EQ(e.rfind(want_prefix, 0), 0u) << path << "\n  got:  " << e << "\n  want: " << want_prefix << "...";
    EXPECT_NE(e.find(want_text), std::string::npos) << path << "\n  got:  " << e << "\n  want: ..." << want_text;
    EXPECT_EQ(e.find('\n'), std::string::npos) << "one line: " << e;
  }
  EXPECT_GE(n_files, 50);
}

TEST(ConfigErrors, MissingAndEmptyFiles) {
  std::string e = error_of([] { load_run_config(kData + "/does_not_exist.xml"); });
  EXPECT_EQ(e, kData + "/does_not_exist.xml: cannot open the config file");
  TempFile empty("empty.xml", "");
  e = error_of([&] { load_run_config(empty.path); });
  EXPECT_EQ(e.rfind(empty.path + ":1: XML syntax error: empty document", 0), 0u) << e;
  TempFile garbage("garbage.xml", "\x01\x02 not xml at all");
  e = error_of([&] { load_run_config(garbage.path); });
  EXPECT_EQ(e.rfind(garbage.path + ":1: ", 0), 0u) << e;
  // A directory is not a config (the read fails, nothing crashes).
  e = error_of([&] { load_run_config(kData); });
  EXPECT_FALSE(e.empty());
}

TEST(ConfigErrors, TruncatedFilesNeverCrash) {
  // Every prefix of a valid config either loads or gives a file:line error.
  const std::string full = read_all(kData + "/good/full.xml");
  for (size_t n = 0; n < full.size(); n += 7) {
    TempFile f("prefix.xml", full.substr(0, n));
    std::string e = error_of([&] { load_run_config(f.path); });
    if (!e.empty()) {
      EXPECT_EQ(e.rfind(f.path + ":", 0), 0u) << e;
      EXPECT_TRUE(std::isdigit(static_cast<unsigned char>(e[f.path.size() + 1]))) << e;
    }
  }
}

TEST(ConfigValues, FullConfigIsReadWithPathsRelativeToTheFile) {
  const std::string path = kData + "/good/full.xml";
  RunConfig c = load_run_config(path);
  const fs::path dir = fs::path(path).parent_path();
  EXPECT_EQ(c.path, path);
  EXPECT_EQ(c.model, (dir / "../models/RWKV-4-Pile-169M.pth").lexically_normal().string());
  EXPECT_EQ(c.rescale_layer, 3);
  ASSERT_TRUE(c.strategy);
  ASSERT_EQ(c.strategy->stages.size(), 2u);
  EXPECT_EQ(c.strategy->stages[0].backend, "cuda_cublas");
  EXPECT_EQ(c.strategy->stages[0].count, 6);
  EXPECT_EQ(c.strategy->stages[0].line, 6);
  EXPECT_EQ(c.strategy->stages[0].where, path + ":6");
  EXPECT_EQ(c.strategy->stages[1].line, 7);
  EXPECT_EQ(c.strategy->normalized, "cuda fp16i8 *6 -> cpu fp32");
  EXPECT_EQ(c.tokenizer_kind, "hf_bpe");
  EXPECT_EQ(c.tokenizer_path, "/abs/20B_tokenizer.json");  // absolute stays
  EXPECT_EQ(c.template_name, "raven-chat");
  ASSERT_EQ(c.template_options.size(), 3u);
  EXPECT_EQ(c.template_options.at("user"), "Bob");
  EXPECT_EQ(c.template_options.at("bot"), "Alice");
  EXPECT_EQ(c.template_options.at("init_prompt"), (dir / "prompts/English-2.txt").lexically_normal().string());
  EXPECT_FLOAT_EQ(*c.sampling.temperature, 1.2f);
  EXPECT_FLOAT_EQ(*c.sampling.top_p, 0.5f);
  EXPECT_EQ(*c.sampling.top_k, 40);
  EXPECT_FLOAT_EQ(*c.sampling.presence, 0.4f);
  EXPECT_FLOAT_EQ(*c.sampling.frequency, 0.4f);
  EXPECT_FLOAT_EQ(*c.sampling.penalty_decay, 0.996f);
  EXPECT_EQ(*c.sampling.seed, 18446744073709551615ull);
  ASSERT_EQ(c.plugin_dirs.size(), 2u);
  EXPECT_EQ(c.plugin_dirs[0], (dir / "plugins").lexically_normal().string());
  EXPECT_EQ(c.plugin_dirs[1], "/opt/corvid/plugins");
  EXPECT_EQ(c.threads, 4);
  EXPECT_EQ(c.chunk_len, 128);

  // The explicit rescale_layer wins over the fp16 rule.
  NoRescaleEnv env;
  Plan p = assign_slots(*c.strategy, 12, c.rescale_layer);
  EXPECT_EQ(p.rescale_layer, 3);
}

TEST(ConfigValues, MinimalConfigLeavesEverythingUnset) {
  RunConfig c = load_run_config(kData + "/good/minimal.xml");
  EXPECT_EQ(c.model, "");
  EXPECT_FALSE(c.strategy);
  EXPECT_EQ(c.rescale_layer, -1);
  EXPECT_FALSE(c.sampling.temperature);
  EXPECT_FALSE(c.sampling.seed);
  EXPECT_TRUE(c.plugin_dirs.empty());
  EXPECT_EQ(c.threads, 0);
  EXPECT_EQ(c.chunk_len, 0);
  EXPECT_NO_THROW(validate_config_against_model(c, 24));
}

TEST(ConfigValues, ConfigInTheCurrentFolderKeepsRelativePaths) {
  TempFile f("cwd.xml", "<corvid><model path=\"m.pth\"/></corvid>");
  const fs::path old = fs::current_path();
  fs::current_path(fs::path(f.path).parent_path());
  RunConfig c = load_run_config(fs::path(f.path).filename().string());
  fs::current_path(old);
  EXPECT_EQ(c.model, "m.pth");
}

// ---------------------------------------------------------------------------
// A DSL string and its XML equivalent give the identical Plan.

struct Equivalent {
  const char* file;
  const char* dsl;
  int n_layer;
};

TEST(ConfigPlan, XmlAndDslGiveIdenticalPlans) {
  NoRescaleEnv env;
  const Equivalent pairs[] = {
      {"eq_cuda_fp16_20_cpu.xml", "cuda fp16 *20 -> cpu fp32", 24},
      {"eq_cuda_fp16_20_cpu.xml", "cuda fp16 *20 -> cpu fp32", 32},
      {"eq_ranges_cuda_fp16_20_cpu.xml", "cuda fp16 *20 -> cpu fp32 *5", 24},
      {"eq_stream.xml", "cpu fp32 *3 -> cuda fp16 *6+", 24},
      {"eq_stream.xml", "cpu fp32 *3 -> cuda fp16 *6+", 12},
      {"eq_ranges_stream.xml", "cpu fp32 *3 -> cuda fp16 *6+", 24},
      {"eq_stream_all.xml", "cuda fp16i8 *0+ -> cpu fp32 *1", 24},
      {"eq_ranges_three.xml", "cpu fp32 *2 -> cuda bf16i8 *3+ -> cpu fp32 *2", 24},
      {"eq_strategy_attr.xml", "cuda:0 fp16 *10 -> cuda:1 fp16 *8 -> cpu fp32", 24},
  };
  for (const auto& eq : pairs) {
    RunConfig c = load_run_config(kData + "/good/" + eq.file);
    ASSERT_TRUE(c.strategy) << eq.file;
    Plan from_xml = assign_slots(*c.strategy, eq.n_layer, c.rescale_layer);
    Plan from_dsl = assign_slots(parse_strategy(eq.dsl), eq.n_layer);
    EXPECT_EQ(from_xml.strategy, eq.dsl) << eq.file;
    EXPECT_TRUE(from_xml == from_dsl) << eq.file << " L=" << eq.n_layer << "\nxml: " << plan_to_json(from_xml)
                                      << " \"" << from_xml.strategy << "\"\ndsl: " << plan_to_json(from_dsl) << " \""
                                      << from_dsl.strategy << "\"";
  }
}

TEST(ConfigPlan, EqualityIsNotTrivial) {
  // The plans compared above do differ when the strategies differ.
  NoRescaleEnv env;
  RunConfig c = load_run_config(kData + "/good/eq_cuda_fp16_20_cpu.xml");
  Plan a = assign_slots(*c.strategy, 24);
  EXPECT_FALSE(a == assign_slots(parse_strategy("cuda fp16 *19 -> cpu fp32"), 24));
  EXPECT_FALSE(a == assign_slots(parse_strategy("cuda fp16 *20 -> cpu bf16"), 24));
  EXPECT_FALSE(a == assign_slots(parse_strategy("cuda:1 fp16 *20 -> cpu fp32"), 24));
  EXPECT_FALSE(a == assign_slots(parse_strategy("cuda fp16 *20 -> cpu fp32"), 24, 0));
}

TEST(ConfigPlan, RangesResolveHeadAgainstTheModel) {
  NoRescaleEnv env;
  RunConfig c = load_run_config(kData + "/good/eq_ranges_cuda_fp16_20_cpu.xml");
  Plan p = assign_slots(*c.strategy, 30);  // "20-head" = 20-30
  EXPECT_EQ(p.stages[1].first_slot, 20);
  EXPECT_EQ(p.stages[1].last_slot, 30);
  EXPECT_EQ(p.strategy, "cuda fp16 *20 -> cpu fp32 *11");
  std::string e = error_of([&] { validate_config_against_model(c, 19); });
  EXPECT_EQ(e.rfind(kData + "/good/eq_ranges_cuda_fp16_20_cpu.xml:5: slot 20 is past the last slot 19", 0), 0u) << e;
}

// ---------------------------------------------------------------------------
// configs/: one file per seed strategy, each equal to its DSL string.

TEST(ShippedConfigs, EachSeedConfigMatchesItsStrategy) {
  NoRescaleEnv env;
  const std::pair<const char*, const char*> seeds[] = {
      {"cpu-fp32.xml", "cpu fp32"},
      {"cpu-fp32i8.xml", "cpu fp32i8"},
      {"cpu-bf16.xml", "cpu bf16"},
      {"cuda-fp16.xml", "cuda fp16"},
      {"cuda-fp16i8.xml", "cuda fp16i8"},
      {"cuda-fp16-20-cpu-fp32.xml", "cuda fp16 *20 -> cpu fp32"},
      {"cuda-fp16i8-20-cuda-fp16.xml", "cuda fp16i8 *20 -> cuda fp16"},
  };
  for (const auto& [file, dsl] : seeds) {
    const std::string path = std::string(CORVID_CONFIGS_DIR) + "/" + file;
    RunConfig c;
    ASSERT_EQ(error_of([&] { c = load_run_config(path); }), "") << path;
    ASSERT_TRUE(c.strategy) << path;
    for (int L : {24, 32, 40}) {
      Plan from_xml = assign_slots(*c.strategy, L, c.rescale_layer);
      Plan from_dsl = assign_slots(parse_strategy(dsl), L);
      EXPECT_TRUE(from_xml == from_dsl) << file << " L=" << L << ": " << from_xml.strategy;
    }
  }
}

TEST(ShippedConfigs, EveryConfigFileLoads) {
  int n = 0;
  for (const auto& entry : fs::directory_iterator(CORVID_CONFIGS_DIR)) {
    if (entry.path().extension() != ".xml") continue;
    ++n;
    EXPECT_EQ(error_of([&] { load_run_config(entry.path().string()); }), "") << entry.path();
  }
  EXPECT_GE(n, 8);
}
