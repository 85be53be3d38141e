// cpu_onednn kernels: every SIMD path against a double-precision reference and
// against the scalar path, at sizes that are and are not multiples of the
// vector widths (8, 16, 32, 64 elements), one and several threads.
//
// Tolerance: fp32 sums of n products differ from the exact sum by at most
// about n * 2^-24 * sum|a_i b_i| for any summation order; we allow
// 4 * n * 2^-24 * sum|a_i b_i| + 1e-30 (a wrong index or a skipped tail gives an
// error of the size of one whole product, far above that).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <random>
#include <thread>
#include <vector>

#include "corvid/sdk/dtype.h"
#include "corvid/sdk/weights_util.h"
#include "kernels.h"

using namespace corvid;
using namespace corvid::cpu;

namespace {

std::vector<Isa> supported_isas() {
  std::vector<Isa> v;
  for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Bf16})
    if (isa_supported(i)) v.push_back(i);
  return v;
}

const int kSizes[] = {1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 257, 768, 1000, 1024, 2051};

double bound(double abs_sum, int n) { return 4.0 * n * std::ldexp(1.0, -24) * abs_sum + 1e-30; }

std::vector<float> randn(std::mt19937& g, size_t n, float scale = 1.f) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

float bf16_round(float v) { return bf16_to_f32(f32_to_bf16(v)); }

// A random matrix in all three prepared forms: fp32, bf16, and the
// reference's int8 scheme (quantised on the (in, out) transpose, codes stored
// (out, in), as layout.cpp does).
struct TestMatrix {
  int rows, cols;
  std::vector<float> f32;
  std::vector<uint16_t> bf16;
  std::vector<uint8_t> q;
  std::vector<float> mx, rx, my, ry;
  Matrix as(Matrix::Kind k) const {
    Matrix m;
    m.rows = rows;
    m.cols = cols;
    m.kind = k;
    m.f32 = f32.data();
    m.bf16 = bf16.data();
    m.q = q.data();
    m.mx = mx.data();
    m.rx = rx.data();
    m.my = my.data();
    m.ry = ry.data();
    return m;
  }
  // Row j as the kernel of kind k sees it (dequantised for int8).
  std::vector<double> row(Matrix::Kind k, int j) const {
    std::vector<double> r(static_cast<size_t>(cols));
    for (int i = 0; i < cols; ++i) {
      const size_t at = size_t(j) * cols + i;
      if (k == Matrix::Kind::F32) r[i] = f32[at];
      else if (k == Matrix::Kind::BF16) r[i] = bf16_to_f32(bf16[at]);
      else r[i] = (double(q[at]) + 0.5) * ry[i] * rx[j] + my[i] + mx[j];
    }
    return r;
  }
};

TestMatrix make_matrix(std::mt19937& g, int rows, int cols) {
  TestMatrix t;
  t.rows = rows;
  t.cols = cols;
  t.f32 = randn(g, size_t(rows) * cols, 1.f / std::sqrt(float(cols)));
  t.bf16.resize(t.f32.size());
  for (size_t i = 0; i < t.f32.size(); ++i) t.bf16[i] = f32_to_bf16(t.f32[i]);
  std::vector<float> w_in_out(t.f32.size());
  for (int j = 0; j < rows; ++j)
    for (int i = 0; i < cols; ++i) w_in_out[size_t(i) * rows + j] = t.f32[size_t(j) * cols + i];
  std::vector<uint8_t> q_in_out(t.f32.size());
  t.mx.resize(rows);
  t.rx.resize(rows);
  t.my.resize(cols);
  t.ry.resize(cols);
  wutil::quantize_u8(w_in_out.data(), cols, rows, q_in_out.data(), t.mx.data(), t.rx.data(), t.my.data(), t.ry.data());
  t.q.resize(t.f32.size());
  for (int j = 0; j < rows; ++j)
    for (int i = 0; i < cols; ++i) t.q[size_t(j) * cols + i] = q_in_out[size_t(i) * rows + j];
  return t;
}

}  // namespace

