// GPU tests of the CUDA stages on small random models, against the independent
// CPU reference in cuda_test_support.h. Every test skips with "no CUDA device"
// when there is none.
//
// Tolerances (logits of these models are O(1), |logit| < ~6):
//   fp32:      1e-3 absolute. Only fp32 summation order and expf differ from the
//              double reference (relative ~1e-6 per op, a few dozen ops deep).
//   fp16:      3e-2 absolute against the reference that rounds to fp16 wherever
//              torch stores an fp16 tensor. fp16 has 11 significant bits (ulp 2^-10
//              at 1); summation order flips single roundings by one ulp, and a flip
//              propagates through the remaining blocks, so a handful of ulps of the
//              logit scale is expected; 3e-2 is ~30 ulp at 1 and still catches any
//              wrong equation (those are O(0.1-1)). Also 0.1 against the exact
//              (unrounded) reference, and the same argmax.
//   fp16i8:    as fp16 against the reference with the dequantised weights; the
//              sequence path rounds dequantised tiles to fp16 (an extra 2^-11 relative
//              per weight), covered by the same bound.
//   bf16:      0.25 absolute (8 significant bits: ulp 2^-7 at 1, 8x fp16's).
//   step == chunk: the same bounds as fp16 vs its reference (two different
//              summation orders: GEMV vs cuBLAS), bitwise where the kernels are the same
//              (graph vs direct launches, streamed vs resident, split stages).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#include "backend.h"
#include "cuda_test_gtest.h"
#include "cuda_test_support.h"
#include "cuda_util.h"

using namespace corvid;
using namespace corvid_test;

namespace {

bool device_present(std::string* why) {
  try {
    cuda::check_cuda_device(0);
    return true;
  } catch (const std::exception& e) {
    *why = e.what();
    return false;
  }
}

#define REQUIRE_CUDA()                                   \
  do {                                                   \
    std::string why_;                                    \
    if (!device_present(&why_)) GTEST_SKIP() << why_;    \
  } while (0)

// One stage built through the backend's public two-step contract.
struct StageRun {
  std::unique_ptr<Backend> be;
  MemoryStore prepared;
  StageSpec spec;
  std::unique_ptr<Stage> stage;
  std::unique_ptr<StageState> state;

  StageRun(const RandomModel& m, const char* prec, int first, int end, bool head, int stream_first = -1,
           int chunk = 16) {
    spec.device = "cuda";
    spec.precision = *precision_from_name(prec);
    spec.first_block = first;
    spec.end_block = end;
    spec.has_head = head;
    spec.stream_first = stream_first;
    spec.chunk_len = chunk;
    be = cuda::make_backend(spec.precision.quantized() ? "cuda_int8" : "cuda_fp16", spec.precision.quantized());
    be->check_device(spec);
    be->prepare(spec, m.hp(), m, prepared, nullptr);
    stage = be->create_stage(spec, m.hp(), prepared);
    state = stage->new_state();
  }
  // Runs T rows; returns logits ([V] or [T][V]) when the stage has the head.
  std::vector<float> run(std::vector<float>& x, int T, bool all = false, bool want_logits = true) {
    std::vector<float> logits;
    ForwardOptions o;
    if (spec.has_head && want_logits) {
      logits.assign(size_t(all ? T : 1) * size_t(hp_v()), 0.f);
      o.logits = logits.data();
      o.all_logits = all;
    }
    stage->forward(x.data(), T, *state, o);
    return logits;
  }
  int hp_v() const { return int(prepared.find("head.weight") ? prepared.find("head.weight")->shape[0] : 0); }
};

struct Diff {
  double max_abs = 0, mean_abs = 0;
  size_t argmax_a = 0, argmax_b = 0;
};
template <typename A, typename B>
Diff diff(const A& a, const B& b) {
  Diff d;
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const double e = std::abs(double(a[i]) - double(b[i]));
    d.max_abs = std::max(d.max_abs, e);
    d.mean_abs += e / double(n);
    if (a[i] > a[d.argmax_a]) d.argmax_a = i;
    if (b[i] > b[d.argmax_b]) d.argmax_b = i;
  }
  return d;
}

