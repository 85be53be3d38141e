// Helpers every backend needs when preparing weights (header-only, no framework
// dependency): reading views of any dtype/stride as fp32, the RESCALE_LAYER
// divisor, and the reference's exact int8 quantisation (rwkv-reference §2.6).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "corvid/sdk/dtype.h"
#include "corvid/sdk/error.h"
#include "corvid/sdk/model.h"
#include "corvid/sdk/tensor.h"

namespace corvid::wutil {

inline float load_scalar(const void* base, DType dt, int64_t index) {
  switch (dt) {
    case DType::F32: return static_cast<const float*>(base)[index];
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(base)[index]);
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(base)[index]);
    case DType::U8: return float(static_cast<const uint8_t*>(base)[index]);
    case DType::I8: return float(static_cast<const int8_t*>(base)[index]);
    case DType::I32: return float(static_cast<const int32_t*>(base)[index]);
    case DType::I64: return float(static_cast<const int64_t*>(base)[index]);
  }
  return 0.f;
}

// Copies any 1-D/2-D floating view into contiguous fp32. For 2-D views with
// transpose = true, dst is (shape[1], shape[0]) row-major, i.e. dst[c][r] = src[r][c].
inline void to_f32(const TensorView& t, float* dst, bool transpose = false) {
  if (t.ndim <= 1 || (!transpose && t.is_contiguous())) {
    int64_t n = t.numel();
    if (t.dtype == DType::F32 && t.is_contiguous()) { std::memcpy(dst, t.data, size_t(n) * 4); return; }
    if (t.is_contiguous()) { for (int64_t i = 0; i < n; ++i) dst[i] = load_scalar(t.data, t.dtype, i); return; }
    if (t.ndim == 1) { for (int64_t i = 0; i < n; ++i) dst[i] = load_scalar(t.data, t.dtype, i * t.strides[0]); return; }
  }
  if (t.ndim != 2) throw Error("to_f32: strided view of rank " + std::to_string(t.ndim) + " not supported");
  const int64_t R = t.shape[0], C = t.shape[1];
  if (!transpose) {
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < C; ++c) dst[r * C + c] = load_scalar(t.data, t.dtype, r * t.strides[0] + c * t.strides[1]);
  } else {
    // Blocked transpose: keeps both sides cache-friendly for large matrices.
    constexpr int64_t B = 64;
    for (int64_t r0 = 0; r0 < R; r0 += B)
      for (int64_t c0 = 0; c0 < C; c0 += B)
        for (int64_t r = r0; r < std::min(R, r0 + B); ++r)
          for (int64_t c = c0; c < std::min(C, c0 + B); ++c)
            dst[c * R + r] = load_scalar(t.data, t.dtype, r * t.strides[0] + c * t.strides[1]);
  }
}

// Index of the block a tensor belongs to: "blocks.7.att.key.weight" -> 7;
// -1 for anything else (ln_out, head, emb).
inline int block_index(std::string_view name) {
  if (name.substr(0, 7) != "blocks.") return -1;
  int v = 0;
  size_t i = 7;
  if (i >= name.size() || name[i] < '0' || name[i] > '9') return -1;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9') v = v * 10 + (name[i++] - '0');
  return v;
}

// RESCALE_LAYER (rwkv-reference §2.2): att.output.weight and ffn.value.weight of
// block l are divided by 2^floor(l/R). Returns that power of two's exponent (0 = none).
inline int rescale_shift(const ModelHParams& hp, std::string_view name) {
  if (hp.rescale_layer <= 0) return 0;
  if (name.find("att.output.weight") == std::string_view::npos &&
      name.find("ffn.value.weight") == std::string_view::npos)
    return 0;
  int l = block_index(name);
  return l < 0 ? 0 : l / hp.rescale_layer;
}

// Reads matrix `name` as fp32 in (in, out) layout: the raw (out, in) view is
// transposed and the RESCALE_LAYER division applied. Dividing by a power of two
// is exact, so doing it here in fp32 equals the reference doing it in the
// file's dtype before casting (barring subnormals).
inline std::vector<float> matrix_in_out_f32(const TensorView& raw, const ModelHParams& hp, std::string_view name) {
  if (raw.ndim != 2) throw Error("tensor '" + std::string(name) + "': expected a matrix, got shape " + shape_string(raw));
  std::vector<float> w(size_t(raw.numel()));
  to_f32(raw, w.data(), /*transpose=*/true);
  int s = rescale_shift(hp, name);
  if (s > 0) {
    const float f = std::ldexp(1.0f, -s);
    for (float& v : w) v *= f;
  }
  return w;
}

// Rounds fp32 values through the activation/weight type (identity for F32), as
// `tensor.to(dtype)` does.
inline float round_to(DType dt, float v) {
  switch (dt) {
    case DType::F16: return f16_to_f32(f32_to_f16(v));
    case DType::BF16: return bf16_to_f32(f32_to_bf16(v));
    default: return v;
  }
}

// The reference's int8 scheme, exactly (rwkv-reference §2.6). W is fp32,
// row-major, n rows (in) x m columns (out), and is modified in place.
// Outputs: q[n*m] codes, mx[m], rx[m] (= max/16), my[n], ry[n] (= max/16), all
// fp32 before rounding to the activation type (the caller rounds with round_to).
//
// [quirk] guard: a constant row or column has range 0 and the reference divides
// by zero (NaN codes). We divide by 1 instead and store a range of 0, so the
// dequantised values are exactly my + mx, the original constant.
inline void quantize_u8(float* W, int64_t n, int64_t m, uint8_t* q, float* mx, float* rx, float* my, float* ry) {
  auto col_min = [&] {
    for (int64_t c = 0; c < m; ++c) mx[c] = INFINITY;
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < m; ++c) mx[c] = std::min(mx[c], W[r * m + c]);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < m; ++c) W[r * m + c] -= mx[c];
  };
  auto row_min = [&] {
    for (int64_t r = 0; r < n; ++r) {
      float v = INFINITY;
      for (int64_t c = 0; c < m; ++c) v = std::min(v, W[r * m + c]);
      my[r] = v;
      for (int64_t c = 0; c < m; ++c) W[r * m + c] -= v;
    }
  };
  if (n > m) { row_min(); col_min(); } else { col_min(); row_min(); }
  for (int64_t c = 0; c < m; ++c) rx[c] = -INFINITY;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < m; ++c) rx[c] = std::max(rx[c], W[r * m + c]);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < m; ++c) W[r * m + c] /= (rx[c] != 0.f ? rx[c] : 1.f);
  for (int64_t r = 0; r < n; ++r) {
    float v = -INFINITY;
    for (int64_t c = 0; c < m; ++c) v = std::max(v, W[r * m + c]);
    ry[r] = v;
    const float d = v != 0.f ? v : 1.f;
    for (int64_t c = 0; c < m; ++c) {
      float x = std::floor((W[r * m + c] / d) * 256.f);
      x = std::min(255.f, std::max(0.f, x));
      q[r * m + c] = uint8_t(x);
    }
  }
  for (int64_t c = 0; c < m; ++c) rx[c] /= 16.f;
  for (int64_t r = 0; r < n; ++r) ry[r] /= 16.f;
}

}  // namespace corvid::wutil
