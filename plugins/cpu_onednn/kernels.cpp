#include "kernels.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include <vector>

#include <oneapi/dnnl/dnnl.h>

#include "corvid/sdk/dtype.h"
#include "corvid/sdk/error.h"
#include "elementwise.h"

namespace corvid::cpu {

Isa detect_isa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) {
    // AVX512_BF16 has no __builtin_cpu_supports name in GCC 12: ask CPUID leaf 7.1 EAX bit 5.
    unsigned a, b, c, d;
    __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(1));
    // The top family also runs the int8 VNNI kernel: every CPU with AVX512_BF16
    // (Cooper Lake, Sapphire Rapids, Zen 4) has AVX512_VNNI, but check both.
    const bool bf16 = (a & (1u << 5)) != 0;
    return bf16 && __builtin_cpu_supports("avx512vnni") ? Isa::Avx512Bf16 : Isa::Avx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx2;
  return Isa::Scalar;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "AVX2";
    case Isa::Avx512: return "AVX-512";
    case Isa::Avx512Bf16: return "AVX-512 BF16";
  }
  return "?";
}

bool isa_supported(Isa isa) { return int(isa) <= int(detect_isa()); }

Isa select_isa(const char* request) {
  if (!request || !*request) return detect_isa();
  const std::string r(request);
  Isa isa;
  if (r == "scalar") isa = Isa::Scalar;
  else if (r == "avx2") isa = Isa::Avx2;
  else if (r == "avx512") isa = Isa::Avx512;
  else if (r == "avx512bf16") isa = Isa::Avx512Bf16;
  else throw Error("CORVID_CPU_ISA='" + r + "': expected scalar, avx2, avx512 or avx512bf16");
  if (!isa_supported(isa))
    throw Error("CORVID_CPU_ISA='" + r + "': this CPU runs at most " + isa_name(detect_isa()));
  return isa;
}

size_t Matrix::weight_bytes() const {
  size_t n = size_t(rows) * size_t(cols);
  switch (kind) {
    case Kind::F32: return n * 4;
    case Kind::BF16: return n * 2;
    case Kind::U8: return n + size_t(rows + cols) * 8;
  }
  return 0;
}

// ---------------------------------------------------------------------------
// Dot products. Each has a scalar reference; the SIMD variants process the
// tail (n not a multiple of the vector width) with masks or a scalar loop.

namespace {

// Weight rows are streamed in one linear pass per thread. Rows of 2-8 KiB end
// at 4 KiB page boundaries, where the hardware prefetchers stop and restart,
// so every kernel prefetches the stream itself, at two distances: 12 KiB
// ahead into L2 (T1: the request goes to DRAM early and waits in the L2's
// deep miss queue) and 4 KiB ahead into L1 (T0: by then the line is usually
// in L2, so it holds one of the core's ~16 L1 fill buffers only briefly). One
// prefetch per cache line of weights; past the end of a matrix it only
// touches the next tensor (a prefetch never faults).
// Measured on the 430M-shaped token stream (a block's seven products and
// the head, huge pages, bench_cpu_kernels BM_DecodeStream, against a plain
// read of the same buffer at the same moment), 1 / 2 threads: int8 VNNI
// 85% / 83% with one T1 prefetch 4 KiB ahead -> 94% / 93% with this pair;
// bf16 92% -> 98-99%; fp32 (one T0 prefetch 4 KiB ahead) 93-98% -> 99-100%.
// Without any software prefetch the int8 stream ran at 53%.
constexpr int kPrefetchL1Bytes = 4096, kPrefetchL2Bytes = 12288;
inline void prefetch_ahead(const void* p) {
  _mm_prefetch(static_cast<const char*>(p) + kPrefetchL1Bytes, _MM_HINT_T0);
  _mm_prefetch(static_cast<const char*>(p) + kPrefetchL2Bytes, _MM_HINT_T1);
}

float dot_f32_scalar(const float* a, const float* b, int n) {
  float s = 0;
  for (int i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

float dot_bf16_scalar(const uint16_t* w, const float* x, int n) {
  float s = 0;
  for (int i = 0; i < n; ++i) s += bf16_to_f32(w[i]) * x[i];
  return s;
}

float dot_u8_scalar(const uint8_t* q, const float* xs, int n) {
  float s = 0;
  for (int i = 0; i < n; ++i) s += float(q[i]) * xs[i];
  return s;
}

__attribute__((target("avx2,fma"))) inline float hsum256(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

__attribute__((target("avx2,fma"))) float dot_f32_avx2(const float* a, const float* b, int n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  int i = 0;
  for (; i + 32 <= n; i += 32) {
    prefetch_ahead(a + i);
    prefetch_ahead(a + i + 16);
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8) {
    if ((i & 15) == 0) prefetch_ahead(a + i);  // short rows: the stream still needs its prefetch
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  }
  float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

__attribute__((target("avx2,fma"))) float dot_bf16_avx2(const uint16_t* w, const float* x, int n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    prefetch_ahead(w + i);
    __m256i w16 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i));
    __m256 w0 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(w16)), 16));
    __m256 w1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(w16, 1)), 16));
    s0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i), s0);
    s1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i + 8), s1);
  }
  float s = hsum256(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) s += bf16_to_f32(w[i]) * x[i];
  return s;
}