// Steps `T` random rows through the stage (one token per call) and through the
// reference; compares logits after each token against `tol_rounded`, and (when
// given) against the exact fp32-math reference with `tol_exact`.
void compare_with_reference(const char* prec, double tol_rounded, double tol_exact, int R = 2) {
  const ModelHParams hp = tiny_hparams(4, 64, 97, R);
  RandomModel m(hp, 11);
  StageRun run(m, prec, 0, 4, true);
  const Precision p = *precision_from_name(prec);
  ReferenceV4 ref(m, p);
  ReferenceV4 exact(m, Precision{DType::F32, p.quantized() ? DType::U8 : DType::F32});
  auto rs = ref.new_state();
  auto es = exact.new_state();
  const std::vector<float> rows = random_rows(6, hp.n_embd, 5, p.atype);
  double worst = 0, worst_exact = 0;
  for (int t = 0; t < 6; ++t) {
    std::vector<float> x(rows.begin() + t * hp.n_embd, rows.begin() + (t + 1) * hp.n_embd);
    std::vector<double> xr(x.begin(), x.end()), xe(x.begin(), x.end());
    std::vector<float> got = run.run(x, 1);
    std::vector<double> want, want_exact;
    ref.step(xr, rs, 0, 4, &want);
    exact.step(xe, es, 0, 4, &want_exact);
    const Diff d = diff(got, want);
    const Diff de = diff(got, want_exact);
    worst = std::max(worst, d.max_abs);
    worst_exact = std::max(worst_exact, de.max_abs);
    EXPECT_LE(d.max_abs, tol_rounded) << prec << " token " << t << " vs rounded reference";
    EXPECT_LE(de.max_abs, tol_exact) << prec << " token " << t << " vs exact reference";
    EXPECT_EQ(d.argmax_a, d.argmax_b) << prec << " token " << t;
    // The stage's output x is the reference's x after the last block.
    EXPECT_LE(diff(x, xr).max_abs, tol_rounded * 4) << prec << " hidden state, token " << t;
  }
  // State after 6 tokens, canonical form.
  std::vector<float> got_state(run.state->serialized_floats());
  run.state->serialize(got_state.data());
  const std::vector<float> want_state = ref.serialize(rs, 0, 4);
  ASSERT_EQ(got_state.size(), want_state.size());
  double worst_state = 0;
  for (size_t i = 0; i < got_state.size(); ++i) {
    const double scale = std::max(1.0, std::abs(double(want_state[i])));
    worst_state = std::max(worst_state, std::abs(double(got_state[i]) - double(want_state[i])) / scale);
  }
  EXPECT_LE(worst_state, tol_rounded * 4) << prec << " state";
  std::printf("[ measured ] %s: max |logit diff| %.3g vs rounded reference, %.3g vs exact; state %.3g\n", prec, worst,
              worst_exact, worst_state);
}

}  // namespace

TEST(CudaStage, Fp32MatchesReference) {
  REQUIRE_CUDA();
  compare_with_reference("fp32", 1e-3, 1e-3, 0);
}

TEST(CudaStage, Fp16MatchesReference) {
  REQUIRE_CUDA();
  compare_with_reference("fp16", 3e-2, 0.1);
}

TEST(CudaStage, Bf16MatchesReference) {
  REQUIRE_CUDA();
  compare_with_reference("bf16", 0.25, 0.5);
}

TEST(CudaStage, Fp16i8MatchesReference) {
  REQUIRE_CUDA();
  compare_with_reference("fp16i8", 3e-2, 0.1);
}

TEST(CudaStage, Fp32i8MatchesReference) {
  REQUIRE_CUDA();
  compare_with_reference("fp32i8", 1e-3, 1e-3, 0);
}

