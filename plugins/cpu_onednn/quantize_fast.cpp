#include "quantize_fast.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "corvid/sdk/dtype.h"
#include "corvid/sdk/weights_util.h"
#include "kernels.h"

namespace corvid::cpu {

QuantIsa quant_isa() {
  switch (select_isa(std::getenv("CORVID_CPU_ISA"))) {
    case Isa::Scalar: return QuantIsa::Default;
    case Isa::Avx2: return QuantIsa::Avx2;
    default: return QuantIsa::Avx512;
  }
}

int load_threads(int threads, int64_t rows) {
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  const int64_t by_rows = std::max<int64_t>(1, rows / 16);
  return int(std::min<int64_t>(threads, by_rows));
}

namespace {

// fn(r0, r1, t) on T contiguous row ranges, in parallel; ranges are in thread order.
template <class Fn>
void parallel_rows(int64_t rows, int T, Fn&& fn) {
  if (T <= 1) { fn(int64_t(0), rows, 0); return; }
  std::vector<std::thread> pool;
  pool.reserve(size_t(T - 1));
  auto range = [&](int t) { return std::pair<int64_t, int64_t>(rows * t / T, rows * (t + 1) / T); };
  for (int t = 1; t < T; ++t) pool.emplace_back([&, t] { auto [a, b] = range(t); fn(a, b, t); });
  auto [a, b] = range(0);
  fn(a, b, 0);
  for (auto& th : pool) th.join();
}

// The reference's folds: std::min(acc, x) keeps acc unless x < acc; std::max(acc, x)
// keeps acc unless acc < x. Written as compares so the zero sign follows the same rule.
#define CORVID_QMIN(acc, x) ((x) < (acc) ? (x) : (acc))
#define CORVID_QMAX(acc, x) ((acc) < (x) ? (x) : (acc))
#define CORVID_INL static inline __attribute__((always_inline))

constexpr int L = 16;  // lanes of the explicit row reductions

// First-in-order zero of a row whose min/max came out as a zero: that zero's sign.
CORVID_INL float first_zero(const float* x, int64_t n, float fallback) {
  for (int64_t i = 0; i < n; ++i)
    if (x[i] == 0.f) return x[i];
  return fallback;
}

CORVID_INL float row_min(const float* x, int64_t n) {
  float acc[L];
  for (int k = 0; k < L; ++k) acc[k] = INFINITY;
  int64_t i = 0;
  for (; i + L <= n; i += L)
    for (int k = 0; k < L; ++k) acc[k] = CORVID_QMIN(acc[k], x[i + k]);
  for (; i < n; ++i) acc[0] = CORVID_QMIN(acc[0], x[i]);
  float v = acc[0];
  for (int k = 1; k < L; ++k) v = CORVID_QMIN(v, acc[k]);
  return v == 0.f ? first_zero(x, n, v) : v;
}

CORVID_INL float row_max(const float* x, int64_t n) {
  float acc[L];
  for (int k = 0; k < L; ++k) acc[k] = -INFINITY;
  int64_t i = 0;
  for (; i + L <= n; i += L)
    for (int k = 0; k < L; ++k) acc[k] = CORVID_QMAX(acc[k], x[i + k]);
  for (; i < n; ++i) acc[0] = CORVID_QMAX(acc[0], x[i]);
  float v = acc[0];
  for (int k = 1; k < L; ++k) v = CORVID_QMAX(v, acc[k]);
  return v == 0.f ? first_zero(x, n, v) : v;
}

CORVID_INL void sub_vec(float* __restrict x, const float* __restrict v, int64_t n) {
  for (int64_t j = 0; j < n; ++j) x[j] -= v[j];
}
CORVID_INL void sub_scalar(float* __restrict x, float s, int64_t n) {
  for (int64_t j = 0; j < n; ++j) x[j] -= s;
}
CORVID_INL void div_scalar(float* __restrict x, float d, int64_t n) {
  for (int64_t j = 0; j < n; ++j) x[j] /= d;
}
CORVID_INL void col_min_acc(float* __restrict acc, const float* __restrict x, int64_t n) {
  for (int64_t j = 0; j < n; ++j) acc[j] = CORVID_QMIN(acc[j], x[j]);
}
CORVID_INL void col_max_acc(float* __restrict acc, const float* __restrict x, int64_t n) {
  for (int64_t j = 0; j < n; ++j) acc[j] = CORVID_QMAX(acc[j], x[j]);
}
CORVID_INL void quant_row(const float* __restrict x, const float* __restrict d, uint8_t* __restrict q, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    float v = std::floor((x[j] / d[j]) * 256.f);
    v = std::min(255.f, std::max(0.f, v));
    q[j] = uint8_t(int(v));
  }
}

// Pass 1, n > m in the reference (C > R): column mins (my) first.
CORVID_INL void p1_colmin(const float* w, int64_t r0, int64_t r1, int64_t C, float* acc) {
  for (int64_t j = 0; j < C; ++j) acc[j] = INFINITY;
  for (int64_t r = r0; r < r1; ++r) col_min_acc(acc, w + r * C, C);
}
// Pass 1, otherwise: row mins (mx) first, then the column mins of the result.
CORVID_INL void p1_rowmin(float* w, int64_t r0, int64_t r1, int64_t C, float* mx, float* acc) {
  for (int64_t j = 0; j < C; ++j) acc[j] = INFINITY;
  for (int64_t r = r0; r < r1; ++r) {
    float* x = w + r * C;
    const float m = row_min(x, C);
    mx[r] = m;
    sub_scalar(x, m, C);
    col_min_acc(acc, x, C);
  }
}
// Pass 2: subtract the column mins (and, if they came first, take and subtract the
// row mins), row max rx, divide, column maxima of the result.
CORVID_INL void p2(float* w, int64_t r0, int64_t r1, int64_t C, bool row_min_second, const float* my, float* mx,
                   float* rx, float* acc) {
  for (int64_t j = 0; j < C; ++j) acc[j] = -INFINITY;
  for (int64_t r = r0; r < r1; ++r) {
    float* x = w + r * C;
    sub_vec(x, my, C);
    if (row_min_second) {
      const float m = row_min(x, C);
      mx[r] = m;
      sub_scalar(x, m, C);
    }
    const float M = row_max(x, C);
    rx[r] = M;
    div_scalar(x, M != 0.f ? M : 1.f, C);
    col_max_acc(acc, x, C);
  }
}
CORVID_INL void p3(const float* w, int64_t r0, int64_t r1, int64_t C, const float* dy, uint8_t* q) {
  for (int64_t r = r0; r < r1; ++r) quant_row(w + r * C, dy, q + r * C, C);
}

#define CORVID_QUANT_ISA(suffix, ATTR)                                                                       \
  ATTR void p1_colmin_##suffix(const float* w, int64_t r0, int64_t r1, int64_t C, float* acc) { \
    p1_colmin(w, r0, r1, C, acc);                                                                                \
  }                                                                                                              \
  ATTR void p1_rowmin_##suffix(float* w, int64_t r0, int64_t r1, int64_t C, float* mx,       \
                                                  float* acc) {                                                  \
    p1_rowmin(w, r0, r1, C, mx, acc);                                                                            \
  }                                                                                                              \
  ATTR void p2_##suffix(float* w, int64_t r0, int64_t r1, int64_t C, bool second,            \
                                           const float* my, float* mx, float* rx, float* acc) {                  \
    p2(w, r0, r1, C, second, my, mx, rx, acc);                                                                   \
  }                                                                                                              \
  ATTR void p3_##suffix(const float* w, int64_t r0, int64_t r1, int64_t C, const float* dy,  \
                                           uint8_t* q) {                                                         \
    p3(w, r0, r1, C, dy, q);                                                                                     \
  }

