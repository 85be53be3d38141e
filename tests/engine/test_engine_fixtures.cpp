// The whole pipeline (checkpoint reader -> load transforms -> plugin registry ->
// cpu_onednn stages -> head) against the independent numpy reference, on the
// torch.save fixtures: every fixture, every CPU strategy, step and chunked
// modes, final state; plus split pipelines against unsplit ones.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "common/fixture_run.h"
#include "corvid/io/npy.h"
#include "corvid/runtime/engine.h"

using namespace corvid;
using namespace corvid_test;

namespace {

std::unique_ptr<Engine> load(const std::string& file, const std::string& strategy, int chunk) {
  EngineOptions o = engine_default_options();
  o.model_path = file;
  o.strategy = strategy;
  o.chunk_len = chunk;
  o.threads = 1;
  return Engine::load(o);
}

const char* kCpuStrategies[] = {"cpu fp32", "cpu fp32i8", "cpu bf16"};

}  // namespace

class EngineFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(EngineFixture, LogitsAndStateMatchReferenceInEveryMode) {
  for (const Fixture& fx : load_fixtures()) {
    auto it = fx.expected.find(GetParam());
    if (it == fx.expected.end()) continue;
    const ExpectedRun& ex = it->second;
    for (const std::string& file : fx.files) {
      SCOPED_TRACE(file + " / " + GetParam());
      const size_t T = fx.tokens.size();
      for (const auto& [mode, npy] : ex.logits) {
        SCOPED_TRACE(mode);
        NpyArray want = read_npy(npy);
        ASSERT_EQ(want.data.size(), T * size_t(fx.V));
        auto eng = load(file, GetParam(), mode_chunk_len(mode));
        ASSERT_EQ(eng->hparams().n_vocab, fx.V);
        ASSERT_EQ(eng->plan().rescale_layer, ex.rescale_layer);
        State st = eng->new_state();
        std::vector<float> got = run_fixture_mode(*eng, fx, mode, st);
        size_t at = 0;
        double r = tolerance_ratio(got.data(), want.data.data(), got.size(), ex.logits_atol, ex.logits_rtol, &at);
        EXPECT_LE(r, 1.0) << "logit " << at << ": got " << got[at] << ", want " << want.data[at]
                          << " (max |dlogit| " << max_abs_diff(got.data(), want.data.data(), got.size()) << ")";
        NpyArray sw = read_npy(ex.state_final);
        std::vector<float> s = st.serialize();
        ASSERT_EQ(s.size(), sw.data.size());
        r = tolerance_ratio(s.data(), sw.data.data(), s.size(), ex.state_atol, ex.state_rtol, &at);
        EXPECT_LE(r, 1.0) << "state value " << at << ": got " << s[at] << ", want " << sw.data[at];
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cpu, EngineFixture, ::testing::ValuesIn(std::vector<std::string>(std::begin(kCpuStrategies), std::end(kCpuStrategies))),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s) if (c == ' ') c = '_';
                           return s;
                         });

// Sequence mode carries exactly the state stepping does (up to rounding of the
// GEMM vs GEMV summation order): compare the two states directly.
TEST(Engine, ChunkedStateEqualsSteppedState) {
  for (const Fixture& fx : load_fixtures()) {
    for (const char* strat : {"cpu fp32", "cpu fp32i8"}) {
      SCOPED_TRACE(fx.name + std::string(" ") + strat);
      auto a = load(fx.files[0], strat, 1);
      auto b = load(fx.files[0], strat, 7);
      State sa = a->new_state(), sb = b->new_state();
      std::vector<float> la(fx.V), lb(fx.V);
      a->forward_stepwise(fx.tokens, sa, nullptr);
      b->forward(fx.tokens, sb, nullptr);
      std::vector<float> xa = sa.serialize(), xb = sb.serialize();
      ASSERT_EQ(xa.size(), xb.size());
      for (size_t i = 0; i < xa.size(); ++i)
        ASSERT_NEAR(xa[i], xb[i], 1e-5 * std::max(1.0f, std::abs(xa[i]))) << "state value " << i;
    }
  }
}

// A split pipeline runs the same kernels on the same weights: bit-identical
// logits to the unsplit strategy, in sequence and step modes.
TEST(Engine, SplitCpuPipelinesReproduceUnsplitLogits) {
  const std::pair<const char*, const char*> cases[] = {
      {"cpu fp32", "cpu fp32 *1 -> cpu fp32"},
      {"cpu fp32", "cpu fp32 *1 -> cpu fp32 *1 -> cpu fp32"},
      {"cpu fp32i8", "cpu fp32i8 *1 -> cpu fp32i8"},
      {"cpu bf16", "cpu bf16 *2 -> cpu bf16"},
  };
  for (const Fixture& fx : load_fixtures()) {
    for (auto [whole, split] : cases) {
      SCOPED_TRACE(fx.name + ": " + split);
      for (int chunk : {1, 5}) {
        auto a = load(fx.files[0], whole, chunk);
        auto b = load(fx.files[0], split, chunk);
        ASSERT_GE(b->plan().stages.size(), 2u);
        State sa = a->new_state(), sb = b->new_state();
        std::vector<float> la(fx.tokens.size() * fx.V), lb(la.size());
        a->forward_all(fx.tokens, sa, la.data());
        b->forward_all(fx.tokens, sb, lb.data());
        ASSERT_EQ(0, std::memcmp(la.data(), lb.data(), la.size() * sizeof(float))) << "chunk " << chunk;
        EXPECT_EQ(sa.serialize(), sb.serialize());
      }
    }
  }
}

// Copying a State is a deep copy: a snapshot replays to identical logits.
TEST(Engine, SnapshotsAreDeepCopies) {
  const Fixture fx = load_fixtures().front();
  auto eng = load(fx.files[0], "cpu fp32", 4);
  State st = eng->new_state();
  std::vector<float> l1(fx.V), l2(fx.V);
  eng->forward(std::span<const int32_t>(fx.tokens.data(), 5), st, nullptr);
  State snap = st;  // copy
  eng->forward(std::span<const int32_t>(fx.tokens.data() + 5, 3), st, l1.data());
  State again = snap;
  eng->forward(std::span<const int32_t>(fx.tokens.data() + 5, 3), again, l2.data());
  EXPECT_EQ(l1, l2);
  EXPECT_EQ(st.serialize(), again.serialize());
  st.reset();
  EXPECT_EQ(st.serialize(), eng->new_state().serialize());
}

TEST(Engine, OutOfRangeTokenIsAnError) {
  const Fixture fx = load_fixtures().front();
  auto eng = load(fx.files[0], "cpu fp32", 4);
  State st = eng->new_state();
  std::vector<int32_t> bad = {1, fx.V};
  EXPECT_THROW(eng->forward(bad, st, nullptr), Error);
}