TEST(CpuKernels, IsaSelection) {
  EXPECT_EQ(select_isa(nullptr), detect_isa());
  EXPECT_EQ(select_isa(""), detect_isa());
  EXPECT_EQ(select_isa("scalar"), Isa::Scalar);
  EXPECT_THROW(select_isa("avx9000"), Error);
  if (!isa_supported(Isa::Avx512)) {
    EXPECT_THROW(select_isa("avx512"), Error);
  }
  std::printf("this CPU: %s\n", isa_name(detect_isa()));
}

TEST(CpuKernels, DotF32EveryPathEverySize) {
  std::mt19937 g(1);
  for (int n : kSizes) {
    auto a = randn(g, n), b = randn(g, n);
    double exact = 0, abs_sum = 0;
    for (int i = 0; i < n; ++i) exact += double(a[i]) * b[i], abs_sum += std::abs(double(a[i]) * b[i]);
    for (Isa isa : supported_isas())
      EXPECT_NEAR(dot_f32(isa, a.data(), b.data(), n), exact, bound(abs_sum, n)) << isa_name(isa) << " n=" << n;
  }
}

TEST(CpuKernels, DotBf16EveryPathEverySize) {
  std::mt19937 g(2);
  for (int n : kSizes) {
    auto wf = randn(g, n), x = randn(g, n);
    std::vector<uint16_t> w(n), xb(n + 64);
    // x holds bf16 values, as in a bf16 stage (the BF16 dot instruction reads xb).
    for (int i = 0; i < n; ++i) w[i] = f32_to_bf16(wf[i]), x[i] = bf16_round(x[i]), xb[i] = f32_to_bf16(x[i]);
    double exact = 0, abs_sum = 0;
    for (int i = 0; i < n; ++i) {
      const double p = double(bf16_to_f32(w[i])) * x[i];
      exact += p, abs_sum += std::abs(p);
    }
    for (Isa isa : supported_isas())
      EXPECT_NEAR(dot_bf16(isa, w.data(), x.data(), xb.data(), n), exact, bound(abs_sum, n)) << isa_name(isa) << " n=" << n;
  }
}

TEST(CpuKernels, DotU8EveryPathEverySize) {
  std::mt19937 g(3);
  std::uniform_int_distribution<int> code(0, 255);
  for (int n : kSizes) {
    std::vector<uint8_t> q(n);
    for (auto& c : q) c = uint8_t(code(g));
    auto xs = randn(g, n);
    double exact = 0, abs_sum = 0;
    for (int i = 0; i < n; ++i) exact += double(q[i]) * xs[i], abs_sum += std::abs(double(q[i]) * xs[i]);
    for (Isa isa : supported_isas())
      EXPECT_NEAR(dot_u8(isa, q.data(), xs.data(), n), exact, bound(abs_sum, n)) << isa_name(isa) << " n=" << n;
  }
}