__attribute__((target("avx2,fma"))) inline __m256 widen8_u8(const uint8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

__attribute__((target("avx2,fma"))) float dot_u8_avx2(const uint8_t* q, const float* xs, int n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    prefetch_ahead(q + i);
    s0 = _mm256_fmadd_ps(widen8_u8(q + i), _mm256_loadu_ps(xs + i), s0);
    s1 = _mm256_fmadd_ps(widen8_u8(q + i + 8), _mm256_loadu_ps(xs + i + 8), s1);
  }
  float s = hsum256(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) s += float(q[i]) * xs[i];
  return s;
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) float dot_f32_avx512(const float* a, const float* b, int n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
  int i = 0;
  for (; i + 64 <= n; i += 64) {
    for (int l = 0; l < 4; ++l) prefetch_ahead(a + i + 16 * l);
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
    s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
  }
  for (; i + 16 <= n; i += 16) {
    // Rows shorter than 64 (the RWKV-6 mix LoRA's 32) never reach the loop
    // above; without this prefetch they stalled on every line (≈ 6% of a
    // 2-thread RWKV-6 0.4B int8 decode).
    prefetch_ahead(a + i);
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
  }
  if (i < n) {
    __mmask16 m = __mmask16((1u << (n - i)) - 1);
    s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) float dot_bf16_avx512(const uint16_t* w, const float* x, int n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int i = 0;
  for (; i + 32 <= n; i += 32) {
    prefetch_ahead(w + i);
    __m512i w32 = _mm512_loadu_si512(w + i);
    __m512 w0 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(w32)), 16));
    __m512 w1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(w32, 1)), 16));
    s0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + i), s0);
    s1 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + i + 16), s1);
  }
  for (; i + 16 <= n; i += 16) {
    if ((i & 31) == 0) prefetch_ahead(w + i);  // short rows (see dot_f32_avx512)
    __m256i w16 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i));
    s0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(w16), 16)), _mm512_loadu_ps(x + i), s0);
  }
  if (i < n) {
    __mmask16 m = __mmask16((1u << (n - i)) - 1);
    __m256i w16 = _mm256_maskz_loadu_epi16(m, w + i);
    s1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(w16), 16)),
                         _mm512_maskz_loadu_ps(m, x + i), s1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

// vdpbf16ps: pairs of bf16 products accumulated in fp32. x is bf16-exact in a
// bf16 stage, so the products equal the fp32 ones; only the summation order
// differs from the fp32 path.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) float dot_bf16_avx512bf16(const uint16_t* w,
                                                                                          const uint16_t* xb, int n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int i = 0;
  for (; i + 64 <= n; i += 64) {
    prefetch_ahead(w + i);
    prefetch_ahead(w + i + 32);
    s0 = _mm512_dpbf16_ps(s0, (__m512bh)_mm512_loadu_si512(w + i), (__m512bh)_mm512_loadu_si512(xb + i));
    s1 = _mm512_dpbf16_ps(s1, (__m512bh)_mm512_loadu_si512(w + i + 32), (__m512bh)_mm512_loadu_si512(xb + i + 32));
  }
  for (; i + 32 <= n; i += 32) {
    prefetch_ahead(w + i);  // short rows (see dot_f32_avx512)
    s0 = _mm512_dpbf16_ps(s0, (__m512bh)_mm512_loadu_si512(w + i), (__m512bh)_mm512_loadu_si512(xb + i));
  }
  if (i < n) {
    __mmask32 m = __mmask32((n - i) >= 32 ? 0xffffffffu : ((1u << (n - i)) - 1));
    s1 = _mm512_dpbf16_ps(s1, (__m512bh)_mm512_maskz_loadu_epi16(m, w + i), (__m512bh)_mm512_maskz_loadu_epi16(m, xb + i));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

// Codes are widened straight from memory, 16 at a time (vpmovzxbd with a
// memory operand): one shuffle-port uop per 16 codes, where loading 64 and
// extracting 128-bit lanes would add three more per 64 — this loop is
// compute-bound on one core at ~15 GB/s, so uops per byte set its speed.
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m512 widen16_u8(const uint8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) float dot_u8_avx512(const uint8_t* q, const float* xs, int n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
  int i = 0;
  for (; i + 64 <= n; i += 64) {
    prefetch_ahead(q + i);
    s0 = _mm512_fmadd_ps(widen16_u8(q + i), _mm512_loadu_ps(xs + i), s0);
    s1 = _mm512_fmadd_ps(widen16_u8(q + i + 16), _mm512_loadu_ps(xs + i + 16), s1);
    s2 = _mm512_fmadd_ps(widen16_u8(q + i + 32), _mm512_loadu_ps(xs + i + 32), s2);
    s3 = _mm512_fmadd_ps(widen16_u8(q + i + 48), _mm512_loadu_ps(xs + i + 48), s3);
  }
  for (; i + 16 <= n; i += 16) {
    if ((i & 63) == 0) prefetch_ahead(q + i);  // short rows (see dot_f32_avx512)
    s0 = _mm512_fmadd_ps(widen16_u8(q + i), _mm512_loadu_ps(xs + i), s0);
  }
  if (i < n) {
    __mmask16 m = __mmask16((1u << (n - i)) - 1);
    s1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, q + i))),
                         _mm512_maskz_loadu_ps(m, xs + i), s1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

