// cpu_onednn RWKV-7 (plugins/cpu_onednn/rwkv7_stage.*):
//   * the v7 state update and read-out, and the per-head L2 normalisation,
//     against double-precision loops written from rwkv-reference §4.5;
//   * every v7 fixture of tests/fixtures/models_v5plus (numpy reference,
//     tests/reference/rwkv_ref_v5plus.py), cpu fp32 / fp32i8 / bf16, step and
//     each chunk size, 1 and 2 threads: logits and final state within the
//     fixtures.json tolerances;
//   * a split pipeline (`cpu fp32 *1 -> cpu fp32`, `cpu fp32 *1 -> cpu bf16`)
//     hands v_first from the stage holding block 0 to the next.
//
// Tolerances (fixtures.json): fp32 and fp32i8 1e-4 (fp32 summation order of
// the GEMV/GEMM and state sums against the reference's products); bf16
// 2e-2 + 2e-2·|want| (same rounding points; a different fp32 summation order
// may flip one bf16 rounding, 2^-8 relative, which later blocks carry).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>

#include "common/fixture_run.h"
#include "cpu_backend/fixture_sweep.h"
#include "corvid/io/npy.h"
#include "corvid/runtime/engine.h"
#include "kernels.h"
#include "rwkv7_stage.h"

using namespace corvid;
using namespace corvid_test;

namespace {
std::string v5plus_dir() { return std::string(CORVID_TEST_DATA_DIR) + "/fixtures/models_v5plus"; }
bool is_v7(const Fixture& fx) { return fx.name.rfind("rwkv7", 0) == 0; }
}  // namespace

// S[i,j] ← S[i,j]·ω_j + (Σ_l S[i,l]·(−κ_l))·κ_j·a_j + v_i·k_j;  y_i = Σ_j S[i,j]·r_j,
// over several tokens, against the same sums in double.
TEST(Rwkv7Pieces, StateUpdateMatchesDoubleLoop) {
  const int N = 64, steps = 20;
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> U(-1.f, 1.f), W(0.545f, 1.f), P(0.f, 1.f);
  std::vector<float> S(size_t(N) * N, 0.f), r(N), w(N), k(N), v(N), kap(N), a(N), y(N), ab(size_t(N) * N), sa(N);
  std::vector<double> Sd(size_t(N) * N, 0.0), Sn(size_t(N) * N);
  double worst_y = 0, worst_s = 0;
  for (int t = 0; t < steps; ++t) {
    for (int j = 0; j < N; ++j) { r[j] = U(rng); w[j] = W(rng); k[j] = U(rng); v[j] = U(rng); a[j] = P(rng); kap[j] = U(rng); }
    cpu::v7::l2_normalize_heads(kap.data(), kap.data(), 1, N, false);
    cpu::v7::wkv7_head_step(r.data(), w.data(), k.data(), v.data(), kap.data(), a.data(), S.data(), y.data(), N, false,
                            ab.data(), sa.data());
    for (int i = 0; i < N; ++i) {
      double sai = 0;
      for (int l = 0; l < N; ++l) sai += Sd[size_t(i) * N + l] * -double(kap[l]);
      for (int j = 0; j < N; ++j)
        Sn[size_t(i) * N + j] = Sd[size_t(i) * N + j] * w[j] + sai * double(kap[j]) * a[j] + double(v[i]) * k[j];
    }
    Sd = Sn;
    for (int i = 0; i < N; ++i) {
      double yi = 0;
      for (int j = 0; j < N; ++j) {
        yi += Sd[size_t(i) * N + j] * r[j];
        worst_s = std::max(worst_s, std::abs(Sd[size_t(i) * N + j] - S[size_t(i) * N + j]));
      }
      worst_y = std::max(worst_y, std::abs(yi - y[i]));
    }
  }
  EXPECT_LT(worst_s, 2e-5);
  EXPECT_LT(worst_y, 2e-4);
  EXPECT_GT(worst_s, 0.0);  // computed in fp32, not copied from the double loop

  // The bf16 form (elementwise-rounded ab and v kᵀ, S rounded when read) stays
  // within bf16 distance of the fp32 form on the same inputs.
  std::vector<float> S2(size_t(N) * N, 0.f), S3(size_t(N) * N, 0.f), y2(N), y3(N);
  double worst = 0;
  for (int t = 0; t < steps; ++t) {
    for (int j = 0; j < N; ++j) { r[j] = U(rng); w[j] = W(rng); k[j] = U(rng); v[j] = U(rng); a[j] = P(rng); kap[j] = U(rng); }
    cpu::v7::l2_normalize_heads(kap.data(), kap.data(), 1, N, false);
    cpu::v7::wkv7_head_step(r.data(), w.data(), k.data(), v.data(), kap.data(), a.data(), S2.data(), y2.data(), N, false,
                            ab.data(), sa.data());
    cpu::v7::wkv7_head_step(r.data(), w.data(), k.data(), v.data(), kap.data(), a.data(), S3.data(), y3.data(), N, true,
                            ab.data(), sa.data());
    for (int i = 0; i < N; ++i) worst = std::max(worst, double(std::abs(y2[i] - y3[i])) / (1 + std::abs(y2[i])));
  }
  EXPECT_LT(worst, 0.05);
  EXPECT_GT(worst, 0.0);  // and really rounds
}