// y = x W^T for every weight kind, path and thread count, against the double
// product with the row as that kind defines it (int8: the reference's
// dequantisation (q + 0.5) ry rx + my + mx).
TEST(CpuKernels, GemvEveryKindPathAndThreadCount) {
  std::mt19937 g(4);
  const std::pair<int, int> shapes[] = {{1, 1}, {3, 17}, {37, 24}, {64, 96}, {96, 24}, {129, 1000}, {50, 2051}};
  for (auto [rows, cols] : shapes) {
    TestMatrix t = make_matrix(g, rows, cols);
    std::vector<float> x = randn(g, cols);
    for (float& v : x) v = bf16_round(v);  // exact for the bf16 instruction path too
    std::vector<float> xs(cols), y(rows), y1(rows);
    std::vector<uint16_t> xb(cols + 64);
    GemvScratch s{xs.data(), xb.data()};
    for (auto kind : {Matrix::Kind::F32, Matrix::Kind::BF16, Matrix::Kind::U8}) {
      const Matrix m = t.as(kind);
      std::vector<double> want(rows), abs_sum(rows);
      for (int j = 0; j < rows; ++j) {
        auto r = t.row(kind, j);
        for (int i = 0; i < cols; ++i) want[j] += r[i] * x[i], abs_sum[j] += std::abs(r[i] * x[i]);
      }
      for (Isa isa : supported_isas()) {
        for (int threads : {1, 2, 3}) {
          ThreadPool pool(threads);
          gemv(isa, m, x.data(), y.data(), s, pool);
          if (threads == 1) y1 = y;
          for (int j = 0; j < rows; ++j) {
            // int8: the fast algebra regroups the sum; allow its extra roundings.
            const double tol = kind == Matrix::Kind::U8 ? 3 * bound(abs_sum[j] + std::abs(want[j]), cols) + 1e-6 * abs_sum[j]
                                                        : bound(abs_sum[j], cols);
            ASSERT_NEAR(y[j], want[j], tol) << isa_name(isa) << " kind " << int(kind) << " " << rows << "x" << cols
                                            << " row " << j << " threads " << threads;
          }
          // Rows are split across threads, never a row's sum: bitwise the same.
          EXPECT_EQ(y, y1) << isa_name(isa) << " threads " << threads;
        }
      }
    }
  }
}

// Sequence-mode products (oneDNN GEMM) agree with the exact product, and the
// int8 path multiplies by exactly the reference's dequantised fp32 matrix.
TEST(CpuKernels, GemmEveryKind) {
  std::mt19937 g(5);
  const std::pair<int, int> shapes[] = {{37, 24}, {300, 65}, {24, 96}, {600, 33}};  // 300, 600 rows: several blocks
  for (auto [rows, cols] : shapes) {
    TestMatrix t = make_matrix(g, rows, cols);
    for (int T : {2, 5, 16}) {
      std::vector<float> X = randn(g, size_t(T) * cols), Y(size_t(T) * rows);
      for (float& v : X) v = bf16_round(v);
      GemmContext ctx;
      for (auto kind : {Matrix::Kind::F32, Matrix::Kind::BF16, Matrix::Kind::U8}) {
        for (int threads : {1, 2}) {
          ThreadPool pool(threads);
          ctx.gemm(t.as(kind), X.data(), T, Y.data(), pool);
          for (int j = 0; j < rows; ++j) {
            // The int8 dequantisation itself is fp32 ((q+.5)*ry)*rx + my + mx: one
            // more rounding per element than the double row.
            std::vector<float> deq(cols);
            if (kind == Matrix::Kind::U8) dequant_row_u8(t.as(kind), j, deq.data());
            auto r = t.row(kind, j);
            for (int tt = 0; tt < T; ++tt) {
              double want = 0, abs_sum = 0;
              for (int i = 0; i < cols; ++i) {
                const double w = kind == Matrix::Kind::U8 ? double(deq[i]) : r[i];
                want += w * X[size_t(tt) * cols + i];
                abs_sum += std::abs(w * X[size_t(tt) * cols + i]);
              }
              ASSERT_NEAR(Y[size_t(tt) * rows + j], want, bound(abs_sum, cols))
                  << "kind " << int(kind) << " T " << T << " row " << j << " threads " << threads;
            }
          }
        }
      }
    }
  }
}

// dequant_row_u8 is the reference's element formula, evaluated in fp32 in the
// reference's order: ((q + 0.5) * ry) * rx + my + mx.
TEST(CpuKernels, DequantRowIsTheReferenceFormula) {
  std::mt19937 g(6);
  TestMatrix t = make_matrix(g, 9, 33);
  const Matrix m = t.as(Matrix::Kind::U8);
  std::vector<float> out(33);
  for (int j = 0; j < 9; ++j) {
    dequant_row_u8(m, j, out.data());
    for (int i = 0; i < 33; ++i) {
      const float want = ((float(t.q[size_t(j) * 33 + i]) + 0.5f) * t.ry[i]) * t.rx[j] + t.my[i] + t.mx[j];
      ASSERT_EQ(out[i], want) << j << "," << i;
    }
  }
}