// ---- int8 on AVX-512 VNNI (exact integer dot products) -----------------------
//
// The fp32 int8 kernel needs three vector instructions per 16 codes (widen,
// convert, FMA) and is partly compute-bound on one core. Instead, x*ry is
// written once per input vector as a 31-bit fixed-point integer
//   N_i = round(xs_i * 2^s),  s chosen so that max |N_i| <= 2^30,
// split into four signed byte digits N_i = d0 + d1 2^8 + d2 2^16 + d3 2^24
// (balanced digits, each in [-128, 127]). vpdpbusd multiplies 64 uint8 codes
// with one digit plane per instruction, accumulating in int32; the four
// planes' sums combine in int64 without rounding. So the kernel returns
//   sum_i q_i N_i 2^-s   (exact, rounded once to fp32)
// whose only error is the fixed-point rounding of xs: at most
// 2^-31 max|xs| sum_i q_i, below the fp32 kernel's own accumulation error
// (about n 2^-24 sum_i |q_i xs_i|). int32 sums stay exact for
// n <= kVnniMaxCols (|sum| <= n * 255 * 128 < 2^31).

#define CORVID_AVX512VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

constexpr int kVnniMaxCols = 32768;

inline int vnni_stride(int n) { return (n + 63) / 64 * 64; }

// Digit planes D[d][i] (d = 0..3, each plane vnni_stride(n) bytes, zero
// padded) of round(xs * 2^shift). False (use the fp32 kernel) when xs holds a
// NaN or infinity, which must propagate (the shift range check is only a guard).
CORVID_AVX512VNNI bool make_digits(const float* xs, int n, int8_t* D, int& shift) {
  const int stride = vnni_stride(n);
  __m512 mx = _mm512_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_loadu_ps(xs + i)));
  if (i < n) mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_maskz_loadu_ps(__mmask16((1u << (n - i)) - 1), xs + i)));
  __mmask16 bad = 0;  // max_ps drops NaNs: look for NaN and infinity explicitly
  for (i = 0; i + 16 <= n; i += 16)
    bad |= _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(xs + i)), _mm512_set1_ps(INFINITY), _CMP_NLT_UQ);
  if (i < n)
    bad |= _mm512_mask_cmp_ps_mask(__mmask16((1u << (n - i)) - 1), _mm512_abs_ps(_mm512_maskz_loadu_ps(__mmask16((1u << (n - i)) - 1), xs + i)),
                                   _mm512_set1_ps(INFINITY), _CMP_NLT_UQ);
  if (bad) return false;
  const float m = _mm512_reduce_max_ps(mx);
  // max|xs| < 2^e  ->  |xs 2^(30-e)| < 2^30.
  shift = m > 0 ? 30 - (std::ilogb(m) + 1) : 0;
  if (shift < -252 || shift > 252) return false;
  // 2^shift as two normal-float factors (|shift| may exceed 127 for very small or large x).
  const __m512 scale1 = _mm512_set1_ps(std::ldexp(1.f, shift / 2)), scale2 = _mm512_set1_ps(std::ldexp(1.f, shift - shift / 2));
  for (i = 0; i < stride; i += 16) {
    const int k = std::min(16, n - i);
    const __mmask16 mk = k >= 16 ? __mmask16(0xffff) : k <= 0 ? __mmask16(0) : __mmask16((1u << k) - 1);
    // xs * 2^s is exact (powers of two, no under- or overflow: the result is
    // below 2^30 and normal xs stay normal); cvtps2dq rounds to nearest even.
    __m512i N = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(mk, xs + i), scale1), scale2));
    for (int d = 0; d < 3; ++d) {
      const __m512i dig = _mm512_srai_epi32(_mm512_slli_epi32(N, 24), 24);  // low byte, sign-extended
      _mm_storeu_si128(reinterpret_cast<__m128i*>(D + size_t(d) * stride + i), _mm512_cvtepi32_epi8(dig));
      N = _mm512_srai_epi32(_mm512_sub_epi32(N, dig), 8);
    }
    _mm_storeu_si128(reinterpret_cast<__m128i*>(D + size_t(3) * stride + i), _mm512_cvtepi32_epi8(N));
  }
  return true;
}

// sum_i q[i] N_i 2^-shift for one row of codes.
CORVID_AVX512VNNI inline float dot_u8_vnni_row(const uint8_t* q, const int8_t* D, int n, double inv_scale) {
  const size_t stride = size_t(vnni_stride(n));
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  int i = 0;
  for (; i + 64 <= n; i += 64) {
    prefetch_ahead(q + i);
    const __m512i w = _mm512_loadu_si512(q + i);
    a0 = _mm512_dpbusd_epi32(a0, w, _mm512_loadu_si512(D + i));
    a1 = _mm512_dpbusd_epi32(a1, w, _mm512_loadu_si512(D + stride + i));
    a2 = _mm512_dpbusd_epi32(a2, w, _mm512_loadu_si512(D + 2 * stride + i));
    a3 = _mm512_dpbusd_epi32(a3, w, _mm512_loadu_si512(D + 3 * stride + i));
  }
  if (i < n) {  // the digit planes are zero-padded; only the codes need a mask
    const __m512i w = _mm512_maskz_loadu_epi8((__mmask64(1) << (n - i)) - 1, q + i);
    a0 = _mm512_dpbusd_epi32(a0, w, _mm512_loadu_si512(D + i));
    a1 = _mm512_dpbusd_epi32(a1, w, _mm512_loadu_si512(D + stride + i));
    a2 = _mm512_dpbusd_epi32(a2, w, _mm512_loadu_si512(D + 2 * stride + i));
    a3 = _mm512_dpbusd_epi32(a3, w, _mm512_loadu_si512(D + 3 * stride + i));
  }
  const int64_t sum = int64_t(_mm512_reduce_add_epi32(a0)) + (int64_t(_mm512_reduce_add_epi32(a1)) << 8) +
                      (int64_t(_mm512_reduce_add_epi32(a2)) << 16) + (int64_t(_mm512_reduce_add_epi32(a3)) << 24);
  return float(double(sum) * inv_scale);  // |sum| < 2^53, power-of-two scale: one rounding, to fp32
}

}  // namespace