// The fp32 step keeps the plain per-row order of every sum (Σ over l, then
// over j, each product and sum rounded to fp32): bit-identical to the direct
// loops, for head sizes that are and are not multiples of its 8-row blocks.
TEST(Rwkv7Pieces, Fp32HeadStepIsTheDirectLoopsBitForBit) {
  for (int N : {8, 13, 64}) {
    std::mt19937 rng(static_cast<uint32_t>(100 + N));
    std::uniform_real_distribution<float> U(-1.f, 1.f), W(0.5f, 1.f), P(0.f, 1.f);
    std::vector<float> r(N), w(N), k(N), v(N), a(N), kap(N), ab(size_t(N) * N), sa(N), y(N), yw(N), saw(N), b(N);
    std::vector<float> S(size_t(N) * N, 0.f), Sw(size_t(N) * N, 0.f);
    for (int t = 0; t < 30; ++t) {
      for (int j = 0; j < N; ++j) { r[j] = U(rng); w[j] = W(rng); k[j] = U(rng); v[j] = U(rng); a[j] = P(rng); kap[j] = U(rng); }
      cpu::v7::l2_normalize_heads(kap.data(), kap.data(), 1, N, false);
      cpu::v7::wkv7_head_step(r.data(), w.data(), k.data(), v.data(), kap.data(), a.data(), S.data(), y.data(), N, false,
                              ab.data(), sa.data());
      for (int i = 0; i < N; ++i) {
        float acc = 0.f;
        for (int l = 0; l < N; ++l) acc += Sw[size_t(i) * N + l] * -kap[l];
        saw[i] = acc;
      }
      for (int j = 0; j < N; ++j) b[j] = kap[j] * a[j];
      for (int i = 0; i < N; ++i) {
        float acc = 0.f;
        for (int j = 0; j < N; ++j) {
          float& e = Sw[size_t(i) * N + j];
          e = (e * w[j] + saw[i] * b[j]) + v[i] * k[j];
          acc += e * r[j];
        }
        yw[i] = acc;
      }
      ASSERT_EQ(S, Sw) << "N " << N << " t " << t;
      ASSERT_EQ(y, yw) << "N " << N << " t " << t;
    }
  }
}