// Sequence mode (cuBLAS / dequantised tiles) equals stepping (GEMV), and any
// chunking of the sequence gives the same result (rwkv-reference 4.0).
TEST(CudaStage, StepEqualsChunk) {
  REQUIRE_CUDA();
  for (const char* prec : {"fp16", "fp16i8", "fp32"}) {
    const ModelHParams hp = tiny_hparams(4, 64, 97, 2);
    RandomModel m(hp, 21);
    const DType at = precision_from_name(prec)->atype;
    const double tol = at == DType::F32 ? 1e-3 : 3e-2;
    const int T = 9;
    const std::vector<float> rows = random_rows(T, hp.n_embd, 9, at);
    StageRun a(m, prec, 0, 4, true), b(m, prec, 0, 4, true), c(m, prec, 0, 4, true);
    std::vector<float> step_logits;
    std::vector<float> xa = rows;
    for (int t = 0; t < T; ++t) {
      std::vector<float> x(xa.begin() + t * hp.n_embd, xa.begin() + (t + 1) * hp.n_embd);
      std::vector<float> l = a.run(x, 1);
      std::copy(x.begin(), x.end(), xa.begin() + t * hp.n_embd);
      step_logits.insert(step_logits.end(), l.begin(), l.end());
    }
    std::vector<float> xb = rows;
    std::vector<float> all = b.run(xb, T, /*all=*/true);
    const Diff d = diff(all, step_logits);
    EXPECT_LE(d.max_abs, tol) << prec << " all_logits vs stepping";
    EXPECT_LE(diff(xb, xa).max_abs, 4 * tol) << prec << " hidden rows";
    // 4 + 5 tokens, last-token logits only.
    std::vector<float> x1(rows.begin(), rows.begin() + 4 * hp.n_embd), x2(rows.begin() + 4 * hp.n_embd, rows.end());
    c.run(x1, 4, false, false);
    std::vector<float> last = c.run(x2, 5);
    std::vector<float> want_last(step_logits.end() - hp.n_vocab, step_logits.end());
    EXPECT_LE(diff(last, want_last).max_abs, tol) << prec << " chunked 4+5";
    std::vector<float> sa(a.state->serialized_floats()), sc(c.state->serialized_floats());
    a.state->serialize(sa.data());
    c.state->serialize(sc.data());
    double ws = 0;
    for (size_t i = 0; i < sa.size(); ++i)
      ws = std::max(ws, std::abs(double(sa[i]) - sc[i]) / std::max(1.0, std::abs(double(sa[i]))));
    EXPECT_LE(ws, 4 * tol) << prec << " state after 9 tokens";
    std::printf("[ measured ] %s step vs chunk: logits %.3g, state %.3g\n", prec, d.max_abs, ws);
  }
}

TEST(CudaStage, GraphReplayEqualsDirectLaunches) {
  REQUIRE_CUDA();
  const ModelHParams hp = tiny_hparams(3, 64, 97, 2);
  RandomModel m(hp, 31);
  for (const char* prec : {"fp16", "fp16i8"}) {
    StageRun g(m, prec, 0, 3, true);
    setenv("CORVID_CUDA_GRAPHS", "0", 1);
    StageRun d(m, prec, 0, 3, true);
    unsetenv("CORVID_CUDA_GRAPHS");
    const std::vector<float> rows = random_rows(5, hp.n_embd, 3, DType::F16);
    for (int t = 0; t < 5; ++t) {
      std::vector<float> x1(rows.begin() + t * hp.n_embd, rows.begin() + (t + 1) * hp.n_embd), x2 = x1;
      // Alternate with and without logits: two graphs.
      const bool want = t % 2 == 0;
      std::vector<float> l1 = g.run(x1, 1, false, want), l2 = d.run(x2, 1, false, want);
      EXPECT_EQ(l1, l2) << prec << " token " << t;
      EXPECT_EQ(x1, x2) << prec << " token " << t;
    }
    // A second state: the graph is re-captured for its buffers.
    auto s2 = g.stage->new_state();
    auto s3 = d.stage->new_state();
    std::vector<float> x1(rows.begin(), rows.begin() + hp.n_embd), x2 = x1;
    std::vector<float> l1(size_t(hp.n_vocab)), l2(size_t(hp.n_vocab));
    ForwardOptions o1, o2;
    o1.logits = l1.data();
    o2.logits = l2.data();
    g.stage->forward(x1.data(), 1, *s2, o1);
    d.stage->forward(x2.data(), 1, *s3, o2);
    EXPECT_EQ(l1, l2) << prec << " fresh state";
  }
}

