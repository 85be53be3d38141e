// resolve_backends with the real registry and two fake plugins built for these
// tests (fake_backend.cpp): test_fake_backend serves mps fp16, mps fp32i8 and
// dml fp32; test_twin_backend serves mps fp16 too. No real plugin serves mps or
// dml, so the answers do not depend on which real plugins are built.
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "corvid/plugins/registry.h"
#include "corvid/sdk/error.h"
#include "corvid/sdk/model.h"
#include "corvid/strategy/config.h"
#include "corvid/strategy/plan.h"

using namespace corvid;

namespace {

const std::string kFakeDir = std::string(STRATEGY_TEST_PLUGIN_DIR) + "/fake";
const std::string kTwinDir = std::string(STRATEGY_TEST_PLUGIN_DIR) + "/twin";
const std::string kData = std::string(CORVID_TEST_DATA_DIR) + "/strategy/data/resolve";

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

ModelHParams hparams(int n_layer) {
  ModelHParams hp;
  hp.n_layer = n_layer;
  hp.n_embd = hp.n_att = 768;
  hp.n_ffn = 3072;
  hp.n_vocab = 50277;
  return hp;
}

// The fake backend's estimate encodes the StageSpec it receives.
uint64_t encoded(int first_block, int end_block, bool has_head, int stream_first) {
  return uint64_t(first_block) * 1000000000ull + uint64_t(end_block) * 1000000ull + (has_head ? 1000ull : 0ull) +
         uint64_t(stream_first + 1);
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

}  // namespace

TEST(Resolve, ChoosesThePluginFromTheManifestsAndAsksItsEstimate) {
  NoRescaleEnv env;
  PluginRegistry reg({kFakeDir});
  StrategySpec spec = parse_strategy("mps fp16 *10 -> mps fp32i8");
  Plan plan = assign_slots(spec, 24);
  resolve_backends(plan, spec, reg, hparams(24));
  ASSERT_EQ(plan.stages.size(), 2u);
  EXPECT_EQ(plan.stages[0].backend, "test_fake_backend");
  EXPECT_EQ(plan.stages[1].backend, "test_fake_backend");
  // Blocks [0, 10) without the head; blocks [10, 24) plus the head (slot 24).
  EXPECT_EQ(plan.stages[0].weight_bytes, encoded(0, 10, false, -1));
  EXPECT_EQ(plan.stages[1].weight_bytes, encoded(10, 24, true, -1));

  auto j = nlohmann::json::parse(plan_to_json(plan));
  EXPECT_EQ(j["stages"][0]["backend"], "test_fake_backend");
  EXPECT_EQ(j["stages"][1]["weight_bytes"].get<uint64_t>(), encoded(10, 24, true, -1));
  EXPECT_NE(plan_to_text(plan).find("test_fake_backend"), std::string::npos);
}

TEST(Resolve, StreamedStagesAndAHeadOnlyStageMapToStageSpecs) {
  NoRescaleEnv env;
  PluginRegistry reg({kFakeDir});
  StrategySpec spec = parse_strategy("mps fp16 *3 -> mps fp32i8 *2+ -> dml fp32 *1");
  Plan plan = assign_slots(spec, 24);
  resolve_backends(plan, spec, reg, hparams(24));
  // 3 + 2 + 1 allocated, 19 streamed by stage 2: slots 3-23, streamed from 5.
  EXPECT_EQ(plan.stages[0].weight_bytes, encoded(0, 3, false, -1));
  EXPECT_EQ(plan.stages[1].weight_bytes, encoded(3, 24, false, 5));
  EXPECT_EQ(plan.stages[2].weight_bytes, encoded(24, 24, true, -1));  // only the head
}

TEST(Resolve, NoPluginServesTheDeviceNamesTheStage) {
  NoRescaleEnv env;
  PluginRegistry reg({kFakeDir});
  StrategySpec spec = parse_strategy("mps fp16 *2 -> dml fp16");
  Plan plan = assign_slots(spec, 6);
  std::string e = error_of([&] { resolve_backends(plan, spec, reg, hparams(6)); });
  EXPECT_EQ(e.rfind("strategy \"mps fp16 *2 -> dml fp16\": stage 2 \"dml fp16\" at column 16: no plugin serves device "
                    "'dml' with dtype 'fp16'",
                    0),
            0u)
      << e;
}

TEST(Resolve, WithoutTheFakePluginNothingServesMps) {
  NoRescaleEnv env;
  PluginRegistry reg(std::vector<std::string>{});  // default search path only
  StrategySpec spec = parse_strategy("mps fp16");
  Plan plan = assign_slots(spec, 6);
  std::string e = error_of([&] { resolve_backends(plan, spec, reg, hparams(6)); });
  EXPECT_NE(e.find("stage 1 \"mps fp16\" at column 1: no plugin serves device 'mps'"), std::string::npos) << e;
}

TEST(Resolve, TwoPluginsForOnePairNeedAChoice) {
  NoRescaleEnv env;
  PluginRegistry reg({kFakeDir, kTwinDir});
  const std::string amb = kData + "/ambiguous.xml";
  RunConfig c = load_run_config(amb);
  Plan plan = assign_slots(*c.strategy, 12);
  std::string e = error_of([&] { resolve_backends(plan, *c.strategy, reg, hparams(12)); });
  EXPECT_EQ(e.rfind(amb + ":4: several plugins serve mps fp16", 0), 0u) << e;
  EXPECT_NE(e.find("test_fake_backend"), std::string::npos) << e;
  EXPECT_NE(e.find("test_twin_backend"), std::string::npos) << e;

  // backend="..." picks one.
  RunConfig x = load_run_config(kData + "/explicit_backend.xml");
  Plan p = assign_slots(*x.strategy, 12);
  resolve_backends(p, *x.strategy, reg, hparams(12));
  EXPECT_EQ(p.stages[0].backend, "test_twin_backend");
  EXPECT_EQ(p.stages[1].backend, "test_fake_backend");
}

TEST(Resolve, UnknownPluginAndUnservedDtypeGiveFileAndLine) {
  NoRescaleEnv env;
  PluginRegistry reg({kFakeDir});
  const std::string unk = kData + "/unknown_backend.xml";
  RunConfig c = load_run_config(unk);
  Plan plan = assign_slots(*c.strategy, 12);
  std::string e = error_of([&] { resolve_backends(plan, *c.strategy, reg, hparams(12)); });
  EXPECT_EQ(e.rfind(unk + ":4: unknown plugin 'no_such_plugin'", 0), 0u) << e;

  const std::string ns = kData + "/dtype_not_served.xml";
  RunConfig d = load_run_config(ns);
  Plan q = assign_slots(*d.strategy, 12);
  e = error_of([&] { resolve_backends(q, *d.strategy, reg, hparams(12)); });
  EXPECT_EQ(e.rfind(ns + ":4: plugin 'test_fake_backend' does not serve mps bf16", 0), 0u) << e;
}

TEST(Resolve, APlanFromAnotherSpecIsRefused) {
  NoRescaleEnv env;
  PluginRegistry reg({kFakeDir});
  Plan plan = assign_slots(parse_strategy("mps fp16 *2 -> mps fp16"), 6);
  std::string e = error_of([&] { resolve_backends(plan, parse_strategy("mps fp16"), reg, hparams(6)); });
  EXPECT_NE(e.find("plan made from another strategy"), std::string::npos) << e;
}

TEST(ConfigPlugins, TokenizerKindAndTemplateNameMustBeServed) {
  const std::string tmpl_dir = std::string(STRATEGY_TEST_PLUGIN_DIR) + "/template";
  PluginRegistry reg({kFakeDir, tmpl_dir});
  const std::string ok = kData + "/template_ok.xml";
  RunConfig c = load_run_config(ok);
  EXPECT_EQ(c.template_line, 3);
  EXPECT_NO_THROW(validate_config_plugins(c, reg));

  const std::string bad = kData + "/template_unknown.xml";
  RunConfig d = load_run_config(bad);
  std::string e = error_of([&] { validate_config_plugins(d, reg); });
  EXPECT_EQ(e.rfind(bad + ":4: no prompt template plugin answers to name 'no-such-chat'", 0), 0u) << e;
  EXPECT_NE(e.find("fake-chat"), std::string::npos) << e;  // lists what exists

  const std::string tok = kData + "/tokenizer_unknown.xml";
  RunConfig t = load_run_config(tok);
  e = error_of([&] { validate_config_plugins(t, reg); });
  EXPECT_EQ(e.rfind(tok + ":2: no tokenizer plugin answers to kind 'no_such_kind'", 0), 0u) << e;
}