float dot_f32(Isa isa, const float* a, const float* b, int n) {
  switch (isa) {
    case Isa::Avx512Bf16:
    case Isa::Avx512: return dot_f32_avx512(a, b, n);
    case Isa::Avx2: return dot_f32_avx2(a, b, n);
    default: return dot_f32_scalar(a, b, n);
  }
}

float dot_bf16(Isa isa, const uint16_t* w, const float* x, const uint16_t* xb, int n) {
  switch (isa) {
    case Isa::Avx512Bf16: return dot_bf16_avx512bf16(w, xb, n);
    case Isa::Avx512: return dot_bf16_avx512(w, x, n);
    case Isa::Avx2: return dot_bf16_avx2(w, x, n);
    default: return dot_bf16_scalar(w, x, n);
  }
}

size_t vnni_digits_bytes(int cols) { return size_t(4) * size_t(vnni_stride(cols)); }

float dot_u8_vnni(const uint8_t* q, const float* xs, int n) {
  if (!isa_supported(Isa::Avx512Bf16)) throw Error("dot_u8_vnni: this CPU lacks AVX-512 VNNI");
  if (n > kVnniMaxCols) throw Error("dot_u8_vnni: n > " + std::to_string(kVnniMaxCols));
  std::vector<int8_t> D(vnni_digits_bytes(n));
  int shift = 0;
  if (!make_digits(xs, n, D.data(), shift)) return dot_u8(Isa::Avx512, q, xs, n);
  return dot_u8_vnni_row(q, D.data(), n, std::ldexp(1.0, -shift));
}

float dot_u8(Isa isa, const uint8_t* q, const float* xs, int n) {
  switch (isa) {
    case Isa::Avx512Bf16:
    case Isa::Avx512: return dot_u8_avx512(q, xs, n);
    case Isa::Avx2: return dot_u8_avx2(q, xs, n);
    default: return dot_u8_scalar(q, xs, n);
  }
}

// ---------------------------------------------------------------------------

namespace {
double combine_lanes(const double l[8]) { return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7])); }

InputSums int8_input_sums_portable(const float* x, const float* ry, const float* my, int n, float* xs) {
  double a[8] = {}, b[8] = {}, c[8] = {};
  for (int i0 = 0; i0 < n; i0 += 8)
    for (int l = 0; l < 8; ++l) {
      const int i = i0 + l;
      // Past the end the AVX-512 version adds masked-out zeros; so does this.
      const float xi = i < n ? x[i] : 0.f, ri = i < n ? ry[i] : 0.f, mi = i < n ? my[i] : 0.f;
      const float v = xi * ri;
      if (i < n) xs[i] = v;
      a[l] += double(xi);
      b[l] += double(v);
      c[l] += double(xi) * double(mi);
    }
  return {combine_lanes(a), combine_lanes(b), combine_lanes(c)};
}

__attribute__((target("avx512f,avx512vl"))) InputSums int8_input_sums_avx512(const float* x, const float* ry, const float* my, int n,
                                                                    float* xs) {
  __m512d a = _mm512_setzero_pd(), b = a, c = a;
  for (int i = 0; i < n; i += 8) {
    const __mmask8 m = n - i >= 8 ? __mmask8(0xff) : __mmask8((1u << (n - i)) - 1);
    const __m256 xv = _mm256_maskz_loadu_ps(m, x + i), rv = _mm256_maskz_loadu_ps(m, ry + i), mv = _mm256_maskz_loadu_ps(m, my + i);
    const __m256 v = _mm256_mul_ps(xv, rv);
    _mm256_mask_storeu_ps(xs + i, m, v);
    const __m512d xd = _mm512_cvtps_pd(xv);
    a = _mm512_add_pd(a, xd);
    b = _mm512_add_pd(b, _mm512_cvtps_pd(v));
    c = _mm512_add_pd(c, _mm512_mul_pd(xd, _mm512_cvtps_pd(mv)));  // separate mul and add, as the portable loop
  }
  alignas(64) double la[8], lb[8], lc[8];
  _mm512_store_pd(la, a);
  _mm512_store_pd(lb, b);
  _mm512_store_pd(lc, c);
  return {combine_lanes(la), combine_lanes(lb), combine_lanes(lc)};
}

}  // namespace

InputSums int8_input_sums(Isa isa, const float* x, const float* ry, const float* my, int n, float* xs) {
  return isa >= Isa::Avx512 ? int8_input_sums_avx512(x, ry, my, n, xs) : int8_input_sums_portable(x, ry, my, n, xs);
}


