// The whole pipeline with the CUDA plugins (checkpoint -> load transforms ->
// registry -> cuda stages) on the torch.save fixtures, against the independent
// numpy reference's fp16 / fp16i8 emulation (tests/reference/rwkv_ref.py), with
// the tolerances recorded in fixtures.json ("cuda fp16": atol + rtol*|want|; see
// tests/reference/README.md, docs/performance.md (CUDA) and test_cuda_device.cpp).
// Also: the same argmax as the reference on every row, step == chunk, split and
// mixed CUDA/CPU pipelines, and *N+ streaming. Skips without a CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "common/fixture_run.h"
#include "corvid/io/npy.h"
#include "corvid/runtime/engine.h"
#include "cuda_util.h"

using namespace corvid;
using namespace corvid_test;

namespace {

#define REQUIRE_CUDA()                                   \
  do {                                                   \
    try {                                                \
      cuda::check_cuda_device(0);                        \
    } catch (const std::exception& e) {                  \
      GTEST_SKIP() << e.what();                          \
    }                                                    \
  } while (0)

std::unique_ptr<Engine> load(const std::string& file, const std::string& strategy, int chunk) {
  EngineOptions o = engine_default_options();
  o.model_path = file;
  o.strategy = strategy;
  o.chunk_len = chunk;
  o.threads = 1;
  return Engine::load(o);
}

size_t argmax(const float* p, size_t n) {
  size_t a = 0;
  for (size_t i = 1; i < n; ++i)
    if (p[i] > p[a]) a = i;
  return a;
}

// Rows whose top-2 reference logits are closer than `margin` can legitimately
// swap under fp16 rounding; the others must agree.
int argmax_disagreements(const std::vector<float>& got, const std::vector<float>& want, size_t V, double margin) {
  int bad = 0;
  for (size_t r = 0; r * V < want.size(); ++r) {
    const float* w = want.data() + r * V;
    const size_t a = argmax(w, V);
    float second = -INFINITY;
    for (size_t i = 0; i < V; ++i)
      if (i != a) second = std::max(second, w[i]);
    if (w[a] - second < margin) continue;
    bad += argmax(got.data() + r * V, V) != a;
  }
  return bad;
}

}  // namespace

class CudaFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaFixture, LogitsAndStateMatchReferenceInEveryMode) {
  REQUIRE_CUDA();
  int checked = 0;
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
        ASSERT_EQ(eng->plan().rescale_layer, ex.rescale_layer);
        State st = eng->new_state();
        std::vector<float> got = run_fixture_mode(*eng, fx, mode, st);
        // |got - want| <= atol + rtol*|want| (fixtures.json "tolerances"): ratio <= 1 passes.
        const double d = max_abs_diff(got.data(), want.data.data(), got.size());
        const double ratio = tolerance_ratio(got.data(), want.data.data(), got.size(), ex.logits_atol, ex.logits_rtol);
        EXPECT_LE(ratio, 1.0) << "logits, max |dlogit| " << d;
        EXPECT_EQ(argmax_disagreements(got, want.data, size_t(fx.V), 0.05), 0);
        NpyArray sw = read_npy(ex.state_final);
        std::vector<float> s = st.serialize();
        ASSERT_EQ(s.size(), sw.data.size());
        const double sratio = tolerance_ratio(s.data(), sw.data.data(), s.size(), ex.state_atol, ex.state_rtol);
        EXPECT_LE(sratio, 1.0) << "state";
        std::printf("[ measured ] %s %s %s: max |dlogit| %.4g (%.2f of tolerance), state %.2f of tolerance\n",
                    fx.name.c_str(), GetParam().c_str(), mode.c_str(), d, ratio, sratio);
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 0) << "fixtures.json has no expectations for " << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Cuda, CudaFixture, ::testing::Values(std::string("cuda fp16"), std::string("cuda fp16i8")),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s) if (c == ' ') c = '_';
                           return s;
                         });

// Splitting a CUDA pipeline, or streaming its blocks, runs the same kernels on
// the same weights: bit-identical logits.
TEST(CudaEngine, SplitAndStreamedPipelinesReproduceUnsplitLogits) {
  REQUIRE_CUDA();
  const std::pair<const char*, const char*> cases[] = {
      {"cuda fp16", "cuda fp16 *1 -> cuda fp16"},
      {"cuda fp16i8", "cuda fp16i8 *1 -> cuda fp16i8"},
      {"cuda fp16", "cuda fp16 *1+"},
      {"cuda fp16i8", "cuda fp16i8 *0+ -> cuda fp16i8 *1"},
  };
  for (const Fixture& fx : load_fixtures()) {
    for (auto [whole, split] : cases) {
      SCOPED_TRACE(fx.name + ": " + split);
      for (int chunk : {1, 5}) {
        auto a = load(fx.files[0], whole, chunk);
        auto b = load(fx.files[0], split, chunk);
        State sa = a->new_state(), sb = b->new_state();
        std::vector<float> la(fx.tokens.size() * fx.V), lb(la.size());
        a->forward_all(fx.tokens, sa, la.data());
        b->forward_all(fx.tokens, sb, lb.data());
        ASSERT_EQ(0, std::memcmp(la.data(), lb.data(), la.size() * sizeof(float))) << "chunk " << chunk;
        EXPECT_EQ(sa.serialize(), sb.serialize());
        if (std::string(split).find('+') != std::string::npos) {
          EXPECT_GT(b->streamed_bytes_total(), 0u);
        }
      }
    }
  }
}

// CUDA -> CPU hand-off through host fp32 (rwkv-reference 2.7: x.to(device, atype)).
// The CPU fp32 tail computes the remaining blocks without fp16 rounding, so the
// result lies between the fp16 and fp32 references: within the fp16 tolerance
// of the fp16 reference.
TEST(CudaEngine, CudaToCpuPipelineMatchesReference) {
  REQUIRE_CUDA();
  for (const Fixture& fx : load_fixtures()) {
    auto it = fx.expected.find("cuda fp16");
    if (it == fx.expected.end()) continue;
    SCOPED_TRACE(fx.name);
    const NpyArray want = read_npy(it->second.logits.at("step"));
    auto eng = load(fx.files[0], "cuda fp16 *1 -> cpu fp32", 1);
    ASSERT_EQ(eng->plan().stages.size(), 2u);
    State st = eng->new_state();
    std::vector<float> got(fx.tokens.size() * fx.V);
    eng->forward_stepwise(fx.tokens, st, got.data());
    EXPECT_LE(tolerance_ratio(got.data(), want.data.data(), got.size(), it->second.logits_atol, it->second.logits_rtol),
              2.0);
  }
}
