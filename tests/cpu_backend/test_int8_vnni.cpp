// The int8 VNNI decode kernel (kernels.cpp): codes times x*ry in 31-bit fixed
// point, exact integer sums, one rounding to fp32.
//
// Tolerance: the only error before the final rounding is the fixed-point
// rounding of each xs_i, at most 2^-31 max|xs| (the kernel scales max|xs| to
// just under 2^30), so
//   |got - exact| <= 2^-31 max|xs| sum_i q_i + 2^-24 |exact|   (+ 1e-37).
// We allow twice that. A skipped or repeated element, a wrong digit or a wrong
// shift is off by at least one product q_i xs_i, many orders above the bound
// for these random inputs (checked: the bound is also below the fp32 kernel's
// n 2^-24 sum|q xs| bound at every size here).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels.h"
#include "thread_pool.h"

using namespace corvid::cpu;

namespace {

bool have_vnni() { return isa_supported(Isa::Avx512Bf16); }

struct Case {
  std::vector<uint8_t> q;
  std::vector<float> xs;
};

Case make_case(std::mt19937& g, int n, float scale) {
  Case c;
  std::uniform_int_distribution<int> code(0, 255);
  std::normal_distribution<float> d(0.f, scale);
  c.q.resize(n);
  c.xs.resize(n);
  for (auto& v : c.q) v = uint8_t(code(g));
  for (auto& v : c.xs) v = d(g);
  return c;
}

void expect_close(const Case& c, float got, const char* what) {
  const int n = int(c.q.size());
  double exact = 0, max_xs = 0, sum_q = 0, abs_sum = 0;
  for (int i = 0; i < n; ++i) {
    exact += double(c.q[i]) * c.xs[i];
    max_xs = std::max(max_xs, double(std::abs(c.xs[i])));
    sum_q += c.q[i];
    abs_sum += std::abs(double(c.q[i]) * c.xs[i]);
  }
  const double bound = 2 * (std::ldexp(max_xs * sum_q, -31) + std::ldexp(std::abs(exact), -24)) + 1e-37;
  ASSERT_NEAR(got, exact, bound) << what << " n=" << n;
  // Never worse than what the fp32 kernels are allowed (tests/cpu_backend/test_kernels.cpp).
  ASSERT_LE(std::abs(got - exact), 4.0 * n * std::ldexp(1.0, -24) * abs_sum + 1e-30) << what << " n=" << n;
}

}  // namespace

TEST(CpuInt8Vnni, DotEverySizeAgainstExact) {
  if (!have_vnni()) GTEST_SKIP() << "CPU lacks AVX-512 VNNI/BF16";
  std::mt19937 g(11);
  std::vector<int> sizes;
  for (int n = 1; n <= 130; ++n) sizes.push_back(n);
  for (int n : {191, 192, 193, 255, 256, 257, 1000, 1024, 2051, 4096, 8192, 32768}) sizes.push_back(n);
  for (int n : sizes) {
    const Case c = make_case(g, n, 0.05f);
    expect_close(c, dot_u8_vnni(c.q.data(), c.xs.data(), n), "random");
  }
}

TEST(CpuInt8Vnni, ExtremeCodesAndScales) {
  if (!have_vnni()) GTEST_SKIP() << "CPU lacks AVX-512 VNNI/BF16";
  std::mt19937 g(12);
  for (float scale : {1e-30f, 1e-6f, 1.f, 1e6f, 1e30f}) {
    for (int n : {1, 63, 64, 65, 777}) {
      Case c = make_case(g, n, scale);
      expect_close(c, dot_u8_vnni(c.q.data(), c.xs.data(), n), "scaled");
      for (auto& v : c.q) v = 255;  // the largest codes: int32 digit sums at their widest
      expect_close(c, dot_u8_vnni(c.q.data(), c.xs.data(), n), "all 255");
      for (auto& v : c.xs) v = std::abs(v);  // no cancellation
      expect_close(c, dot_u8_vnni(c.q.data(), c.xs.data(), n), "positive");
    }
  }
  // One large value among small ones: the small ones keep 2^-31 of the max.
  Case c = make_case(g, 300, 1e-3f);
  c.xs[17] = 1000.f;
  expect_close(c, dot_u8_vnni(c.q.data(), c.xs.data(), 300), "one large");
  // All zero.
  std::fill(c.xs.begin(), c.xs.end(), 0.f);
  EXPECT_EQ(dot_u8_vnni(c.q.data(), c.xs.data(), 300), 0.f);
}

