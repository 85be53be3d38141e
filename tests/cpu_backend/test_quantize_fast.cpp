// quantize_fast (the cpu_onednn load path) against the SDK's readable reference
// wutil::quantize_u8 (rwkv-reference §2.6), bit for bit: codes, mx, rx, my, ry,
// also after rounding to each activation type, over many shapes (n > m, n < m,
// n == m, odd sizes), constant rows/columns (the zero-range guard), exact
// zeros of both signs (the tie rule of the min/max folds), extreme magnitudes,
// every ISA this CPU runs and 1..3 threads. The reference is the SDK's
// straightforward scalar transcription of the math, independent of the fast
// path's reordering, layout, vectorisation and threading.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "corvid/sdk/dtype.h"
#include "corvid/sdk/weights_util.h"
#include "kernels.h"
#include "quantize_fast.h"

using namespace corvid;
using corvid::cpu::QuantIsa;

namespace {

std::vector<QuantIsa> isas_here() {
  std::vector<QuantIsa> v{QuantIsa::Default};
  if (cpu::isa_supported(cpu::Isa::Avx2)) v.push_back(QuantIsa::Avx2);
  if (cpu::isa_supported(cpu::Isa::Avx512)) v.push_back(QuantIsa::Avx512);
  return v;
}

const char* isa_str(QuantIsa i) { return i == QuantIsa::Avx512 ? "avx512" : i == QuantIsa::Avx2 ? "avx2" : "default"; }

bool same_bits(const float* a, const float* b, size_t n) { return std::memcmp(a, b, n * 4) == 0; }

// Kinds of matrices: value distributions that stress different parts of the scheme.
enum class Kind { Normal, SmallInts, NonNegZeros, ConstRows, ConstCols, Extreme, Tiny, AllConst };

// (out, in) matrix, R x C.
std::vector<float> make(Kind k, int64_t R, int64_t C, std::mt19937& g) {
  std::vector<float> w(size_t(R * C));
  std::normal_distribution<float> nd(0.f, 0.05f);
  std::uniform_int_distribution<int> si(-3, 3);
  std::uniform_real_distribution<float> ex(-30.f, 30.f);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c) {
      float& v = w[size_t(r * C + c)];
      switch (k) {
        case Kind::Normal: v = bf16_to_f32(f32_to_bf16(nd(g))); break;
        // Many exact zeros, and negative zeros: the ±0 tie of the min/max folds.
        case Kind::SmallInts: { int x = si(g); v = x == 0 ? ((g() & 1) ? -0.f : 0.f) : float(x); break; }
        // Rows/columns whose min is a zero of either sign, zeros scattered after
        // positive values: which zero comes first decides the stored sign.
        case Kind::NonNegZeros: { int x = int(g() % 6); v = x >= 2 ? float(x - 1) : (x ? -0.f : 0.f); break; }
        case Kind::ConstRows: v = (r % 3 == 0) ? float(r) * 0.5f : nd(g); break;
        case Kind::ConstCols: v = (c % 4 == 1) ? -float(c) : nd(g); break;
        // Up to ±1e30 in magnitude (no overflow to inf in the differences).
        case Kind::Extreme: v = std::ldexp(ex(g) > 0 ? 1.f : -1.f, int(ex(g) * 3.3f)); break;
        case Kind::Tiny: v = nd(g) * 1e-36f; break;  // subnormal intermediates
        case Kind::AllConst: v = (g() & 1) ? 0.f : -0.f; break;
      }
    }
  return w;
}

struct Out {
  std::vector<uint8_t> q;
  std::vector<float> mx, rx, my, ry;
};

