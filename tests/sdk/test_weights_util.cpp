// weights_util: strided reads, rescale exponents, and the int8 scheme's
// invariants (the bit-exact comparison with torch is in the fp32i8 logits tests).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "corvid/sdk/weights_util.h"

using namespace corvid;

TEST(WeightsUtil, TransposedStridedRead) {
  // A 3x4 matrix stored transposed (strides 1, 3): element [r][c] = data[c*3 + r].
  float data[12];
  for (int i = 0; i < 12; ++i) data[i] = float(i);
  TensorView v;
  v.data = data;
  v.dtype = DType::F32;
  v.ndim = 2;
  v.shape[0] = 3; v.shape[1] = 4;
  v.strides[0] = 1; v.strides[1] = 3;
  EXPECT_FALSE(v.is_contiguous());
  float out[12];
  wutil::to_f32(v, out, false);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) EXPECT_EQ(out[r * 4 + c], data[c * 3 + r]);
  wutil::to_f32(v, out, true);  // (4, 3): out[c][r] = v[r][c]
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) EXPECT_EQ(out[c * 3 + r], data[c * 3 + r]);
}

TEST(WeightsUtil, RescaleShift) {
  ModelHParams hp;
  hp.rescale_layer = 6;
  EXPECT_EQ(wutil::rescale_shift(hp, "blocks.0.att.output.weight"), 0);
  EXPECT_EQ(wutil::rescale_shift(hp, "blocks.5.ffn.value.weight"), 0);
  EXPECT_EQ(wutil::rescale_shift(hp, "blocks.6.ffn.value.weight"), 1);
  EXPECT_EQ(wutil::rescale_shift(hp, "blocks.13.att.output.weight"), 2);
  EXPECT_EQ(wutil::rescale_shift(hp, "blocks.13.att.key.weight"), 0);
  EXPECT_EQ(wutil::rescale_shift(hp, "head.weight"), 0);
  hp.rescale_layer = 0;
  EXPECT_EQ(wutil::rescale_shift(hp, "blocks.13.att.output.weight"), 0);
  EXPECT_EQ(wutil::block_index("blocks.12.att.key.weight"), 12);
  EXPECT_EQ(wutil::block_index("ln_out.weight"), -1);
  EXPECT_EQ(wutil::block_index("blocks.x"), -1);
}

// Dequantised values stay within one bucket of the original, for both shape
// orders (n > m and n <= m), and constant rows/columns come back exactly.
TEST(WeightsUtil, QuantizeU8Reconstructs) {
  std::mt19937 rng(42);
  std::normal_distribution<float> nd(0.f, 0.05f);
  for (auto [n, m] : {std::pair{37, 11}, std::pair{11, 37}, std::pair{16, 16}}) {
    std::vector<float> W(size_t(n * m));
    for (float& x : W) x = nd(rng);
    for (int c = 0; c < m; ++c) W[size_t(3 * m + c)] = 0.25f;  // constant row 3 (rows still vary per column)
    std::vector<float> orig = W;
    std::vector<uint8_t> q(W.size());
    std::vector<float> mx(m), rx(m), my(n), ry(n);
    wutil::quantize_u8(W.data(), n, m, q.data(), mx.data(), rx.data(), my.data(), ry.data());
    for (int r = 0; r < n; ++r)
      for (int c = 0; c < m; ++c) {
        float deq = (float(q[size_t(r * m + c)]) + 0.5f) * ry[r] * rx[c] + my[r] + mx[c];
        float bucket = 16.f * ry[r] * 16.f * rx[c] / 256.f;
        EXPECT_NEAR(deq, orig[size_t(r * m + c)], bucket * 0.5f + 1e-6f) << n << "x" << m << " at " << r << "," << c;
        EXPECT_FALSE(std::isnan(deq));
      }
  }
  // A fully constant matrix: the [quirk] guard keeps it exact and NaN-free.
  std::vector<float> W(6, 0.5f);
  std::vector<uint8_t> q(6);
  float mx[3], rx[3], my[2], ry[2];
  wutil::quantize_u8(W.data(), 2, 3, q.data(), mx, rx, my, ry);
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 3; ++c) EXPECT_FLOAT_EQ((q[r * 3 + c] + 0.5f) * ry[r] * rx[c] + my[r] + mx[c], 0.5f);
}