// ---------------------------------------------------------------------------
// Element-wise functions (elementwise.h): the vectorised clones against the
// formulas written out in scalar code with the SDK's bf16 rounding.

#include "elementwise.h"

namespace {
float rbf(float v) { return bf16_to_f32(f32_to_bf16(v)); }
}  // namespace

// Every chunk runs exactly once, for any pool size and chunk count, over many
// back-to-back jobs (the generation handshake between jobs).
TEST(CpuThreadPool, EveryChunkExactlyOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (int job = 0; job < 2000; ++job) {
      const int n = 1 + job % 37;
      std::vector<std::atomic<int>> hits(n);
      std::atomic<int> bad_thread{0};
      pool.for_chunks(n, [&](int c, int t) {
        hits[c].fetch_add(1);
        if (t < 0 || t >= threads) bad_thread.fetch_add(1);
      });
      for (int c = 0; c < n; ++c) ASSERT_EQ(hits[c].load(), 1) << "threads " << threads << " job " << job << " chunk " << c;
      ASSERT_EQ(bad_thread.load(), 0);
    }
  }
}

// Jobs too large for 16-bit range cursors group chunks into claim units; every
// chunk still runs once.
TEST(CpuThreadPool, LargeJobsRunEveryChunkOnce) {
  for (int threads : {2, 3}) {
    ThreadPool pool(threads);
    for (int n : {65535, 65536, 131071, 131072, 200003}) {
      std::vector<std::atomic<uint8_t>> hits(static_cast<size_t>(n));
      pool.for_chunks(n, [&](int c, int) { hits[size_t(c)].fetch_add(1, std::memory_order_relaxed); });
      for (int c = 0; c < n; ++c) ASSERT_EQ(hits[size_t(c)].load(), 1) << "threads " << threads << " n " << n << " chunk " << c;
    }
  }
}

// Each thread starts on its own contiguous range (thread t of P: chunks
// [t n/P, (t+1) n/P)) and a thread that is held up loses its chunks to the
// others: here worker 1 blocks in its first chunk until the caller has run
// every other chunk, which the caller can only do by stealing worker 1's.
TEST(CpuThreadPool, ThreadsStartOnOwnRangeAndStealFromHeldUpThreads) {
  ThreadPool pool(2);
  constexpr int n = 64;
  int participated = 0;
  for (int job = 0; job < 50; ++job) {
    std::vector<int> by(n, -1);
    std::atomic<int> done{0};
    std::atomic<int> first_of_worker{-1};
    pool.for_chunks(n, [&](int c, int t) {
      by[size_t(c)] = t;
      if (t == 0 && c == 0) {  // give worker 1 up to 100 ms to wake and take its first chunk
        const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
        while (first_of_worker.load() < 0 && std::chrono::steady_clock::now() < until) std::this_thread::yield();
      }
      if (t == 1) {
        int expected = -1;
        if (first_of_worker.compare_exchange_strong(expected, c))
          while (done.load() < n - 1) std::this_thread::yield();  // hold worker 1 here
      }
      done.fetch_add(1);
    });
    EXPECT_EQ(by[0], 0) << "the caller starts at the front of its own range";
    const int w = first_of_worker.load();
    if (w < 0) continue;  // worker 1 woke only after the caller had done everything
    ++participated;
    EXPECT_GE(w, n / 2) << "worker 1 starts in its own range";
    int stolen = 0;
    for (int c = n / 2; c < n; ++c) stolen += by[size_t(c)] == 0;
    EXPECT_EQ(stolen, n / 2 - 1) << "the caller took every chunk of worker 1's range but the one it held";
  }
  EXPECT_GT(participated, 0) << "worker 1 never took part (it spins between jobs, so it should)";
}

