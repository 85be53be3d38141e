#include "elementwise.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace corvid::cpu::ew {

namespace {

#define CORVID_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

__attribute__((always_inline)) inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
__attribute__((always_inline)) inline uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// bf16 rounding as sdk f32_to_bf16 (RNE; NaN stays a quiet NaN), kept in fp32.
__attribute__((always_inline)) inline float rb(float v) {
  const uint32_t u = float_to_bits(v);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  const uint32_t nan = (u | 0x00400000u) & 0xffff0000u;
  return bits_to_float((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}
template <bool BF16>
__attribute__((always_inline)) inline float R(float v) {
  return BF16 ? rb(v) : v;
}

// exp(x) = 2^n·e^r with n = round(x·log2 e), r = x − n·ln 2 (two-part ln 2),
// e^r by Cephes' expf polynomial.
__attribute__((always_inline)) inline float expf_poly(float x) {
  const float xc = x < -87.0f ? -87.0f : (x > 88.7f ? 88.7f : x);
  const float fn = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  const float r = (xc - fn * 0.693359375f) + fn * 2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * r * r + r + 1.0f;
  // 2^n as two powers of two (n up to 128 near the top of the range).
  const int32_t n = int32_t(fn), n1 = n / 2, n2 = n - n1;
  const float e = (y * bits_to_float(uint32_t(n1 + 127) << 23)) * bits_to_float(uint32_t(n2 + 127) << 23);
  return x < -87.0f ? 0.0f : (x > 88.72283f ? std::numeric_limits<float>::infinity() : e);
}

template <bool BF16>
// __restrict: the state (a, b, p) and out never alias the inputs; without it
// GCC keeps this loop scalar (runtime alias checks on nine pointers).
__attribute__((always_inline)) inline void wkv_loop(const float* __restrict k, const float* __restrict v,
                                                    const float* __restrict r, const float* __restrict u,
                                                    const float* __restrict w, float* __restrict a,
                                                    float* __restrict b, float* __restrict p, float* __restrict out,
                                                    int n) {
  for (int i = 0; i < n; ++i) {
    const float ww = u[i] + k[i];
    const float q = p[i] > ww ? p[i] : ww;
    const float e1 = expf_poly(p[i] - q), e2 = expf_poly(ww - q);
    const float wkv = R<BF16>((e1 * a[i] + e2 * v[i]) / (e1 * b[i] + e2));
    const float w2 = w[i] + p[i];
    const float q2 = w2 > k[i] ? w2 : k[i];
    const float f1 = expf_poly(w2 - q2), f2 = expf_poly(k[i] - q2);
    a[i] = f1 * a[i] + f2 * v[i];
    b[i] = f1 * b[i] + f2;
    p[i] = q2;
    out[i] = R<BF16>(r[i] * wkv);
  }
}

}  // namespace

float exp_approx(float x) { return expf_poly(x); }

CORVID_CLONES void layer_norm(const float* x, const float* w, const float* b, float* y, int n, bool bf16) {
  double mean = 0, var = 0;
  for (int i = 0; i < n; ++i) mean += x[i];
  mean /= n;
  for (int i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= n;
  const double rstd = 1.0 / std::sqrt(var + 1e-5);
  if (bf16)
    for (int i = 0; i < n; ++i) y[i] = rb(float((x[i] - mean) * rstd * w[i] + b[i]));
  else
    for (int i = 0; i < n; ++i) y[i] = float((x[i] - mean) * rstd * w[i] + b[i]);
}

CORVID_CLONES void token_shift_mix(const float* cur, const float* prev, const float* mu, const float* omu, float* out,
                                   int n, bool bf16) {
  if (bf16)
    for (int i = 0; i < n; ++i) out[i] = rb(rb(cur[i] * mu[i]) + rb(prev[i] * omu[i]));
  else
    for (int i = 0; i < n; ++i) out[i] = cur[i] * mu[i] + prev[i] * omu[i];
}

CORVID_CLONES void round_bf16(float* v, size_t n) {
  for (size_t i = 0; i < n; ++i) v[i] = rb(v[i]);
}

// σ(v) = 1 / (1 + e^{−v}) in fp32, as torch.sigmoid computes it.
CORVID_CLONES void sigmoid(float* v, size_t n, bool bf16) {
  if (bf16)
    for (size_t i = 0; i < n; ++i) v[i] = rb(1.0f / (1.0f + expf_poly(-rb(v[i]))));
  else
    for (size_t i = 0; i < n; ++i) v[i] = 1.0f / (1.0f + expf_poly(-v[i]));
}

CORVID_CLONES void relu_square(float* v, size_t n, bool bf16) {
  if (bf16)
    for (size_t i = 0; i < n; ++i) {
      const float h = rb(v[i]) > 0.f ? rb(v[i]) : 0.f;
      v[i] = rb(h * h);
    }
  else
    for (size_t i = 0; i < n; ++i) {
      const float h = v[i] > 0.f ? v[i] : 0.f;
      v[i] = h * h;
    }
}

CORVID_CLONES void add_residual(float* x, const float* y, size_t n, bool bf16) {
  if (bf16)
    for (size_t i = 0; i < n; ++i) x[i] = rb(x[i] + rb(y[i]));
  else
    for (size_t i = 0; i < n; ++i) x[i] = x[i] + y[i];
}

CORVID_CLONES void add_gated_residual(float* x, const float* r, const float* y, size_t n, bool bf16) {
  if (bf16)
    for (size_t i = 0; i < n; ++i) x[i] = rb(x[i] + rb(r[i] * rb(y[i])));
  else
    for (size_t i = 0; i < n; ++i) x[i] = x[i] + r[i] * y[i];
}

CORVID_CLONES void halve(float* x, size_t n, bool bf16) {
  if (bf16)
    for (size_t i = 0; i < n; ++i) x[i] = rb(x[i] * 0.5f);
  else
    for (size_t i = 0; i < n; ++i) x[i] = x[i] * 0.5f;
}

CORVID_CLONES void wkv_step(const float* k, const float* v, const float* r, const float* u, const float* w, float* a,
                            float* b, float* p, float* out, int n, bool bf16) {
  if (bf16) wkv_loop<true>(k, v, r, u, w, a, b, p, out, n);
  else wkv_loop<false>(k, v, r, u, w, a, b, p, out, n);
}

}  // namespace corvid::cpu::ew