CORVID_QUANT_ISA(avx512, __attribute__((target("avx512f"))))
CORVID_QUANT_ISA(avx2, __attribute__((target("avx2"))))
CORVID_QUANT_ISA(base, )

struct Passes {
  void (*p1c)(const float*, int64_t, int64_t, int64_t, float*);
  void (*p1r)(float*, int64_t, int64_t, int64_t, float*, float*);
  void (*p2)(float*, int64_t, int64_t, int64_t, bool, const float*, float*, float*, float*);
  void (*p3)(const float*, int64_t, int64_t, int64_t, const float*, uint8_t*);
};

Passes passes_for(QuantIsa isa) {
  switch (isa) {
    case QuantIsa::Avx512: return {p1_colmin_avx512, p1_rowmin_avx512, p2_avx512, p3_avx512};
    case QuantIsa::Avx2: return {p1_colmin_avx2, p1_rowmin_avx2, p2_avx2, p3_avx2};
    default: return {p1_colmin_base, p1_rowmin_base, p2_base, p3_base};
  }
}

// Folds the per-thread column results in thread order (the same fold as one thread).
void combine(const std::vector<float>& parts, int T, int64_t C, float* out, bool is_min) {
  std::memcpy(out, parts.data(), size_t(C) * 4);
  for (int t = 1; t < T; ++t) {
    const float* p = parts.data() + size_t(t) * size_t(C);
    for (int64_t j = 0; j < C; ++j) out[j] = is_min ? CORVID_QMIN(out[j], p[j]) : CORVID_QMAX(out[j], p[j]);
  }
}

}  // namespace