TEST(CudaStage, StreamingEqualsResidentAndCountsBytes) {
  REQUIRE_CUDA();
  const ModelHParams hp = tiny_hparams(4, 64, 97, 2);
  RandomModel m(hp, 41);
  for (const char* prec : {"fp16", "fp16i8"}) {
    StageRun res(m, prec, 0, 4, true), str(m, prec, 0, 4, true, /*stream_first=*/1);
    const uint64_t per_block = str.stage->streamed_weight_bytes() / 3;
    EXPECT_GT(per_block, 0u);
    EXPECT_EQ(res.stage->streamed_weight_bytes(), 0u);
    EXPECT_LT(str.stage->resident_weight_bytes(), res.stage->resident_weight_bytes());
    EXPECT_EQ(str.stage->resident_weight_bytes() + str.stage->streamed_weight_bytes(), res.stage->resident_weight_bytes());
    const std::vector<float> rows = random_rows(7, hp.n_embd, 4, DType::F16);
    int calls = 0;
    for (int t = 0; t < 3; ++t, ++calls) {
      std::vector<float> x1(rows.begin() + t * hp.n_embd, rows.begin() + (t + 1) * hp.n_embd), x2 = x1;
      EXPECT_EQ(res.run(x1, 1), str.run(x2, 1)) << prec << " token " << t;
    }
    std::vector<float> x1(rows.begin() + 3 * hp.n_embd, rows.end()), x2 = x1;
    EXPECT_EQ(res.run(x1, 4, true), str.run(x2, 4, true)) << prec << " chunk";
    ++calls;
    EXPECT_EQ(str.stage->streamed_bytes_total(), uint64_t(calls) * str.stage->streamed_weight_bytes());
    EXPECT_NE(str.stage->describe().find("streamed"), std::string::npos) << str.stage->describe();
  }
}

// Two stages on one device (x handed over as host fp32) equal one stage: the
// hand-off is lossless for fp16 values, as the framework relies on.
TEST(CudaStage, SplitStagesEqualOneStage) {
  REQUIRE_CUDA();
  const ModelHParams hp = tiny_hparams(4, 64, 97, 2);
  RandomModel m(hp, 51);
  StageRun one(m, "fp16", 0, 4, true), a(m, "fp16", 0, 2, false), b(m, "fp16", 2, 4, true);
  const std::vector<float> rows = random_rows(6, hp.n_embd, 6, DType::F16);
  std::vector<float> x1(rows.begin(), rows.begin() + 3 * hp.n_embd), x2 = x1;
  std::vector<float> l1 = one.run(x1, 3);
  a.run(x2, 3);
  std::vector<float> l2 = b.run(x2, 3);
  EXPECT_EQ(l1, l2);
  for (int t = 3; t < 6; ++t) {
    std::vector<float> y1(rows.begin() + t * hp.n_embd, rows.begin() + (t + 1) * hp.n_embd), y2 = y1;
    l1 = one.run(y1, 1);
    a.run(y2, 1);
    l2 = b.run(y2, 1);
    EXPECT_EQ(l1, l2) << "token " << t;
  }
}