TEST(CpuKernels, Int8InputSumsSameBitsOnEveryPath) {
  std::mt19937 g(11);
  for (int n : {1, 5, 7, 8, 9, 16, 63, 64, 65, 1000, 1024, 4096, 4099}) {
    auto x = randn(g, size_t(n)), ry = randn(g, size_t(n), 0.01f), my = randn(g, size_t(n), 0.1f);
    std::vector<float> xs_ref(size_t(n), NAN);
    const InputSums ref = int8_input_sums(Isa::Scalar, x.data(), ry.data(), my.data(), n, xs_ref.data());
    double sx = 0, sxs = 0, sxmy = 0, abs_x = 0, abs_xs = 0, abs_xmy = 0;
    for (int i = 0; i < n; ++i) {
      ASSERT_EQ(xs_ref[size_t(i)], x[size_t(i)] * ry[size_t(i)]);
      sx += x[size_t(i)], abs_x += std::fabs(x[size_t(i)]);
      sxs += xs_ref[size_t(i)], abs_xs += std::fabs(xs_ref[size_t(i)]);
      sxmy += double(x[size_t(i)]) * my[size_t(i)], abs_xmy += std::fabs(double(x[size_t(i)]) * my[size_t(i)]);
    }
    // Double sums of fp32 inputs: n 2^-53 relative to the sum of magnitudes.
    EXPECT_NEAR(ref.sx, sx, n * 0x1p-52 * abs_x);
    EXPECT_NEAR(ref.sxs, sxs, n * 0x1p-52 * abs_xs);
    EXPECT_NEAR(ref.sxmy, sxmy, n * 0x1p-52 * abs_xmy);
    for (Isa isa : {Isa::Avx2, Isa::Avx512, Isa::Avx512Bf16}) {
      if (!isa_supported(isa)) continue;
      std::vector<float> xs(size_t(n) + 16, 42.f);
      const InputSums got = int8_input_sums(isa, x.data(), ry.data(), my.data(), n, xs.data());
      EXPECT_EQ(got.sx, ref.sx) << isa_name(isa) << " n=" << n;
      EXPECT_EQ(got.sxs, ref.sxs) << isa_name(isa) << " n=" << n;
      EXPECT_EQ(got.sxmy, ref.sxmy) << isa_name(isa) << " n=" << n;
      for (int i = 0; i < n; ++i) ASSERT_EQ(xs[size_t(i)], xs_ref[size_t(i)]);
      for (int i = n; i < n + 16; ++i) ASSERT_EQ(xs[size_t(i)], 42.f) << "wrote past the end";
    }
  }
}

// The double-sum LoRA rows: the AVX-512 kernel follows the portable loop's
// order exactly (same bits), and both are the correctly rounded sum up to the
// double summation error.
TEST(CpuKernels, F64RowsSameBitsOnEveryPath) {
  std::mt19937 g(13);
  for (auto kind : {Matrix::Kind::F32, Matrix::Kind::BF16})
    for (int cols : {1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 160, 1023, 1024, 1029}) {
      const int rows = 37;
      const TestMatrix t = make_matrix(g, rows, cols);
      const std::vector<float> x = randn(g, size_t(cols));
      const Matrix W = t.as(kind);
      std::vector<float> ref(rows, NAN);
      f64_rows(Isa::Scalar, W, x.data(), ref.data(), 0, rows);
      for (int j = 0; j < rows; ++j) {
        const std::vector<double> w = t.row(kind, j);
        long double want = 0, mag = 0;
        for (int i = 0; i < cols; ++i) {
          const long double p = (long double)w[size_t(i)] * x[size_t(i)];
          want += p, mag += std::fabs((double)p);
        }
        ASSERT_NEAR(ref[size_t(j)], (double)want, std::fabs((double)want) * 0x1p-24 + (double)mag * cols * 0x1p-52) << cols << " row " << j;
      }
      for (Isa isa : {Isa::Avx2, Isa::Avx512, Isa::Avx512Bf16}) {
        if (!isa_supported(isa)) continue;
        std::vector<float> y(rows + 1, 42.f);
        f64_rows(isa, W, x.data(), y.data(), 0, rows);
        for (int j = 0; j < rows; ++j) ASSERT_EQ(y[size_t(j)], ref[size_t(j)]) << isa_name(isa) << " cols " << cols << " row " << j;
        ASSERT_EQ(y[size_t(rows)], 42.f);
      }
    }
}