// The reference on the (in, out) transpose: n = C, m = R.
Out reference(const std::vector<float>& w_out_in, int64_t R, int64_t C) {
  std::vector<float> w(size_t(R * C));
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c) w[size_t(c * R + r)] = w_out_in[size_t(r * C + c)];
  Out o{std::vector<uint8_t>(size_t(R * C)), std::vector<float>(size_t(R)), std::vector<float>(size_t(R)),
        std::vector<float>(size_t(C)), std::vector<float>(size_t(C))};
  std::vector<uint8_t> q_in_out(size_t(R * C));
  wutil::quantize_u8(w.data(), C, R, q_in_out.data(), o.mx.data(), o.rx.data(), o.my.data(), o.ry.data());
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c) o.q[size_t(r * C + c)] = q_in_out[size_t(c * R + r)];
  return o;
}

Out fast(std::vector<float> w, int64_t R, int64_t C, int threads, QuantIsa isa) {
  Out o{std::vector<uint8_t>(size_t(R * C)), std::vector<float>(size_t(R)), std::vector<float>(size_t(R)),
        std::vector<float>(size_t(C)), std::vector<float>(size_t(C))};
  cpu::quantize_u8_out_in(w.data(), R, C, o.q.data(), o.mx.data(), o.rx.data(), o.my.data(), o.ry.data(), threads, isa);
  return o;
}

void expect_same(const Out& a, const Out& b) {
  ASSERT_EQ(a.q, b.q);
  EXPECT_TRUE(same_bits(a.mx.data(), b.mx.data(), a.mx.size()));
  EXPECT_TRUE(same_bits(a.rx.data(), b.rx.data(), a.rx.size()));
  EXPECT_TRUE(same_bits(a.my.data(), b.my.data(), a.my.size()));
  EXPECT_TRUE(same_bits(a.ry.data(), b.ry.data(), a.ry.size()));
  for (DType at : {DType::BF16, DType::F16}) {
    for (const auto* v : {&a.mx, &a.rx, &a.my, &a.ry}) {
      const auto& w = v == &a.mx ? b.mx : v == &a.rx ? b.rx : v == &a.my ? b.my : b.ry;
      for (size_t i = 0; i < v->size(); ++i) {
        const float x = wutil::round_to(at, (*v)[i]), y = wutil::round_to(at, w[i]);
        ASSERT_EQ(std::memcmp(&x, &y, 4), 0) << "activation type " << int(at) << " index " << i;
      }
    }
  }
}

}  // namespace

TEST(CpuQuantizeFast, BitIdenticalToReferenceOverShapesKindsIsasThreads) {
  std::mt19937 g(1234);
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {1, 1}, {1, 7}, {7, 1}, {2, 2}, {3, 5}, {5, 3}, {16, 16}, {17, 33}, {33, 17}, {31, 31},
      {64, 48}, {48, 64}, {100, 37}, {37, 100}, {129, 129}, {200, 70}, {70, 200}, {256, 96}, {96, 256}};
  const Kind kinds[] = {Kind::Normal,    Kind::SmallInts, Kind::NonNegZeros, Kind::ConstRows,
                        Kind::ConstCols, Kind::Extreme,   Kind::Tiny,        Kind::AllConst};
  int checked = 0;
  for (auto [R, C] : shapes)
    for (Kind k : kinds) {
      const std::vector<float> w = make(k, R, C, g);
      const Out ref = reference(w, R, C);
      for (QuantIsa isa : isas_here())
        for (int threads : {1, 2, 3}) {
          SCOPED_TRACE("R=" + std::to_string(R) + " C=" + std::to_string(C) + " kind=" + std::to_string(int(k)) +
                       " isa=" + isa_str(isa) + " threads=" + std::to_string(threads));
          expect_same(fast(w, R, C, threads, isa), ref);
          ++checked;
        }
    }
  EXPECT_GT(checked, 0);
}

// Large enough that every thread gets rows (load_threads gives >= 16 rows each),
// with many exact ±0 so the per-thread column folds meet zero ties across threads.
TEST(CpuQuantizeFast, ThreadedColumnFoldsKeepTheReferenceZeroTie) {
  std::mt19937 g(99);
  for (auto [R, C] : {std::pair<int64_t, int64_t>{96, 40}, {40, 96}, {150, 150}}) {
    const std::vector<float> w = make(Kind::NonNegZeros, R, C, g);
    const Out ref = reference(w, R, C);
    for (QuantIsa isa : isas_here())
      for (int threads : {1, 2, 4, 6}) {
        SCOPED_TRACE("R=" + std::to_string(R) + " isa=" + isa_str(isa) + " threads=" + std::to_string(threads));
        expect_same(fast(w, R, C, threads, isa), ref);
      }
  }
}

