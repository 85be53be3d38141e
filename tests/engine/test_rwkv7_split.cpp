// RWKV-7 v_first hand-off across stages (rwkv-reference §4.5, backend.h
// ForwardOptions::v_first): the stage holding block 0 writes block 0's v per
// row and later stages read it, so a split pipeline gives the reference's
// single-pass logits. `cpu fp32 *1 -> cpu fp32` must match the fp32 reference
// within its tolerance (1e-4); `cpu fp32 *1 -> cpu bf16` must lie between:
// within bf16 tolerance of the bf16 reference's distance to fp32. Without the
// hand-off, blocks > 0 would mix v with zeros and miss by whole units.
#include <gtest/gtest.h>

#include <cstdio>

#include "common/fixture_run.h"
#include "corvid/io/npy.h"
#include "corvid/runtime/engine.h"

using namespace corvid;
using namespace corvid_test;

TEST(Rwkv7Split, SplitPipelineMatchesSinglePass) {
  int runs = 0;
  for (const Fixture& fx : load_fixtures(std::string(CORVID_TEST_DATA_DIR) + "/fixtures/models_v5plus")) {
    if (fx.name.rfind("rwkv7", 0) != 0) continue;
    const ExpectedRun& ex = fx.expected.at("cpu fp32");
    NpyArray f32 = read_npy(ex.logits.at("step"));
    NpyArray b16 = read_npy(fx.expected.at("cpu bf16").logits.at("step"));
    const double bf16_cost = max_abs_diff(b16.data.data(), f32.data.data(), f32.data.size());
    for (const char* strategy : {"cpu fp32 *1 -> cpu fp32", "cpu fp32 *1 -> cpu bf16"}) {
      for (const char* mode : {"step", "chunk:5"}) {
        SCOPED_TRACE(fx.name + " / " + strategy + " / " + mode);
        EngineOptions o = engine_default_options();
        o.model_path = fx.files[0];
        o.strategy = strategy;
        o.threads = 1;
        o.chunk_len = mode_chunk_len(mode);
        auto eng = Engine::load(o);
        ASSERT_EQ(eng->plan().stages.size(), 2u);
        State st = eng->new_state();
        std::vector<float> got = run_fixture_mode(*eng, fx, mode, st);
        ASSERT_EQ(got.size(), f32.data.size());
        const double d = max_abs_diff(got.data(), f32.data.data(), got.size());
        std::printf("[v7 split] %-18s %-26s %-8s max|d| to fp32 ref %.3g (bf16 ref: %.3g)\n", fx.name.c_str(),
                    strategy, mode, d, bf16_cost);
        if (std::string(strategy).find("bf16") == std::string::npos) {
          size_t at = 0;
          EXPECT_LE(tolerance_ratio(got.data(), f32.data.data(), got.size(), ex.logits_atol, ex.logits_rtol, &at), 1.0)
              << "logit " << at;
        } else {
          EXPECT_LE(d, 2 * bf16_cost + 0.02);
        }
        ++runs;
      }
    }
  }
  EXPECT_GE(runs, 4);
}