TEST(CudaStage, StateSerializeCloneAndReset) {
  REQUIRE_CUDA();
  const ModelHParams hp = tiny_hparams(2, 64, 97, 2);
  RandomModel m(hp, 61);
  StageRun r(m, "fp16", 0, 2, true);
  const std::vector<float> rows = random_rows(4, hp.n_embd, 7, DType::F16);
  std::vector<float> x(rows.begin(), rows.begin() + 2 * hp.n_embd);
  r.run(x, 2);
  std::vector<float> saved(r.state->serialized_floats());
  EXPECT_EQ(saved.size(), size_t(2) * (2 * 64 + 3 * 64));
  r.state->serialize(saved.data());
  auto cl = r.state->clone();
  auto fresh = r.stage->new_state();
  fresh->deserialize(saved.data());
  std::vector<float> back(saved.size());
  fresh->serialize(back.data());
  EXPECT_EQ(back, saved);
  // Continue from the original, the clone and the deserialized copy: identical.
  std::vector<float> y(rows.begin() + 2 * hp.n_embd, rows.begin() + 3 * hp.n_embd), y2 = y, y3 = y;
  std::vector<float> l1 = r.run(y, 1);
  std::vector<float> l2(size_t(hp.n_vocab)), l3(size_t(hp.n_vocab));
  ForwardOptions o2, o3;
  o2.logits = l2.data();
  o3.logits = l3.data();
  r.stage->forward(y2.data(), 1, *cl, o2);
  r.stage->forward(y3.data(), 1, *fresh, o3);
  EXPECT_EQ(l1, l2);
  EXPECT_EQ(l1, l3);
  // reset() gives the initial state: zeros and p = -1e30.
  cl->reset();
  std::vector<float> z(saved.size());
  cl->serialize(z.data());
  for (int b = 0; b < 2; ++b) {
    const float* s = z.data() + size_t(b) * 320;
    EXPECT_EQ(s[0], 0.f);
    EXPECT_EQ(s[64], 0.f);       // a
    EXPECT_EQ(s[128], 0.f);      // b
    EXPECT_EQ(s[192], -1e30f);   // p
    EXPECT_EQ(s[256], 0.f);      // ffn shift
  }
  // copy_from restores.
  cl->copy_from(*r.state);
  std::vector<float> c1(saved.size()), c2(saved.size());
  cl->serialize(c1.data());
  r.state->serialize(c2.data());
  EXPECT_EQ(c1, c2);
  // A state from another stage is rejected.
  StageRun other(m, "fp16", 0, 1, false);
  std::vector<float> w(rows.begin(), rows.begin() + hp.n_embd);
  ForwardOptions none;
  EXPECT_THROW(r.stage->forward(w.data(), 1, *other.state, none), Error);
}

// Out of device memory while building: one-line error with needed vs free, and
// nothing left allocated.
TEST(CudaStage, OutOfMemoryIsAClearErrorAndLeaksNothing) {
  REQUIRE_CUDA();
  const ModelHParams hp = tiny_hparams(1, 64, 97, 0);
  RandomModel m(hp, 71);
  auto be = cuda::make_backend("cuda_fp16", false);
  StageSpec spec;
  spec.device = "cuda";
  spec.precision = *precision_from_name("fp16");
  spec.first_block = 0;
  spec.end_block = 1;
  spec.has_head = true;
  spec.chunk_len = 1 << 28;  // activation buffers for 268M tokens: terabytes
  MemoryStore st;
  be->prepare(spec, hp, m, st, nullptr);
  cudaSetDevice(0);
  size_t free0 = 0, total = 0;
  cudaMemGetInfo(&free0, &total);
  try {
    auto s = be->create_stage(spec, hp, st);
    FAIL() << "expected out of device memory";
  } catch (const Error& e) {
    const std::string w = e.what();
    EXPECT_EQ(w.rfind("out of device memory", 0), 0u) << w;
    EXPECT_NE(w.find("free"), std::string::npos) << w;
    EXPECT_EQ(w.find('\n'), std::string::npos) << w;
  }
  size_t free1 = 0;
  cudaMemGetInfo(&free1, &total);
  EXPECT_GE(free1 + (16u << 20), free0);
}

TEST(CudaStage, NoLogitsSkipsTheHead) {
  REQUIRE_CUDA();
  const ModelHParams hp = tiny_hparams(2, 64, 97, 2);
  RandomModel m(hp, 81);
  StageRun a(m, "fp16", 0, 2, true), b(m, "fp16", 0, 2, true);
  const std::vector<float> rows = random_rows(3, hp.n_embd, 8, DType::F16);
  std::vector<float> x1 = rows, x2 = rows;
  a.run(x1, 3, false, false);
  b.run(x2, 3, false, true);
  EXPECT_EQ(x1, x2);  // same hidden output with or without the head
}