// The same after the RESCALE_LAYER division (both shifts the scheme sees: none and
// a power of two), as matrix_in_out_f32 does it for the reference.
TEST(CpuQuantizeFast, RescaledMatricesMatch) {
  std::mt19937 g(7);
  for (int shift : {0, 1, 3}) {
    const int64_t R = 40, C = 72;
    std::vector<float> w = make(Kind::Normal, R, C, g);
    const float f = std::ldexp(1.f, -shift);
    for (float& v : w) v *= f;
    const Out ref = reference(w, R, C);
    for (QuantIsa isa : isas_here()) expect_same(fast(w, R, C, 2, isa), ref);
  }
}

// matrix_to_f32_scaled == wutil::to_f32 then `v *= scale`, for each file dtype,
// contiguous and strided, several thread counts.
TEST(CpuQuantizeFast, MatrixToF32ScaledMatchesToF32) {
  std::mt19937 g(5);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int64_t R = 67, C = 45;
  std::vector<float> f32(size_t(R * C));
  std::vector<uint16_t> b16(size_t(R * C)), h16(size_t(R * C));
  for (size_t i = 0; i < f32.size(); ++i) {
    f32[i] = nd(g) * 1e-37f * float(i % 3) + nd(g);
    b16[i] = f32_to_bf16(f32[i]);
    h16[i] = f32_to_f16(f32[i]);
  }
  for (int strided = 0; strided < 2; ++strided)
    for (DType dt : {DType::F32, DType::BF16, DType::F16}) {
      TensorView t;
      t.data = dt == DType::F32 ? static_cast<const void*>(f32.data())
               : dt == DType::BF16 ? static_cast<const void*>(b16.data())
                                   : static_cast<const void*>(h16.data());
      t.dtype = dt;
      t.ndim = 2;
      t.shape[0] = R;
      t.shape[1] = C;
      t.strides[0] = strided ? 1 : C;  // strided: the same storage read as its transpose
      t.strides[1] = strided ? R : 1;
      for (float scale : {1.f, 0.5f, 0.125f}) {
        std::vector<float> ref(size_t(R * C));
        wutil::to_f32(t, ref.data());
        for (float& v : ref) v *= scale;
        for (int threads : {1, 2, 3}) {
          std::vector<float> got(size_t(R * C), 123.f);
          cpu::matrix_to_f32_scaled(t, got.data(), scale, threads);
          EXPECT_TRUE(same_bits(got.data(), ref.data(), got.size()))
              << "dtype " << int(dt) << " strided " << strided << " scale " << scale << " threads " << threads;
        }
      }
    }
}

// The threaded bf16 cast of the bf16 stages == f32_to_bf16 element by element,
// including ties-to-even, NaN and sizes around the chunking.
TEST(CpuQuantizeFast, CastToBf16MatchesScalar) {
  std::mt19937 g(11);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (int64_t n : {int64_t(1), int64_t(4095), int64_t(4096), int64_t(4097), int64_t(3 * 4096 + 5), int64_t(70001)}) {
    std::vector<float> src(static_cast<size_t>(n));
    for (auto& v : src) v = nd(g);
    src[0] = std::nanf("");
    if (n > 2) src[1] = 1.00390625f;  // exactly halfway between two bf16 values
    std::vector<uint16_t> ref(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) ref[size_t(i)] = f32_to_bf16(src[size_t(i)]);
    for (int threads : {1, 2, 3}) {
      std::vector<uint16_t> got(size_t(n), 0xdead);
      cpu::cast_f32_to_bf16(src.data(), got.data(), n, threads);
      EXPECT_EQ(got, ref) << "n " << n << " threads " << threads;
    }
  }
}