namespace {

// Rows [j0, j1) of the int8 VNNI GEMV with the §2.6 epilogue, all inside one
// AVX-512 function so that the row kernel inlines: a call per row across the
// target-attribute boundary (no inlining, vzeroupper, reloaded captures) cost
// about 7% of a 430M decode, whose rows are only 1 KiB.
CORVID_AVX512VNNI void u8_vnni_rows(const Matrix& W, const int8_t* D, double inv_scale, float half, float fsxmy, float fsx,
                                    float* y, int j0, int j1) {
  const int K = W.cols;
  for (int j = j0; j < j1; ++j)
    y[j] = W.rx[j] * (dot_u8_vnni_row(W.q + size_t(j) * K, D, K, inv_scale) + half) + fsxmy + W.mx[j] * fsx;
}

// What a product needs from its input vector before the rows run: for int8,
// the §2.6 input-side terms and (VNNI) the fixed-point planes of x*ry; for
// bf16 on AVX-512 BF16, x rounded to bf16. Computed once per product, on the
// calling thread.
struct PreparedInput {
  float half = 0, fsx = 0, fsxmy = 0;
  double inv_scale = 0;
  bool vnni = false;
};

PreparedInput prepare_input(Isa isa, const Matrix& W, const float* x, GemvScratch& s) {
  PreparedInput p;
  const int K = W.cols;
  switch (W.kind) {
    case Matrix::Kind::F32: break;
    case Matrix::Kind::BF16:
      if (isa == Isa::Avx512Bf16)
        for (int i = 0; i < K; ++i) s.xb[i] = f32_to_bf16(x[i]);
      break;
    case Matrix::Kind::U8: {
      // y[j] = rx[j] * sum_i (x[i] ry[i]) (q[j][i] + 0.5) + sum_i x[i] my[i] + mx[j] sum_i x[i]
      // (rwkv-reference §2.6, "for fast kernels"): one pass over the codes.
      const InputSums sums = int8_input_sums(isa, x, W.ry, W.my, K, s.xs);
      p.half = float(0.5 * sums.sxs);
      p.fsx = float(sums.sx);
      p.fsxmy = float(sums.sxmy);
      int shift = 0;
      if (isa == Isa::Avx512Bf16 && s.digits && K <= kVnniMaxCols && make_digits(s.xs, K, s.digits, shift)) {
        p.vnni = true;
        p.inv_scale = std::ldexp(1.0, -shift);
      }
      break;
    }
  }
  return p;
}

// Rows [j0, j1) of a float product inside one function of the kernel's
// target, so that the row kernel inlines (same reason as u8_vnni_rows): the
// RWKV-6 mix LoRA has rows of 32 floats, where a call per row took about 7%
// of a 2-thread 0.4B int8 decode.
#define CORVID_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define CORVID_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
#define CORVID_TARGET_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
CORVID_TARGET_AVX2 void f32_rows_avx2(const float* w, const float* x, float* y, int K, int j0, int j1) {
  for (int j = j0; j < j1; ++j) y[j] = dot_f32_avx2(w + size_t(j) * size_t(K), x, K);
}
CORVID_TARGET_AVX512 void f32_rows_avx512(const float* w, const float* x, float* y, int K, int j0, int j1) {
  for (int j = j0; j < j1; ++j) y[j] = dot_f32_avx512(w + size_t(j) * size_t(K), x, K);
}
CORVID_TARGET_AVX2 void bf16_rows_avx2(const uint16_t* w, const float* x, float* y, int K, int j0, int j1) {
  for (int j = j0; j < j1; ++j) y[j] = dot_bf16_avx2(w + size_t(j) * size_t(K), x, K);
}
CORVID_TARGET_AVX512 void bf16_rows_avx512(const uint16_t* w, const float* x, float* y, int K, int j0, int j1) {
  for (int j = j0; j < j1; ++j) y[j] = dot_bf16_avx512(w + size_t(j) * size_t(K), x, K);
}
CORVID_TARGET_AVX512BF16 void bf16_rows_avx512bf16(const uint16_t* w, const uint16_t* xb, float* y, int K, int j0, int j1) {
  for (int j = j0; j < j1; ++j) y[j] = dot_bf16_avx512bf16(w + size_t(j) * size_t(K), xb, K);
}
#undef CORVID_TARGET_AVX2
#undef CORVID_TARGET_AVX512
#undef CORVID_TARGET_AVX512BF16

// Rows [j0, j1) of one product.
void run_rows(Isa isa, const GemvTask& t, const PreparedInput& p, int j0, int j1) {
  const Matrix& W = *t.W;
  const int K = W.cols;
  float* y = t.y;
  switch (W.kind) {
    case Matrix::Kind::F32:
      if (isa >= Isa::Avx512) f32_rows_avx512(W.f32, t.x, y, K, j0, j1);
      else if (isa == Isa::Avx2) f32_rows_avx2(W.f32, t.x, y, K, j0, j1);
      else
        for (int j = j0; j < j1; ++j) y[j] = dot_f32(isa, W.f32 + size_t(j) * K, t.x, K);
      break;
    case Matrix::Kind::BF16:
      if (isa == Isa::Avx512Bf16) bf16_rows_avx512bf16(W.bf16, t.s->xb, y, K, j0, j1);
      else if (isa == Isa::Avx512) bf16_rows_avx512(W.bf16, t.x, y, K, j0, j1);
      else if (isa == Isa::Avx2) bf16_rows_avx2(W.bf16, t.x, y, K, j0, j1);
      else
        for (int j = j0; j < j1; ++j) y[j] = dot_bf16(isa, W.bf16 + size_t(j) * K, t.x, t.s->xb, K);
      break;
    case Matrix::Kind::U8:
      if (p.vnni) {
        u8_vnni_rows(W, t.s->digits, p.inv_scale, p.half, p.fsxmy, p.fsx, y, j0, j1);
      } else {
        for (int j = j0; j < j1; ++j)
          y[j] = W.rx[j] * (dot_u8(isa, W.q + size_t(j) * K, t.s->xs, K) + p.half) + p.fsxmy + W.mx[j] * p.fsx;
      }
      break;
  }
}

}  // namespace

void gemv(Isa isa, const Matrix& W, const float* x, float* y, GemvScratch& s, ThreadPool& pool) {
  const GemvTask t{&W, x, y, &s};
  gemv_batch(isa, &t, 1, pool);
}