// run_f64 runs several products as one job: every output equals f64_rows's,
// for 1-3 threads and T = 1 or 3.
TEST(CpuKernels, RunF64BatchEqualsRows) {
  std::mt19937 g(17);
  const int C = 96;
  const int D[3] = {8, 40, 3};
  std::vector<TestMatrix> w;
  std::vector<Matrix> m;
  for (int k = 0; k < 3; ++k) w.push_back(make_matrix(g, k == 1 ? C : D[k], k == 1 ? D[k] : C));
  for (int k = 0; k < 3; ++k) m.push_back(w[size_t(k)].as(k == 2 ? Matrix::Kind::BF16 : Matrix::Kind::F32));  // both weight types
  for (int T : {1, 3})
    for (int threads : {1, 2, 3}) {
      ThreadPool pool(threads);
      std::vector<std::vector<float>> X, Y, want;
      for (int k = 0; k < 3; ++k) {
        X.push_back(randn(g, size_t(T) * m[size_t(k)].cols));
        Y.emplace_back(size_t(T) * m[size_t(k)].rows, NAN);
        want.emplace_back(size_t(T) * m[size_t(k)].rows);
        for (int t = 0; t < T; ++t)
          f64_rows(Isa::Scalar, m[size_t(k)], X[size_t(k)].data() + size_t(t) * m[size_t(k)].cols,
                   want[size_t(k)].data() + size_t(t) * m[size_t(k)].rows, 0, m[size_t(k)].rows);
      }
      StageProducts products;
      products.reserve(C, threads);  // T > 1 then uses the widened tiles on AVX-512
      products.run_f64(detect_isa(),
                       {{&m[0], X[0].data(), Y[0].data()}, {&m[1], X[1].data(), Y[1].data()}, {&m[2], X[2].data(), Y[2].data()}}, T,
                       pool);
      for (int k = 0; k < 3; ++k) EXPECT_EQ(Y[size_t(k)], want[size_t(k)]) << "product " << k << " T " << T << " threads " << threads;
    }
}

TEST(CpuElementwise, ExpWithinTwoUlpAndLimits) {
  for (float x = -87.0f; x <= 88.7f; x += 0.01237f) {
    const double want = std::exp(double(x));
    ASSERT_NEAR(ew::exp_approx(x), want, 2.5 * std::ldexp(want, -23)) << x;
  }
  EXPECT_EQ(ew::exp_approx(-1e30f), 0.0f);  // p starts at -1e30: e^{p-q} must be 0
  EXPECT_EQ(ew::exp_approx(-200.f), 0.0f);
  EXPECT_EQ(ew::exp_approx(0.0f), 1.0f);
  EXPECT_TRUE(std::isinf(ew::exp_approx(100.f)));
  EXPECT_TRUE(std::isnan(ew::exp_approx(NAN)));
}