// The AVX-512 bf16 head step is the scalar bf16 step, bit for bit (state and
// read-out), over many tokens, for the head sizes it specialises (64, 128) and
// the generic path (16, 48), including a NaN that must propagate.
TEST(Rwkv7Pieces, Bf16HeadStepAvx512SameBits) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("avx512vl"))
    GTEST_SKIP() << "no AVX-512 on this CPU";
  for (int N : {16, 48, 64, 128}) {
    std::mt19937 rng(static_cast<uint32_t>(N));
    std::uniform_real_distribution<float> U(-1.f, 1.f), W(0.5f, 1.f), P(0.f, 1.f);
    std::vector<float> r(N), w(N), k(N), v(N), a(N), kap(N), ab(size_t(N) * N), sa(N), ab2(size_t(N) * N), sa2(N);
    std::vector<float> S1(size_t(N) * N, 0.f), S2(size_t(N) * N, 0.f), y1(N), y2(N);
    for (int t = 0; t < 40; ++t) {
      for (int j = 0; j < N; ++j) { r[j] = U(rng); w[j] = W(rng); k[j] = U(rng); v[j] = 3.f * U(rng); a[j] = P(rng); kap[j] = U(rng); }
      cpu::v7::l2_normalize_heads(kap.data(), kap.data(), 1, N, true);
      if (N == 48 && t == 39) v[5] = NAN;
      cpu::v7::wkv7_head_step(r.data(), w.data(), k.data(), v.data(), kap.data(), a.data(), S1.data(), y1.data(), N, true,
                              ab.data(), sa.data());
      cpu::v7::wkv7_head_step_bf16_avx512(r.data(), w.data(), k.data(), v.data(), kap.data(), a.data(), S2.data(), y2.data(), N,
                                          ab2.data(), sa2.data());
      for (int i = 0; i < N; ++i) {
        if (std::isnan(y1[i])) {
          ASSERT_TRUE(std::isnan(y2[i])) << "N " << N << " t " << t << " i " << i;
          continue;
        }
        ASSERT_EQ(y1[i], y2[i]) << "N " << N << " t " << t << " i " << i;
      }
      for (size_t e = 0; e < S1.size(); ++e) {
        if (std::isnan(S1[e])) {
          ASSERT_TRUE(std::isnan(S2[e]));
          continue;
        }
        ASSERT_EQ(S1[e], S2[e]) << "N " << N << " t " << t << " e " << e;
      }
    }
  }
}

TEST(Rwkv7Pieces, L2NormalizePerHeadWithEps) {
  const int H = 3, N = 8;
  std::vector<float> x(H * N), out(H * N);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> U(-3.f, 3.f);
  for (float& f : x) f = U(rng);
  for (int i = 0; i < N; ++i) x[N + i] = 0.f;  // a zero head: eps keeps it 0, not NaN
  cpu::v7::l2_normalize_heads(x.data(), out.data(), H, N, false);
  for (int h = 0; h < H; ++h) {
    double n = 0;
    for (int i = 0; i < N; ++i) n += double(x[h * N + i]) * x[h * N + i];
    n = std::max(std::sqrt(n), 1e-12);
    for (int i = 0; i < N; ++i) EXPECT_NEAR(out[h * N + i], x[h * N + i] / n, 1e-6);
  }
  for (int i = 0; i < N; ++i) EXPECT_EQ(out[N + i], 0.f);
}

// Every v7 fixture × strategy × mode × threads × kernel family this CPU has
// (forced with CORVID_CPU_ISA) against the reference.
TEST(Rwkv7Fixtures, MatchTheReference) {
  const int runs = sweep_cpu_fixtures(load_fixtures(v5plus_dir()), "v7 fixture", is_v7);
  EXPECT_GE(runs, 2 * 3 * 2 * 2);
}

// cpu bf16i8: no reference run of its own; bounded by cpu bf16's distance to
// cpu fp32 (fixture_sweep.h says why 4x).
TEST(Rwkv7Fixtures, Bf16i8IsAsCloseToFp32i8AsBf16IsToFp32) {
  EXPECT_GE(check_bf16i8_bound(load_fixtures(v5plus_dir()), "v7 fixture", is_v7), 1);
}