void gemv_batch(Isa isa, const GemvTask* tasks, int n, ThreadPool& pool) {
  constexpr int kMaxTasks = 8;
  if (n < 1 || n > kMaxTasks) throw Error("gemv_batch: 1 to 8 products per batch");
  PreparedInput prep[kMaxTasks];
  for (int i = 0; i < n; ++i) prep[i] = prepare_input(isa, *tasks[i].W, tasks[i].x, *tasks[i].s);
  if (pool.size() <= 1) {
    for (int i = 0; i < n; ++i) run_rows(isa, tasks[i], prep[i], 0, tasks[i].W->rows);
    return;
  }
  // One pool job for all the products: chunks of about 64 KiB of weights
  // (rows never split), numbered product after product, so each thread's
  // contiguous range of chunks is one stream through consecutive weights (the
  // products of a step are stored one after another), and a thread that keeps
  // its core steals the chunks of one that lost it. One synchronisation
  // instead of n.
  int rows_per_chunk[kMaxTasks], first_chunk[kMaxTasks + 1];
  first_chunk[0] = 0;
  for (int i = 0; i < n; ++i) {
    const Matrix& W = *tasks[i].W;
    const size_t elem = W.kind == Matrix::Kind::F32 ? 4 : W.kind == Matrix::Kind::BF16 ? 2 : 1;
    const size_t row_bytes = std::max<size_t>(size_t(W.cols) * elem, 1);
    rows_per_chunk[i] = int(std::clamp<size_t>((size_t(64) << 10) / row_bytes, 1, size_t(std::max(W.rows, 1))));
    first_chunk[i + 1] = first_chunk[i] + (W.rows + rows_per_chunk[i] - 1) / rows_per_chunk[i];
  }
  pool.for_chunks(first_chunk[n], [&](int c, int) {
    int i = 0;
    while (c >= first_chunk[i + 1]) ++i;
    const int j0 = (c - first_chunk[i]) * rows_per_chunk[i];
    run_rows(isa, tasks[i], prep[i], j0, std::min(tasks[i].W->rows, j0 + rows_per_chunk[i]));
  });
}

