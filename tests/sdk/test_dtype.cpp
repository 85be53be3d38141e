// The SDK's software fp16/bf16 conversions against independent references:
// the CPU's F16C instructions (fp16) and exact double arithmetic (bf16).
#include <gtest/gtest.h>
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <random>

#include "corvid/sdk/dtype.h"

using namespace corvid;

static bool cpu_has_f16c() { return __builtin_cpu_supports("f16c"); }

TEST(DType, F16ToF32MatchesF16cForAllBitPatterns) {
  if (!cpu_has_f16c()) GTEST_SKIP() << "CPU lacks F16C";
  for (uint32_t h = 0; h < 65536; ++h) {
    float hw = _cvtsh_ss(uint16_t(h));
    float sw = f16_to_f32(uint16_t(h));
    if (std::isnan(hw)) {
      EXPECT_TRUE(std::isnan(sw)) << h;
    } else {
      uint32_t a, b;
      std::memcpy(&a, &hw, 4);
      std::memcpy(&b, &sw, 4);
      ASSERT_EQ(a, b) << "half bits " << h;
    }
  }
}

TEST(DType, F32ToF16RoundsToNearestEvenLikeF16c) {
  if (!cpu_has_f16c()) GTEST_SKIP() << "CPU lacks F16C";
  std::mt19937 rng(1234);
  std::uniform_int_distribution<uint32_t> bits;
  int checked = 0;
  for (int i = 0; i < 2000000; ++i) {
    uint32_t u = bits(rng);
    // Focus half of the samples on the fp16 range (|x| < 2^17) incl. subnormals.
    if (i & 1) u = (u & 0x80000000u) | (0x33000000u + (u % (0x48000000u - 0x33000000u)));
    float f;
    std::memcpy(&f, &u, 4);
    if (std::isnan(f)) continue;
    uint16_t hw = _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
    ASSERT_EQ(hw, f32_to_f16(f)) << "float bits " << std::hex << u;
    ++checked;
  }
  EXPECT_GT(checked, 1900000);
  // Boundaries: largest finite, overflow to inf, smallest subnormal, half of it.
  EXPECT_EQ(f32_to_f16(65504.f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.f), 0x7c00);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.f, -24)), 0x0001);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.f, -25)), 0x0000);
  EXPECT_EQ(f32_to_f16(-0.f), 0x8000);
}

TEST(DType, Bf16RoundTripAndRounding) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = bf16_to_f32(uint16_t(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_bf16(f), h);
  }
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> d(-1e4, 1e4);
  for (int i = 0; i < 200000; ++i) {
    float f = float(d(rng));
    float r = bf16_to_f32(f32_to_bf16(f));
    // Independent check: r is a bf16 value and no other bf16 value is closer.
    uint32_t u;
    std::memcpy(&u, &r, 4);
    ASSERT_EQ(u & 0xffffu, 0u);
    uint32_t up = u + 0x10000u, dn = u - 0x10000u;
    float fu, fd;
    std::memcpy(&fu, &up, 4);
    std::memcpy(&fd, &dn, 4);
    double e = std::fabs(double(r) - f);
    ASSERT_LE(e, std::fabs(double(fu) - f));
    ASSERT_LE(e, std::fabs(double(fd) - f));
  }
}

TEST(DType, PrecisionNames) {
  for (const char* n : {"fp32", "fp16", "bf16", "fp32i8", "fp16i8", "bf16i8"}) {
    auto p = precision_from_name(n);
    ASSERT_TRUE(p.has_value()) << n;
    EXPECT_EQ(precision_name(*p), n);
  }
  EXPECT_EQ(precision_from_name("fp16i8")->atype, DType::F16);
  EXPECT_EQ(precision_from_name("fp16i8")->wtype, DType::U8);
  EXPECT_FALSE(precision_from_name("fp8").has_value());
  EXPECT_FALSE(precision_from_name("fp16i4").has_value());
  EXPECT_FALSE(precision_from_name("").has_value());
}