TEST(CpuElementwise, ClonesMatchScalarFormulas) {
  std::mt19937 g(7);
  for (int n : {1, 7, 16, 17, 33, 100, 1029}) {
    for (bool bf : {false, true}) {
      SCOPED_TRACE("n=" + std::to_string(n) + (bf ? " bf16" : " fp32"));
      auto R = [&](float v) { return bf ? rbf(v) : v; };
      auto a = randn(g, n), b = randn(g, n), c = randn(g, n), mu(randn(g, n)), omu(mu);
      for (int i = 0; i < n; ++i) a[i] = R(a[i]), b[i] = R(b[i]), mu[i] = R(mu[i]), omu[i] = R(1.f - mu[i]);
      std::vector<float> out(n);
      ew::token_shift_mix(a.data(), b.data(), mu.data(), omu.data(), out.data(), n, bf);
      for (int i = 0; i < n; ++i) ASSERT_EQ(out[i], R(R(a[i] * mu[i]) + R(b[i] * omu[i]))) << i;
      std::vector<float> v = c;
      ew::sigmoid(v.data(), n, bf);
      for (int i = 0; i < n; ++i) {
        const float want = R(float(1.0 / (1.0 + std::exp(-double(R(c[i]))))));
        ASSERT_NEAR(v[i], want, bf ? std::ldexp(std::abs(want), -8) : 3e-7) << i;
      }
      v = c;
      ew::relu_square(v.data(), n, bf);
      for (int i = 0; i < n; ++i) ASSERT_EQ(v[i], R(std::max(R(c[i]), 0.f) * std::max(R(c[i]), 0.f))) << i;
      v = a;
      ew::add_residual(v.data(), c.data(), n, bf);
      for (int i = 0; i < n; ++i) ASSERT_EQ(v[i], R(a[i] + R(c[i]))) << i;
      v = a;
      ew::add_gated_residual(v.data(), b.data(), c.data(), n, bf);
      for (int i = 0; i < n; ++i) ASSERT_EQ(v[i], R(a[i] + R(b[i] * R(c[i])))) << i;
      v = a;
      ew::halve(v.data(), n, bf);
      for (int i = 0; i < n; ++i) ASSERT_EQ(v[i], R(a[i] * 0.5f)) << i;
      // LayerNorm against double.
      std::vector<float> w = randn(g, n), bias = randn(g, n), y(n);
      ew::layer_norm(c.data(), w.data(), bias.data(), y.data(), n, bf);
      double mean = 0, var = 0;
      for (float x : c) mean += x;
      mean /= n;
      for (float x : c) var += (x - mean) * (x - mean);
      var /= n;
      for (int i = 0; i < n; ++i) {
        const float want = R(float((c[i] - mean) / std::sqrt(var + 1e-5) * w[i] + bias[i]));
        ASSERT_NEAR(y[i], want, bf ? std::ldexp(std::abs(want), -8) : 1e-5 * (1 + std::abs(want))) << i;
      }
    }
  }
}

// The WKV step against the equations in double, from the initial state (p =
// -1e30: the first token gives wkv = v, a = v, b = 1, p = k) and after it.
TEST(CpuElementwise, WkvStepIsTheRecurrence) {
  std::mt19937 g(8);
  for (int n : {1, 5, 16, 19, 64, 130}) {
    std::vector<float> u = randn(g, n), w(n), a(n, 0.f), b(n, 0.f), p(n, -1e30f);
    for (auto& x : w) x = -std::exp(std::normal_distribution<float>(0.f, 1.f)(g));
    std::vector<double> da(n, 0.0), db(n, 0.0), dp(n, -1e30);
    for (int step = 0; step < 6; ++step) {
      auto k = randn(g, n, 3.f), v = randn(g, n), r = randn(g, n);
      std::vector<float> out(n);
      ew::wkv_step(k.data(), v.data(), r.data(), u.data(), w.data(), a.data(), b.data(), p.data(), out.data(), n, false);
      for (int i = 0; i < n; ++i) {
        const double ww = double(u[i]) + k[i], q = std::max(dp[i], ww);
        const double e1 = std::exp(dp[i] - q), e2 = std::exp(ww - q);
        const double wkv = (e1 * da[i] + e2 * v[i]) / (e1 * db[i] + e2);
        const double w2 = w[i] + dp[i], q2 = std::max(w2, double(k[i]));
        const double f1 = std::exp(w2 - q2), f2 = std::exp(k[i] - q2);
        da[i] = f1 * da[i] + f2 * v[i];
        db[i] = f1 * db[i] + f2;
        dp[i] = q2;
        ASSERT_NEAR(out[i], r[i] * wkv, 1e-5 * (1 + std::abs(r[i] * wkv))) << "step " << step << " ch " << i;
        ASSERT_NEAR(a[i], da[i], 1e-5 * (1 + std::abs(da[i])));
        ASSERT_NEAR(b[i], db[i], 1e-5 * (1 + std::abs(db[i])));
        ASSERT_NEAR(p[i], dp[i], 1e-5 * (1 + std::abs(dp[i])));
      }
      if (step == 0) {
        for (int i = 0; i < n; ++i) ASSERT_EQ(b[i], 1.0f) << "first token: b = 1";
      }
    }
  }
}