// Plain loops, cloned for AVX-512 / AVX2 / baseline and picked at load time
// (GCC function multiversioning), so the compiler vectorises them safely.
__attribute__((target_clones("avx512f", "avx2", "default"))) void widen_row_bf16(const uint16_t* src, float* dst, int n) {
  for (int i = 0; i < n; ++i) {
    const uint32_t u = uint32_t(src[i]) << 16;
    std::memcpy(dst + i, &u, 4);
  }
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void dequant_row_u8(const Matrix& W, int j, float* out) {
  const uint8_t* q = W.q + size_t(j) * W.cols;
  const float rx = W.rx[j], mx = W.mx[j];
  for (int i = 0; i < W.cols; ++i) out[i] = ((float(q[i]) + 0.5f) * W.ry[i]) * rx + W.my[i] + mx;
}

struct GemmContext::Impl {
  std::vector<std::vector<float>> tiles;  // one per pool thread
};

GemmContext::GemmContext() : impl_(new Impl) {}
GemmContext::~GemmContext() { delete impl_; }

namespace {

int tile_rows(int K) { return int(std::max<size_t>(64, kTileFloats / size_t(std::max(K, 1)))); }

// Output rows per block: about four blocks per thread (so a thread that loses
// its core leaves little behind), 64 rows at least, one tile at most.
int block_rows(int R, int K, int threads) {
  int rows = (R + 4 * threads - 1) / (4 * threads);
  rows = std::clamp(rows, 64, tile_rows(K));
  rows = (rows + 15) / 16 * 16;
  return std::min(rows, R);
}

// Sets the calling thread's OpenMP team size for oneDNN, restoring it after.
struct OmpThreads {
  int saved;
  explicit OmpThreads(int n) : saved(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~OmpThreads() { omp_set_num_threads(saved); }
};

}  // namespace

void GemmContext::reserve(int max_cols, int threads) {
  impl_->tiles.resize(size_t(std::max(1, threads)));
  for (auto& t : impl_->tiles) t.resize(size_t(tile_rows(max_cols)) * size_t(max_cols));
}

void GemmContext::gemm(const Matrix& W, const float* X, int T, float* Y, ThreadPool& pool) {
  const int R = W.rows, K = W.cols;
  OmpThreads one(1);  // oneDNN runs single-threaded inside each block; the pool is the parallelism
  const int rows = block_rows(R, K, pool.size());
  if (impl_->tiles.size() < size_t(pool.size())) impl_->tiles.resize(size_t(pool.size()));
  if (W.kind != Matrix::Kind::F32)
    for (auto& t : impl_->tiles)
      if (t.size() < size_t(rows) * K) t.resize(size_t(rows) * K);
  bool failed = false;
  pool.for_chunks((R + rows - 1) / rows, [&](int c, int thread) {
    const int j0 = c * rows, n = std::min(rows, R - j0);
    const float* w = nullptr;
    if (W.kind == Matrix::Kind::F32) {
      w = W.f32 + size_t(j0) * K;
    } else {
      float* tile = impl_->tiles[size_t(thread)].data();
      if (W.kind == Matrix::Kind::BF16)
        for (int j = 0; j < n; ++j) widen_row_bf16(W.bf16 + size_t(j0 + j) * K, tile + size_t(j) * K, K);
      else
        for (int j = 0; j < n; ++j) dequant_row_u8(W, j0 + j, tile + size_t(j) * K);
      w = tile;
    }
    // Y[T][j0..j0+n) = X[T][K] * Wblock[n][K]^T
    if (dnnl_sgemm('N', 'T', T, n, K, 1.f, X, K, w, K, 0.f, Y + j0, R) != dnnl_success) failed = true;
  });
  if (failed) throw Error("cpu_onednn: dnnl_sgemm failed");
}

// ---------------------------------------------------------------------------
// StageProducts

void StageProducts::reserve(int widest_cols, int threads) {
  gemm_.reserve(widest_cols, threads);
  // run_f64's chunks hold at most 16 KiB of weights or one row: 8192 bf16.
  f64_tile_doubles_ = std::max<size_t>(8192, size_t(widest_cols));
  f64_tiles_.assign(size_t(std::max(threads, 1)), std::vector<double>(f64_tile_doubles_));
  for (Scratch& sc : scratch_) {
    sc.xs.assign(size_t(widest_cols), 0.f);
    sc.xb.assign(size_t(widest_cols) + 64, 0);
    sc.digits.assign(vnni_digits_bytes(widest_cols), 0);
  }
}

void StageProducts::run(Isa isa, std::initializer_list<Product> products, int T, ThreadPool& pool) {
  if (T > 1) {
    for (const Product& p : products) gemm_.gemm(*p.W, p.X, T, p.Y, pool);
    return;
  }
  GemvScratch views[kMaxBatch];
  GemvTask tasks[kMaxBatch];
  int n = 0;
  for (const Product& p : products) {
    if (n == kMaxBatch) throw Error("cpu_onednn: too many products in one batch");
    Scratch& sc = scratch_[n];
    views[n] = GemvScratch{sc.xs.data(), sc.xb.data(), sc.digits.data()};
    tasks[n] = GemvTask{p.W, p.X, p.Y, &views[n]};
    ++n;
  }
  gemv_batch(isa, tasks, n, pool);
}

namespace {

// y[j] = Σ_i W[j][i]·x[i] for j in [j0, j1), summed in double and rounded
// once: eight partial sums, lane u taking i ≡ u (mod 8) over the whole blocks
// of eight in order, the tail added to lane 0, then one fixed tree. The
// portable version (no FMA contraction, no reassociation) and the AVX-512 one
// follow this order exactly, so they give the same bits.
void f64_rows_portable(const Matrix& W, const float* __restrict x, float* __restrict y, int j0, int j1) {
  const int cols = W.cols;
  for (int j = j0; j < j1; ++j) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int i = 0;
    if (W.kind == Matrix::Kind::BF16) {
      const uint16_t* __restrict wr = W.bf16 + size_t(j) * size_t(cols);
      for (; i + 8 <= cols; i += 8)
        for (int u = 0; u < 8; ++u) acc[u] += double(bf16_to_f32(wr[i + u])) * double(x[i + u]);
      for (; i < cols; ++i) acc[0] += double(bf16_to_f32(wr[i])) * double(x[i]);
    } else {
      const float* __restrict wr = W.f32 + size_t(j) * size_t(cols);
      for (; i + 8 <= cols; i += 8)
        for (int u = 0; u < 8; ++u) acc[u] += double(wr[i + u]) * double(x[i + u]);
      for (; i < cols; ++i) acc[0] += double(wr[i]) * double(x[i]);
    }
    y[j] = float(((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])));
  }
}

// The same sums with one zmm of eight double lanes. The portable loop
// compiled (even as an AVX-512 clone) to 256-bit halves with a convert and an
// extract per four products and ran at ≈ 1.6 G products/s; an RWKV-7 0.4B
// token's LoRAs then took ≈ 10 ms, a quarter of an int8 decode.
// Eight bf16 or fp32 weights as eight doubles.
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m512d load8_pd(const Matrix& W, size_t at) {
  if (W.kind == Matrix::Kind::BF16)
    return _mm512_cvtps_pd(_mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(W.bf16 + at))), 16)));
  return _mm512_cvtps_pd(_mm256_loadu_ps(W.f32 + at));
}