void quantize_u8_out_in(float* w, int64_t R, int64_t C, uint8_t* q, float* mx, float* rx, float* my, float* ry,
                        int threads, QuantIsa isa) {
  const Passes P = passes_for(isa);
  const int T = load_threads(threads, R);
  std::vector<float> parts(size_t(T) * size_t(C));
  auto acc = [&](int t) { return parts.data() + size_t(t) * size_t(C); };
  // Reference: n = C in-rows, m = R out-columns; its "row_min" (over out) gives my,
  // its "col_min" (over in) gives mx; n > m runs row_min first.
  const bool my_first = C > R;
  if (my_first) parallel_rows(R, T, [&](int64_t a, int64_t b, int t) { P.p1c(w, a, b, C, acc(t)); });
  else parallel_rows(R, T, [&](int64_t a, int64_t b, int t) { P.p1r(w, a, b, C, mx, acc(t)); });
  combine(parts, T, C, my, true);
  parallel_rows(R, T, [&](int64_t a, int64_t b, int t) { P.p2(w, a, b, C, my_first, my, mx, rx, acc(t)); });
  combine(parts, T, C, ry, false);
  std::vector<float> dy(static_cast<size_t>(C));
  for (int64_t j = 0; j < C; ++j) dy[size_t(j)] = ry[j] != 0.f ? ry[j] : 1.f;
  parallel_rows(R, T, [&](int64_t a, int64_t b, int) { P.p3(w, a, b, C, dy.data(), q); });
  for (int64_t r = 0; r < R; ++r) rx[r] /= 16.f;
  for (int64_t j = 0; j < C; ++j) ry[j] /= 16.f;
}

void cast_f32_to_bf16(const float* src, uint16_t* dst, int64_t n, int threads) {
  constexpr int64_t kChunk = 4096;  // split into chunks so every thread gets whole ones
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  parallel_rows(chunks, load_threads(threads, chunks), [&](int64_t a, int64_t b, int) {
    const int64_t i1 = std::min(n, b * kChunk);
    for (int64_t i = a * kChunk; i < i1; ++i) dst[i] = f32_to_bf16(src[i]);
  });
}

void matrix_to_f32_scaled(const TensorView& t, float* dst, float scale, int threads) {
  const bool fast = t.ndim == 2 && t.is_contiguous() &&
                    (t.dtype == DType::F32 || t.dtype == DType::BF16 || t.dtype == DType::F16);
  if (!fast) {
    if (t.ndim == 2 && t.strides[0] == 1 && t.strides[1] == t.shape[0] && t.shape[0] > 1 && t.shape[1] > 1) {
      // The storage is the contiguous transpose: read it with the SDK's blocked
      // transpose rather than element-strided.
      TensorView u = t;
      u.shape[0] = t.shape[1];
      u.shape[1] = t.shape[0];
      u.strides[0] = t.shape[0];
      u.strides[1] = 1;
      wutil::to_f32(u, dst, /*transpose=*/true);
    } else {
      wutil::to_f32(t, dst);
    }
    if (scale != 1.f)
      for (int64_t i = 0, n = t.numel(); i < n; ++i) dst[i] *= scale;
    return;
  }
  const int64_t R = t.shape[0], C = t.shape[1];
  parallel_rows(R, load_threads(threads, R), [&](int64_t a, int64_t b, int) {
    const int64_t i0 = a * C, i1 = b * C;
    if (t.dtype == DType::F32) std::memcpy(dst + i0, static_cast<const float*>(t.data) + i0, size_t(i1 - i0) * 4);
    else if (t.dtype == DType::BF16) {
      const uint16_t* s = static_cast<const uint16_t*>(t.data);
      for (int64_t i = i0; i < i1; ++i) dst[i] = bf16_to_f32(s[i]);
    } else {
      const uint16_t* s = static_cast<const uint16_t*>(t.data);
      for (int64_t i = i0; i < i1; ++i) dst[i] = f16_to_f32(s[i]);
    }
    if (scale != 1.f)
      for (int64_t i = i0; i < i1; ++i) dst[i] *= scale;
  });
}

}  // namespace corvid::cpu
