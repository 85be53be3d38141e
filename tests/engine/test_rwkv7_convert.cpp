// corvid-convert for RWKV-7: a converted file (the prepared cpu_onednn layout
// plus the folded embedding) gives logits and a final state bit-identical
// (memcmp) to the raw checkpoint with the same strategy, for fp32, bf16 and
// int8 stages and both v7 fixtures (a bf16 and an fp16 file, so the model-dtype
// fold of §2.8 is exercised both ways). The converted run is also checked
// against the numpy reference with the manifest's tolerance.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <unistd.h>

#include "common/fixture_run.h"
#include "corvid/convert/convert.h"
#include "corvid/io/npy.h"
#include "corvid/runtime/engine.h"

using namespace corvid;
using namespace corvid_test;
namespace fs = std::filesystem;

TEST(Rwkv7Convert, ConvertedMatchesUnconvertedAndReference) {
  const fs::path dir = fs::temp_directory_path() / ("corvid_v7convert_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  int runs = 0;
  for (const Fixture& fx : load_fixtures(std::string(CORVID_TEST_DATA_DIR) + "/fixtures/models_v5plus")) {
    if (fx.name.rfind("rwkv7", 0) != 0) continue;
    for (const char* strategy : {"cpu fp32", "cpu bf16", "cpu fp32i8"}) {
      SCOPED_TRACE(fx.name + " / " + strategy);
      const std::string out = (dir / (fx.name + std::to_string(runs) + ".safetensors")).string();
      ConvertOptions co;
      co.in_path = fx.files[0];
      co.out_path = out;
      co.strategy = strategy;
      co.plugin_dirs = {CORVID_PLUGIN_DIR};
      convert_checkpoint(co);
      std::vector<float> logits[2], state[2];
      int i = 0;
      for (const std::string& model : {fx.files[0], out}) {
        EngineOptions o = engine_default_options();
        o.model_path = model;
        o.strategy = strategy;
        o.plugin_dirs = {CORVID_PLUGIN_DIR};
        o.threads = 1;
        o.chunk_len = 5;
        auto eng = Engine::load(o);
        State st = eng->new_state();
        logits[i] = run_fixture_mode(*eng, fx, "chunk:5", st);
        state[i] = st.serialize();
        ++i;
      }
      ASSERT_EQ(logits[0].size(), logits[1].size());
      EXPECT_EQ(0, std::memcmp(logits[0].data(), logits[1].data(), logits[0].size() * sizeof(float)));
      ASSERT_EQ(state[0].size(), state[1].size());
      EXPECT_EQ(0, std::memcmp(state[0].data(), state[1].data(), state[0].size() * sizeof(float)));
      const ExpectedRun& ex = fx.expected.at(strategy);
      NpyArray want = read_npy(ex.logits.at("chunk:5"));
      size_t at = 0;
      EXPECT_LE(tolerance_ratio(logits[1].data(), want.data.data(), want.data.size(), ex.logits_atol, ex.logits_rtol, &at),
                1.0)
          << "converted run vs reference, logit " << at;
      fs::remove(out);
      ++runs;
    }
  }
  fs::remove_all(dir);
  EXPECT_GE(runs, 6);
}