// R rows at once: x is widened once per eight columns for all of them, and
// the R accumulators are independent dependency chains. With `wd` the rows'
// weights come already widened to double (row r of the block at
// wd + r·cols; a chunk's tile in sequence mode), otherwise from W.
template <int R>
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline void f64_block_avx512(const Matrix& W, const double* wd,
                                                                                  const float* x, float* y, int j) {
  const size_t cols = size_t(W.cols);
  const size_t elem = W.kind == Matrix::Kind::BF16 ? 2 : 4;
  const char* base = W.kind == Matrix::Kind::BF16 ? reinterpret_cast<const char*>(W.bf16) : reinterpret_cast<const char*>(W.f32);
  __m512d acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_pd();
  size_t i = 0;
  for (; i + 8 <= cols; i += 8) {
    const __m512d xd = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
    for (int r = 0; r < R; ++r) {
      if (wd) {
        acc[r] = _mm512_add_pd(acc[r], _mm512_mul_pd(_mm512_loadu_pd(wd + size_t(r) * cols + i), xd));
      } else {
        const size_t at = (size_t(j) + size_t(r)) * cols + i;
        if (((at * elem) & 63) < 8 * elem) prefetch_ahead(base + at * elem);  // once per 64-byte line
        acc[r] = _mm512_add_pd(acc[r], _mm512_mul_pd(load8_pd(W, at), xd));
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    alignas(64) double a[8];
    _mm512_store_pd(a, acc[r]);
    const size_t row = (size_t(j) + size_t(r)) * cols;
    for (size_t k = i; k < cols; ++k)
      a[0] += (wd ? wd[size_t(r) * cols + k] : double(W.kind == Matrix::Kind::BF16 ? bf16_to_f32(W.bf16[row + k]) : W.f32[row + k])) *
              double(x[k]);
    y[j + r] = float(((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])));
  }
}

// The same sums with zmm registers of eight double lanes, four rows at a
// time. The portable loop compiled (even as an AVX-512 clone) to 256-bit
// halves with a convert and an extract per four products and ran at
// ≈ 1.6 G products/s; an RWKV-7 0.4B token's LoRAs then took ≈ 10 ms, a
// quarter of an int8 decode.
__attribute__((target("avx512f,avx512bw,avx512vl"))) void f64_rows_avx512(const Matrix& W, const float* __restrict x,
                                                                          float* __restrict y, int j0, int j1) {
  int j = j0;
  for (; j + 4 <= j1; j += 4) f64_block_avx512<4>(W, nullptr, x, y, j);
  for (; j < j1; ++j) f64_block_avx512<1>(W, nullptr, x, y, j);
}

// Rows [j0, j1) for T tokens from a tile of the rows widened to double once
// (sequence mode): the widening is then paid once per chunk, not per token.
__attribute__((target("avx512f,avx512bw,avx512vl"))) void f64_rows_tokens_avx512(const Matrix& W, double* __restrict tile,
                                                                                 const float* X, float* Y, int T, int j0, int j1) {
  const size_t cols = size_t(W.cols), rows = size_t(W.rows);
  for (int j = j0; j < j1; ++j)
    for (size_t i = 0; i < cols; ++i)
      tile[size_t(j - j0) * cols + i] =
          double(W.kind == Matrix::Kind::BF16 ? bf16_to_f32(W.bf16[size_t(j) * cols + i]) : W.f32[size_t(j) * cols + i]);
  for (int t = 0; t < T; ++t) {
    const float* x = X + size_t(t) * cols;
    float* y = Y + size_t(t) * rows;
    int j = j0;
    for (; j + 4 <= j1; j += 4) f64_block_avx512<4>(W, tile + size_t(j - j0) * cols, x, y, j);
    for (; j < j1; ++j) f64_block_avx512<1>(W, tile + size_t(j - j0) * cols, x, y, j);
  }
}

}  // namespace

void f64_rows(Isa isa, const Matrix& W, const float* x, float* y, int j0, int j1) {
  if (isa >= Isa::Avx512) f64_rows_avx512(W, x, y, j0, j1);
  else f64_rows_portable(W, x, y, j0, j1);
}

void StageProducts::run_head(Isa isa, const Matrix& head, const float* x, int T, bool all_rows, const float* ln_w,
                             const float* ln_b, float* xx, bool bf16, float* logits, ThreadPool& pool) {
  const int C = head.cols;
  const int first = all_rows ? 0 : T - 1;
  const int rows = T - first;
  for (int t = 0; t < rows; ++t) ew::layer_norm(x + size_t(first + t) * C, ln_w, ln_b, xx + size_t(t) * C, C, bf16);
  run(isa, {{&head, xx, logits}}, rows, pool);
  if (bf16) ew::round_bf16(logits, size_t(rows) * size_t(head.rows));
}

void StageProducts::run_f64(Isa isa, std::initializer_list<Product> products, int T, ThreadPool& pool) {
  const bool tiles = T > 1 && isa >= Isa::Avx512 && f64_tiles_.size() >= size_t(pool.size());
  // One pool job for all the products (like gemv_batch): chunks of about
  // 16 KiB of weights, rows never split, so the 64-row down-projections are
  // shared between threads too; each chunk runs its rows for every token.
  constexpr int kMax = 8;
  const Product* ps[kMax];
  int rows_per_chunk[kMax], first_chunk[kMax + 1];
  int n = 0;
  first_chunk[0] = 0;
  for (const Product& p : products) {
    if (n == kMax) throw Error("cpu_onednn: too many products in one batch");
    const Matrix& W = *p.W;
    if (W.kind == Matrix::Kind::U8) throw Error("cpu_onednn: double-sum products take float weights");
    const size_t row_bytes = std::max<size_t>(size_t(W.cols) * (W.kind == Matrix::Kind::BF16 ? 2 : 4), 1);
    ps[n] = &p;
    rows_per_chunk[n] = int(std::clamp<size_t>((size_t(16) << 10) / row_bytes, 1, size_t(std::max(W.rows, 1))));
    if (tiles && size_t(rows_per_chunk[n]) * size_t(W.cols) > f64_tile_doubles_)
      throw Error("cpu_onednn: LoRA product wider than the reserved tile");
    first_chunk[n + 1] = first_chunk[n] + (W.rows + rows_per_chunk[n] - 1) / rows_per_chunk[n];
    ++n;
  }
  pool.for_chunks(first_chunk[n], [&](int c, int thread) {
    int i = 0;
    while (c >= first_chunk[i + 1]) ++i;
    const Product& p = *ps[i];
    const int rows = p.W->rows, cols = p.W->cols;
    const int j0 = (c - first_chunk[i]) * rows_per_chunk[i], j1 = std::min(rows, j0 + rows_per_chunk[i]);
    if (tiles) {
      f64_rows_tokens_avx512(*p.W, f64_tiles_[size_t(thread)].data(), p.X, p.Y, T, j0, j1);
      return;
    }
    for (int t = 0; t < T; ++t) f64_rows(isa, *p.W, p.X + size_t(t) * size_t(cols), p.Y + size_t(t) * size_t(rows), j0, j1);
  });
}

}  // namespace corvid::cpu