TEST(CpuInt8Vnni, NonFiniteInputPropagatesLikeTheFp32Kernel) {
  if (!have_vnni()) GTEST_SKIP() << "CPU lacks AVX-512 VNNI/BF16";
  std::mt19937 g(13);
  Case c = make_case(g, 100, 1.f);
  c.xs[42] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(std::isnan(dot_u8_vnni(c.q.data(), c.xs.data(), 100)));
  c.xs[42] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(std::isfinite(dot_u8_vnni(c.q.data(), c.xs.data(), 100)));
}

// gemv on an int8 matrix with digit planes (the VNNI kernel) against the
// reference's dequantised product in double, and against the fp32 kernel.
TEST(CpuInt8Vnni, GemvMatchesDequantisedProduct) {
  if (!have_vnni()) GTEST_SKIP() << "CPU lacks AVX-512 VNNI/BF16";
  std::mt19937 g(14);
  std::uniform_int_distribution<int> code(0, 255);
  std::uniform_real_distribution<float> u(0.5f, 1.5f), o(-0.1f, 0.1f);
  std::normal_distribution<float> nx(0.f, 1.f);
  for (auto [rows, cols] : {std::pair{5, 1}, std::pair{37, 100}, std::pair{129, 1024}, std::pair{64, 4100}}) {
    std::vector<uint8_t> q(size_t(rows) * cols);
    std::vector<float> mx(rows), rx(rows), my(cols), ry(cols), x(cols);
    for (auto& v : q) v = uint8_t(code(g));
    for (auto& v : mx) v = o(g);
    for (auto& v : rx) v = u(g) / 256;
    for (auto& v : my) v = o(g);
    for (auto& v : ry) v = u(g) / 16;
    for (auto& v : x) v = nx(g);
    Matrix m;
    m.rows = rows;
    m.cols = cols;
    m.kind = Matrix::Kind::U8;
    m.q = q.data();
    m.mx = mx.data();
    m.rx = rx.data();
    m.my = my.data();
    m.ry = ry.data();
    std::vector<float> xs(cols), y_vnni(rows), y_fp32(rows), y_vnni2(rows);
    std::vector<uint16_t> xb(cols + 64);
    std::vector<int8_t> digits(vnni_digits_bytes(cols));
    ThreadPool one(1), two(2);
    GemvScratch with{xs.data(), xb.data(), digits.data()}, without{xs.data(), xb.data(), nullptr};
    gemv(Isa::Avx512Bf16, m, x.data(), y_vnni.data(), with, one);
    gemv(Isa::Avx512Bf16, m, x.data(), y_fp32.data(), without, one);
    gemv(Isa::Avx512Bf16, m, x.data(), y_vnni2.data(), with, two);
    EXPECT_EQ(y_vnni, y_vnni2) << "thread count changed a result";
    for (int j = 0; j < rows; ++j) {
      double want = 0, abs_sum = 0;
      for (int i = 0; i < cols; ++i) {
        const double w = (double(q[size_t(j) * cols + i]) + 0.5) * ry[i] * rx[j] + my[i] + mx[j];
        want += w * x[i];
        abs_sum += std::abs(w * x[i]);
      }
      // Same allowance as the fp32 int8 kernel in test_kernels.cpp.
      const double tol = 3 * 4.0 * cols * std::ldexp(1.0, -24) * (abs_sum + std::abs(want)) + 1e-6 * abs_sum;
      ASSERT_NEAR(y_vnni[j], want, tol) << rows << "x" << cols << " row " << j;
      ASSERT_NEAR(y_vnni[j], y_fp32[j], tol) << rows << "x" << cols << " row " << j;
    }
  }
}