// gemv_batch runs several products as one pool job: every output must be the
// bit-for-bit value of the same product run alone (rows are never split and
// each product keeps its own scratch), for every kind mix, ISA and thread
// count — including the int8 VNNI path, which needs the digit planes.
TEST(CpuKernels, GemvBatchEqualsSeparateProducts) {
  std::mt19937 g(11);
  const std::pair<int, int> shapes[] = {{300, 96}, {7, 2051}, {1000, 64}};
  const Matrix::Kind mixes[][3] = {{Matrix::Kind::U8, Matrix::Kind::U8, Matrix::Kind::U8},
                                   {Matrix::Kind::F32, Matrix::Kind::BF16, Matrix::Kind::U8},
                                   {Matrix::Kind::BF16, Matrix::Kind::BF16, Matrix::Kind::F32}};
  std::vector<TestMatrix> mats;
  std::vector<std::vector<float>> xs_in;
  for (auto [rows, cols] : shapes) {
    mats.push_back(make_matrix(g, rows, cols));
    std::vector<float> x = randn(g, cols);
    for (float& v : x) v = bf16_round(v);
    xs_in.push_back(x);
  }
  struct Buf {
    std::vector<float> xs;
    std::vector<uint16_t> xb;
    std::vector<int8_t> digits;
    GemvScratch view() { return GemvScratch{xs.data(), xb.data(), digits.data()}; }
  };
  std::vector<Buf> bufs(3);
  for (int i = 0; i < 3; ++i) {
    bufs[i].xs.assign(size_t(shapes[i].second), 0.f);
    bufs[i].xb.assign(size_t(shapes[i].second) + 64, 0);
    bufs[i].digits.assign(vnni_digits_bytes(shapes[i].second), 0);
  }
  for (const auto& mix : mixes) {
    Matrix m[3];
    for (int i = 0; i < 3; ++i) m[i] = mats[i].as(mix[i]);
    for (Isa isa : supported_isas()) {
      for (int threads : {1, 2, 3}) {
        ThreadPool pool(threads);
        std::vector<std::vector<float>> alone(3), batched(3);
        GemvScratch views[3];
        GemvTask tasks[3];
        for (int i = 0; i < 3; ++i) {
          alone[i].assign(size_t(m[i].rows), 0.f);
          batched[i].assign(size_t(m[i].rows), -1.f);
          GemvScratch s = bufs[i].view();
          gemv(isa, m[i], xs_in[i].data(), alone[i].data(), s, pool);
          views[i] = bufs[i].view();
          tasks[i] = GemvTask{&m[i], xs_in[i].data(), batched[i].data(), &views[i]};
        }
        for (int n = 1; n <= 3; ++n) {
          gemv_batch(isa, tasks, n, pool);
          for (int i = 0; i < n; ++i)
            EXPECT_EQ(batched[i], alone[i]) << isa_name(isa) << " threads " << threads << " batch of " << n << " product " << i;
        }
      }
    }
  }
  ThreadPool pool(1);
  EXPECT_THROW(gemv_batch(Isa::Scalar, nullptr, 0, pool), corvid::Error);
}
