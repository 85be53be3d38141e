// cpu_onednn RWKV-5.0/5.1/5.2 and RWKV-6.0 (plugins/cpu_onednn/rwkv5_stage.*):
//   * the WKV5 recurrence and the ln_x GroupNorm against double-precision loops;
//   * every v5.x/v6 fixture of tests/fixtures/models_v5plus (numpy reference,
//     tests/reference/rwkv_ref_v5plus.py), every CPU strategy, step and each
//     chunk size, 1 and 2 threads: logits and final state within the
//     fixtures.json tolerances; the time_state fixture's initial state too.
//
// Tolerances (fixtures.json): fp32 and fp32i8 1e-4 (fp32 summation order of
// the GEMV/GEMM and WKV sums against the reference's float64 products);
// bf16 2e-2 + 2e-2·|want| (same rounding points; a different fp32 summation
// order may flip one bf16 rounding, 2^-8 relative, which later blocks carry).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>

#include "common/fixture_run.h"
#include "cpu_backend/fixture_sweep.h"
#include "corvid/io/npy.h"
#include "corvid/runtime/engine.h"
#include "kernels.h"
#include "rwkv5_stage.h"

using namespace corvid;
using namespace corvid_test;

namespace {

std::string v5_dir() { return std::string(CORVID_TEST_DATA_DIR) + "/fixtures/models_v5plus"; }

bool is_v5_or_v6(const Fixture& fx) { return fx.name.rfind("rwkv5", 0) == 0 || fx.name.rfind("rwkv6", 0) == 0; }

}  // namespace

// y_i = Σ_j r_j·(u_j·k_j·v_i + S[j,i]);  S[j,i] ← k_j·v_i + w_j·S[j,i], over
// several tokens, against the same sums in double.
TEST(Rwkv5Pieces, WkvStepMatchesDoubleLoop) {
  const int N = 64, steps = 20;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> U(-1.f, 1.f), W(0.3f, 0.999f);
  std::vector<float> u(N), w(N), S(size_t(N) * N, 0.f), r(N), k(N), v(N), y(N);
  std::vector<double> Sd(size_t(N) * N, 0.0);
  for (int j = 0; j < N; ++j) { u[j] = U(rng); w[j] = W(rng); }
  double worst_y = 0, worst_s = 0;
  for (int t = 0; t < steps; ++t) {
    for (int j = 0; j < N; ++j) { r[j] = U(rng); k[j] = U(rng); v[j] = U(rng); }
    cpu::v5::wkv5_head_step(r.data(), k.data(), v.data(), u.data(), w.data(), S.data(), y.data(), N);
    for (int i = 0; i < N; ++i) {
      double yi = 0;
      for (int j = 0; j < N; ++j) yi += double(r[j]) * (double(u[j]) * k[j] * v[i] + Sd[size_t(j) * N + i]);
      worst_y = std::max(worst_y, std::abs(yi - y[i]));
    }
    for (int j = 0; j < N; ++j)
      for (int i = 0; i < N; ++i) {
        double& s = Sd[size_t(j) * N + i];
        s = double(k[j]) * v[i] + double(w[j]) * s;
        worst_s = std::max(worst_s, std::abs(s - S[size_t(j) * N + i]));
      }
  }
  // |y| and |S| stay below ~30 here; fp32 sums of 64 terms: a few ulps.
  EXPECT_LT(worst_y, 2e-4);
  EXPECT_LT(worst_s, 2e-5);
  EXPECT_GT(worst_y, 0.0);  // really computed in fp32, not copied from the double loop
}

TEST(Rwkv5Pieces, GroupNormMatchesDouble) {
  const int H = 3, N = 16;
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> U(-4.f, 4.f);
  std::vector<float> y(H * N), g(H * N), b(H * N), out(H * N);
  for (int i = 0; i < H * N; ++i) { y[i] = U(rng); g[i] = U(rng); b[i] = U(rng); }
  y[N] = 100.f;  // one head with an outlier: heads normalise independently
  cpu::v5::group_norm(y.data(), g.data(), b.data(), out.data(), H, N, 64e-5f);
  for (int h = 0; h < H; ++h) {
    double m = 0, v = 0;
    for (int i = 0; i < N; ++i) m += y[h * N + i];
    m /= N;
    for (int i = 0; i < N; ++i) v += (y[h * N + i] - m) * (y[h * N + i] - m);
    v /= N;
    for (int i = 0; i < N; ++i) {
      const int c = h * N + i;
      const double want = (y[c] - m) / std::sqrt(v + 64e-5) * g[c] + b[c];
      EXPECT_NEAR(out[c], want, 1e-5 * (1 + std::abs(want))) << c;
    }
  }
  // eps matters: a constant head gives β exactly (0/sqrt(eps)).
  std::vector<float> flat(N, 2.5f), gg(N, 3.f), bb(N, 0.25f), o2(N);
  cpu::v5::group_norm(flat.data(), gg.data(), bb.data(), o2.data(), 1, N, 64e-5f);
  for (float x : o2) EXPECT_EQ(x, 0.25f);
}

// Every v5.x/v6 fixture × strategy × mode × threads × kernel family this CPU
// has (forced with CORVID_CPU_ISA) against the reference.
TEST(Rwkv5Fixtures, MatchTheReference) {
  const int runs = sweep_cpu_fixtures(load_fixtures(v5_dir()), "v5 fixture", is_v5_or_v6);
  EXPECT_GE(runs, 5 * 3 * 2 * 2);  // five v5/v6 fixtures, three strategies, two thread counts, >= 2 modes
}

// cpu bf16i8: no reference run of its own; bounded by cpu bf16's distance to
// cpu fp32 (fixture_sweep.h says why 4x).
TEST(Rwkv5Fixtures, Bf16i8IsAsCloseToFp32i8AsBf16IsToFp32) {
  EXPECT_GE(check_bf16i8_bound(load_fixtures(v5_dir()), "v5 fixture", is_v5_or_v6), 5);
}

// The trained initial state (att.time_state, [h][value][key] in the file) is
// the state a fresh State starts from, transposed to [h][key][value] and, under
// bf16, rounded to bf16 (reference decision 3).
TEST(Rwkv5Fixtures, TimeStateIsTheInitialState) {
  std::ifstream in(v5_dir() + "/fixtures.json");
  nlohmann::json j = nlohmann::json::parse(in);
  int checked = 0;
  for (const auto& f : j["fixtures"]) {
    if (!f.value("time_state", false)) continue;
    for (auto it = f["expected"].begin(); it != f["expected"].end(); ++it) {
      if (!it.value().contains("state_initial")) continue;
      SCOPED_TRACE(f["name"].get<std::string>() + " / " + it.key());
      NpyArray want = read_npy(v5_dir() + "/" + it.value()["state_initial"].get<std::string>());
      EngineOptions o = engine_default_options();
      o.model_path = v5_dir() + "/" + f["files"][0]["file"].get<std::string>();
      o.strategy = it.key();
      o.threads = 1;
      auto eng = Engine::load(o);
      State st = eng->new_state();
      std::vector<float> s = st.serialize();
      ASSERT_EQ(s.size(), want.data.size());
      EXPECT_EQ(0.0, max_abs_diff(s.data(), want.data.data(), s.size()));
      double nz = 0;
      for (float x : s) nz += std::abs(x);
      EXPECT_GT(nz, 0.0);
      ++checked;
    }
  }
  EXPECT_GE(checked, 3);
}
